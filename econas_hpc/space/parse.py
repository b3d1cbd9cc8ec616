"""Reading a genotype from what a user typed: a built-in name, a file path, JSON or a literal.

This module owns the order in which user text is tried (`parse_genotype`). It sits above both
`genotype` (the record and its text forms) and `catalog` (the built-in names), so neither of
those imports the other's reader. It never evaluates Python source.
"""

from __future__ import annotations

import os
from pathlib import Path

from econas_hpc.errors import InvalidGenotypeError
from econas_hpc.space.catalog import BUILTIN_GENOTYPES
from econas_hpc.space.genotype import MAX_TEXT, Genotype, quote_input


def _parse_content(text: str) -> Genotype | None:
    """JSON or literal content, or None when `text` looks like neither."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return Genotype.from_json(stripped)
    if "Genotype" in stripped and "(" in stripped:
        return Genotype.from_literal(stripped)
    return None


def _read_genotype_file(path: Path) -> str:
    """At most MAX_TEXT + 1 characters of a genotype file (more is refused by the parsers)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(MAX_TEXT + 1)
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidGenotypeError(f"cannot read genotype file {path}: {err}") from None


def parse_genotype(text: str) -> Genotype:
    """Read a genotype given as a built-in name, a file path, a JSON string, or a DARTS literal.

    Tried in that order; a file may hold JSON or a literal.

    Raises:
        InvalidGenotypeError: nothing matched, or the matched form is invalid.
    """
    stripped = text.strip()
    if stripped in BUILTIN_GENOTYPES:
        return BUILTIN_GENOTYPES[stripped]
    # os.path.isfile swallows OSError (e.g. a JSON string too long to be a file name).
    if stripped and "\n" not in stripped and os.path.isfile(stripped):
        content = _read_genotype_file(Path(stripped))
        try:
            parsed = _parse_content(content)
        except InvalidGenotypeError as err:
            raise InvalidGenotypeError(f"{stripped}: {err}") from None
        if parsed is None:
            raise InvalidGenotypeError(
                f"{stripped}: file holds neither genotype JSON nor a Genotype(...) literal"
            )
        return parsed
    parsed = _parse_content(stripped)
    if parsed is not None:
        return parsed
    known = ", ".join(sorted(BUILTIN_GENOTYPES))
    raise InvalidGenotypeError(
        f"cannot read a genotype from {quote_input(text)}: expected a built-in name ({known}), "
        "a path to a JSON or literal file, a JSON object, or a Genotype(...) literal"
    )
