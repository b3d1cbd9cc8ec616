"""Parsing of the reduced-setting grid a zoo is trained on (`zoo train --settings/--grid`).

This module owns the two user-facing forms of a settings list and turns both into canonical
setting strings ("c4r4s0e60"), deduplicated in a deterministic order:

- an explicit list: "c0r0s0e600,c4r4s0e60";
- a grid, one token per factor: "c=0,2,4 r=0,2,4 s=0,2 e=30,60" (cartesian product).

It validates each setting with `econas_hpc.settings.Setting.parse` and reports every mistake as
a `ConfigError` that names the bad token and the allowed form. Pure: no I/O.
"""

from __future__ import annotations

import itertools
import re
from typing import TypeVar

from econas_hpc.errors import ConfigError, InvalidSettingError
from econas_hpc.settings import CIFAR_BASE, Base, Setting

GRID_FORM = "c=0,2,4 r=0,2 s=0 e=30,60"
LIST_FORM = "c0r0s0e600,c4r4s0e60"
GRID_FACTORS = ("c", "r", "s", "e")  # product order: c outermost, e innermost
_TOKEN = re.compile(r"^([a-zA-Z]+)=(.*)$")
_INT = re.compile(r"^\d+$")
T = TypeVar("T")


def _canonical(text: str, form: str, base: Base) -> str:
    """Validate one setting through Setting.parse and return its canonical string."""
    try:
        return str(Setting.parse(text, base))
    except InvalidSettingError as exc:
        raise ConfigError(f"bad setting {text!r}: {exc}; expected the form {form!r}") from exc


def _dedupe(items: list[T]) -> list[T]:
    return list(dict.fromkeys(items))


def parse_settings_list(text: str, base: Base = CIFAR_BASE) -> list[str]:
    """Parse a comma-separated list of settings into canonical, deduplicated strings.

    Spaces around commas are ignored; order of first appearance is kept. Each setting must be
    buildable for `base` (CIFAR-10 by default).

    Raises:
        ConfigError: an empty list, an empty item, or an invalid setting (named).
    """
    items = [item.strip() for item in text.split(",")]
    if not text.strip():
        raise ConfigError(f"empty settings list; expected the form {LIST_FORM!r}")
    for item in items:
        if not item:
            raise ConfigError(f"empty item in settings list {text!r}; expected {LIST_FORM!r}")
    return _dedupe([_canonical(item, LIST_FORM, base) for item in items])


def _bad(token: str, why: str) -> ConfigError:
    return ConfigError(f"bad grid token {token!r}: {why}; expected the form `{GRID_FORM}`")


def _parse_values(token: str, factor: str, raw: str) -> list[int]:
    """Parse the comma-separated non-negative integers of one factor token."""
    if not raw:
        raise _bad(token, f"no values for {factor}")
    values: list[int] = []
    for part in raw.split(","):
        if part.startswith("-") and _INT.match(part[1:]):
            raise _bad(token, f"negative value {part} for {factor} (values are >= 0)")
        if not _INT.match(part):
            raise _bad(token, f"{part!r} is not a non-negative integer")
        values.append(int(part))
    if factor == "e" and 0 in values:
        raise _bad(token, "e is the number of epochs and must be >= 1")
    return _dedupe(values)


def _tokenize(text: str) -> list[str]:
    # Tolerate "c = 0, 2" by gluing spaces around ',' and '=' (unless '=' is followed by the next
    # factor, as in "c= e=60") before splitting on whitespace.
    glued = re.sub(r"\s*,\s*", ",", text.strip())
    glued = re.sub(r"\s*=\s*(?=[-+.\w])(?![crseCRSE]=)", "=", glued)
    return glued.split() if glued else []


def parse_grid(text: str, base: Base = CIFAR_BASE) -> list[str]:
    """Parse "c=0,2,4 r=0,2,4 s=0,2 e=30,60" into the cartesian product of settings.

    Each factor appears at most once; c, r and s default to 0 (no reduction) when absent; e is
    required. Values are non-negative integers (e >= 1). The product runs c outermost and e
    innermost, each factor in the order its values are given; duplicates are dropped keeping
    the first. Each setting must be buildable for `base` (CIFAR-10 by default).

    Raises:
        ConfigError: an unknown or malformed token, a duplicate factor, a missing e, a value that
            is negative or not an integer, or a setting `Setting.parse` rejects.
    """
    given: dict[str, list[int]] = {}
    for token in _tokenize(text):
        match = _TOKEN.match(token)
        if match is None:
            raise _bad(token, "not of the form factor=v1,v2,...")
        factor, raw = match.group(1).lower(), match.group(2)
        if factor not in GRID_FACTORS:
            raise _bad(token, f"unknown factor {match.group(1)!r} (allowed: c, r, s, e)")
        if factor in given:
            raise _bad(token, f"factor {factor} given twice")
        given[factor] = _parse_values(token, factor, raw)
    if "e" not in given:
        raise ConfigError(f"grid {text!r} has no e=... (epochs); expected the form `{GRID_FORM}`")
    axes = [given.get(factor, [0]) for factor in GRID_FACTORS]
    settings = [
        _canonical(f"c{c}r{r}s{s}e{e}", GRID_FORM, base) for c, r, s, e in itertools.product(*axes)
    ]
    return _dedupe(settings)
