"""The frozen, validated `Genotype` and its text forms (JSON, DARTS literal, `arch_id`).

This module owns the cell description (spec 2.1): a DARTS-style 4-field record whose `normal`
and `reduce` lists hold `(op_name, input_index)` pairs, two per intermediate node. It checks op
names against `opnames.ALL_OPS`, indices and concat lists, hashes genotypes into a stable
`arch_id`, and parses JSON and DARTS literals (`space.parse` decides how to read what a user
typed). It never evaluates Python source (no eval/exec/importlib) and does not import torch.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from econas_hpc.errors import InvalidGenotypeError, UnsafeNameError
from econas_hpc.space.opnames import ALL_OPS

Edge = tuple[str, int]

_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_CELLS = (("normal", "normal_concat"), ("reduce", "reduce_concat"))
_MAX_SHOWN = 60  # characters of user input quoted in an error message
# A genotype's text is a few hundred characters; anything far longer is refused unread, so
# neither the JSON decoder nor the literal parser ever sees a huge or deeply nested input.
MAX_TEXT = 100_000


def quote_input(text: str) -> str:
    """User text for an error message: whitespace flattened, cut to 60 characters, quoted."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _MAX_SHOWN else flat[: _MAX_SHOWN - 3] + "...")


def _as_int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidGenotypeError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidGenotypeError(f"{what} must be an integer, got {value!r}") from None


def _as_edges(value: object, cell: str) -> tuple[Edge, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidGenotypeError(f"{cell} must be a list of [op, input] pairs, got {value!r}")
    edges: list[Edge] = []
    for k, pair in enumerate(value):
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise InvalidGenotypeError(f"{cell}[{k}] must be an [op, input] pair, got {pair!r}")
        op, index = pair
        if not isinstance(op, str):
            raise InvalidGenotypeError(f"{cell}[{k}] op must be a string, got {op!r}")
        edges.append((op, _as_int(index, f"{cell}[{k}] input")))
    return tuple(edges)


def _as_concat(value: object, field: str, nodes: int) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | range):
        raise InvalidGenotypeError(f"{field} must be a list of state indices, got {value!r}")
    # Checked before a single entry is read: `range(0, 10**9)` is refused without being built.
    if len(value) > nodes + 2:
        raise InvalidGenotypeError(
            f"{field} has {len(value)} entries; a {nodes}-node cell concatenates at most "
            f"{nodes + 2} distinct states"
        )
    return tuple(_as_int(v, f"{field} entry") for v in value)


def _check_text(text: str, what: str) -> None:
    if len(text) > MAX_TEXT:
        raise InvalidGenotypeError(
            f"{what} is {len(text)} characters long; a genotype needs far fewer "
            f"(at most {MAX_TEXT} are read)"
        )


def _check_cell(edges: tuple[Edge, ...], concat: tuple[int, ...], cell: str, field: str) -> None:
    if not edges or len(edges) % 2:
        raise InvalidGenotypeError(
            f"{cell} has {len(edges)} edges; need a non-zero even count (two per node)"
        )
    ops = ALL_OPS
    nodes = len(edges) // 2
    for k, (op, index) in enumerate(edges):
        if op not in ops:
            raise InvalidGenotypeError(
                f"{cell}[{k}] uses unknown op {op!r}; allowed: {', '.join(sorted(ops))}"
            )
        node = k // 2
        if not 0 <= index <= node + 1:
            raise InvalidGenotypeError(
                f"{cell}[{k}] ({op!r}, {index}) of node {node} reads input {index}; "
                f"allowed 0..{node + 1}"
            )
    if not concat:
        raise InvalidGenotypeError(f"{field} is empty; need at least one state index")
    if len(set(concat)) != len(concat):
        raise InvalidGenotypeError(f"{field} {list(concat)} repeats an index")
    bad = [i for i in concat if not 0 <= i <= nodes + 1]
    if bad:
        raise InvalidGenotypeError(
            f"{field} {list(concat)} has index {bad[0]}; allowed 0..{nodes + 1} "
            f"for a {nodes}-node cell"
        )


ARCH_ID_LENGTH = 12  # hex digits of `Genotype.arch_id`
_ARCH_ID_RE = re.compile(rf"[0-9a-f]{{{ARCH_ID_LENGTH}}}")


def check_arch_id(value: object, what: str = "network id") -> str:
    """`value` itself when it is an arch_id (12 lowercase hex digits), else refuse it.

    Ids read from state, zoo and result files become folder names; this is the gate.

    Raises:
        UnsafeNameError: one line naming the value and what is allowed.
    """
    if not isinstance(value, str) or not _ARCH_ID_RE.fullmatch(value):
        raise UnsafeNameError(
            f"{what} {value!r} is not an arch_id ({ARCH_ID_LENGTH} lowercase hex digits); "
            "refusing to use it as a file name (the file holding it was edited or is corrupt)"
        )
    return value


@dataclass(frozen=True, slots=True)
class Genotype:
    """A cell pair (spec 2.1); construction normalises lists to tuples and validates.

    Node i (0-based) of a cell reads states 0..i+1: 0 and 1 are the cell inputs (k-2, k-1),
    j >= 2 is node j-2. Both cells must have the same number of nodes.

    Raises:
        InvalidGenotypeError: unknown op, illegal input index, odd or zero edge count,
            mismatched node counts, or an empty/duplicate/out-of-range concat list.
    """

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for cell, field in _CELLS:
            edges = _as_edges(getattr(self, cell), cell)
            concat = _as_concat(getattr(self, field), field, len(edges) // 2)
            _check_cell(edges, concat, cell, field)
            # Frozen dataclass: normalising lists to tuples needs object.__setattr__.
            object.__setattr__(self, cell, edges)
            object.__setattr__(self, field, concat)
        if len(self.normal) != len(self.reduce):
            raise InvalidGenotypeError(
                f"normal has {len(self.normal) // 2} nodes but reduce has "
                f"{len(self.reduce) // 2}; both cells need the same node count"
            )

    @property
    def nodes(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    @property
    def arch_id(self) -> str:
        """First 12 hex digits of the sha256 of the canonical JSON form."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: edges as [op, input] lists, concat as int lists."""
        return {
            "normal": [[op, i] for op, i in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, i] for op, i in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        """Build from `to_dict` output (lists or tuples); the four keys are required."""
        if not isinstance(data, Mapping):
            raise InvalidGenotypeError(f"genotype must be a JSON object, got {type(data).__name__}")
        missing = [k for k in _FIELDS if k not in data]
        extra = sorted(str(k) for k in data if k not in _FIELDS)
        if missing or extra:
            raise InvalidGenotypeError(
                f"genotype keys missing {missing} / unknown {extra}; expected {list(_FIELDS)}"
            )
        return cls(*(data[k] for k in _FIELDS))

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces (the `arch_id` is hashed from it)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        """Parse a JSON object as written by `to_json` (any key order or spacing)."""
        _check_text(text, "genotype JSON")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidGenotypeError(
                f"genotype JSON {quote_input(text)} is malformed: {err}"
            ) from None
        except RecursionError:
            raise InvalidGenotypeError(
                f"genotype JSON {quote_input(text)} is nested too deeply; a genotype is an object "
                "of lists of [op, input] pairs"
            ) from None
        return cls.from_dict(data)

    def to_literal(self) -> str:
        """The DARTS `genotypes.py` form: `Genotype(normal=[('op', 0), ...], ...)`."""

        def edges(es: tuple[Edge, ...]) -> str:
            return "[" + ", ".join(f"({op!r}, {i})" for op, i in es) + "]"

        return (
            f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    @classmethod
    def from_literal(cls, text: str) -> Genotype:
        """Parse a DARTS literal without evaluating code.

        Accepts `Genotype(...)` or `NAME = Genotype(...)`, keyword or positional arguments, and
        `range(a, b)` for concat lists, as DARTS files write them.
        """
        _check_text(text, "genotype literal")
        call = _literal_call(text)
        if call.keywords and call.args:
            raise InvalidGenotypeError(
                f"genotype literal {quote_input(text)} mixes positional and keyword arguments"
            )
        if call.keywords:
            names = [kw.arg for kw in call.keywords]
            if sorted(str(n) for n in names) != sorted(_FIELDS):
                raise InvalidGenotypeError(
                    f"genotype literal keywords {names}; expected {list(_FIELDS)}"
                )
            values = {str(kw.arg): _literal_value(kw.value, text) for kw in call.keywords}
            return cls.from_dict(values)
        if len(call.args) != len(_FIELDS):
            raise InvalidGenotypeError(
                f"genotype literal {quote_input(text)} has {len(call.args)} arguments; "
                f"expected 4 ({', '.join(_FIELDS)})"
            )
        return cls(*(_literal_value(node, text) for node in call.args))


def _literal_call(text: str) -> ast.Call:
    """The `Genotype(...)` call node of `text`, or InvalidGenotypeError."""
    try:
        body = ast.parse(text.strip(), mode="exec").body
    except (SyntaxError, RecursionError, MemoryError):  # deep nesting: not a genotype either
        body = []
    node: ast.AST | None = None
    if len(body) == 1 and isinstance(body[0], ast.Expr | ast.Assign):
        node = body[0].value
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "Genotype":
            return node
    raise InvalidGenotypeError(
        f"not a DARTS genotype literal: {quote_input(text)}; expected Genotype(normal=[...], "
        "normal_concat=[...], reduce=[...], reduce_concat=[...])"
    )


def _literal_value(node: ast.expr, text: str) -> Any:
    """A literal argument; `range(a, b[, step])` with integer literals is expanded."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("range", "list")
        and not node.keywords
    ):
        if node.func.id == "list" and len(node.args) == 1:
            return _literal_value(node.args[0], text)
        if node.func.id == "range":
            bounds = [_literal_value(arg, text) for arg in node.args]
            if 1 <= len(bounds) <= 3 and all(type(b) is int for b in bounds):
                # A lazy range: the concat check refuses a long one before it is expanded.
                return range(*bounds)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise InvalidGenotypeError(
            f"genotype literal {quote_input(text)} has a non-literal argument "
            f"{quote_input(ast.unparse(node))}; only lists, tuples, numbers, strings and "
            "range(a, b) are accepted"
        ) from None


@functools.lru_cache(maxsize=4096)
def genotype_from_json(genotype_json: str) -> Genotype:
    """`Genotype.from_json`, memoised: genotypes are immutable and parsing dominates a dry run."""
    return Genotype.from_json(genotype_json)
