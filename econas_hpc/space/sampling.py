"""Random cells (spec 3.1, supplement C) and single-edit mutation (spec 3.2).

This module owns the randomness of the search space: drawing genotypes, mutating them and the
loose-end concat rule (spec 2.2). Every draw comes from the `numpy.random.Generator` passed in,
never from a module-level RNG, and mutation returns a new genotype (the parent is frozen). It
must not import torch.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from econas_hpc.errors import ConfigError
from econas_hpc.space.catalog import ALL_OPS, SEARCH_OPS
from econas_hpc.space.genotype import Edge, Genotype

# clean/faithful: the search's loose-end rule (supplement E.1); all: every intermediate node,
# the model zoo's rule (supplement C).
ConcatMode = Literal["clean", "faithful", "all"]
CONCAT_MODES: tuple[str, ...] = ("clean", "faithful", "all")


def _check_mode(mode: str) -> None:
    if mode not in CONCAT_MODES:
        raise ConfigError(f"concat mode {mode!r} is unknown; allowed: {', '.join(CONCAT_MODES)}")


def _check_ops(ops: tuple[str, ...]) -> None:
    unknown = [op for op in ops if op not in ALL_OPS]
    if not ops or unknown:
        raise ConfigError(
            f"op set {list(ops)} is empty or has unknown ops {unknown}; "
            f"allowed: {', '.join(sorted(ALL_OPS))}"
        )


def reconcat(edges: tuple[Edge, ...], mode: ConcatMode) -> tuple[int, ...]:
    """The concat list of one cell.

    `clean` and `faithful` are the search's loose-end rule, the states no edge reads (spec 2.2,
    supplement E.1): `faithful` reproduces the official code, so unread cell inputs 0/1 join the
    output; `clean` keeps intermediate nodes only (NASNet convention). The last node is never
    read, so the result is never empty. `all` is the model zoo's rule (supplement C): every
    intermediate node 2..N+1, whatever is read.
    """
    _check_mode(mode)
    nodes = len(edges) // 2
    if mode == "all":
        return tuple(range(2, nodes + 2))
    used = {index for _, index in edges}
    first = 2 if mode == "clean" else 0
    return tuple(sorted(set(range(first, nodes + 2)) - used))


def sample_genotype(
    rng: np.random.Generator,
    nodes: int = 4,
    ops: tuple[str, ...] = SEARCH_OPS,
    concat_mode: ConcatMode = "clean",
) -> Genotype:
    """Draw a random genotype (spec 3.1): per node, the normal edges then the reduce edges.

    Ops are uniform over `ops` (repeats and `none` allowed), inputs uniform over 0..i+1; both
    concat lists come from `reconcat`.

    Raises:
        ConfigError: `nodes` < 1, an unknown op, or an unknown concat mode.
    """
    _check_mode(concat_mode)
    _check_ops(ops)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(f"nodes must be an integer >= 1, got {nodes!r}")
    # One vectorised draw, in supplement C order: per node, normal then reduce, each as
    # input a, input b (uniform over states 0..i+1), op a, op b (uniform over `ops`).
    highs = [h for i in range(nodes) for h in (i + 2, i + 2, len(ops), len(ops)) * 2]
    draws = [int(v) for v in rng.integers(0, highs)]
    normal: list[Edge] = []
    reduce: list[Edge] = []
    for i in range(0, len(draws), 8):
        in_a, in_b, op_a, op_b, r_in_a, r_in_b, r_op_a, r_op_b = draws[i : i + 8]
        normal += [(ops[op_a], in_a), (ops[op_b], in_b)]
        reduce += [(ops[r_op_a], r_in_a), (ops[r_op_b], r_in_b)]
    return Genotype(
        tuple(normal),
        reconcat(tuple(normal), concat_mode),
        tuple(reduce),
        reconcat(tuple(reduce), concat_mode),
    )


def mutate(
    parent: Genotype,
    rng: np.random.Generator,
    ops: tuple[str, ...] = SEARCH_OPS,
    concat_mode: ConcatMode = "clean",
) -> Genotype:
    """Return a child exactly one edit away from `parent` (spec 3.2); `parent` is untouched.

    Kind (op or connection), cell and edge are each uniform. An op mutation draws uniformly
    among the other ops and keeps both concat lists; a connection mutation of an edge of node i
    draws uniformly from 0..i+1 minus the current input and recomputes both concat lists.

    Raises:
        ConfigError: an unknown op or concat mode, or no other op to mutate to.
    """
    _check_mode(concat_mode)
    _check_ops(ops)
    is_op_edit = int(rng.integers(0, 2)) == 0
    cell = "normal" if int(rng.integers(0, 2)) == 0 else "reduce"
    edges = list(parent.normal if cell == "normal" else parent.reduce)
    k = int(rng.integers(0, len(edges)))
    op, index = edges[k]
    if is_op_edit:
        others = [o for o in ops if o != op]
        if not others:
            raise ConfigError(f"op set {list(ops)} has no op other than {op!r} to mutate to")
        edges[k] = (others[int(rng.integers(0, len(others)))], index)
    else:
        inputs = [j for j in range(k // 2 + 2) if j != index]
        edges[k] = (op, inputs[int(rng.integers(0, len(inputs)))])
    normal = tuple(edges) if cell == "normal" else parent.normal
    reduce = tuple(edges) if cell == "reduce" else parent.reduce
    if is_op_edit:
        return Genotype(normal, parent.normal_concat, reduce, parent.reduce_concat)
    return Genotype(normal, reconcat(normal, concat_mode), reduce, reconcat(reduce, concat_mode))


def describe_edit(parent: Genotype, child: Genotype) -> str:
    """One line naming the edges that differ, e.g. `reduce[3] input 0 -> 2`."""
    changes: list[str] = []
    for cell in ("normal", "reduce"):
        before: tuple[Edge, ...] = getattr(parent, cell)
        after: tuple[Edge, ...] = getattr(child, cell)
        if len(before) != len(after):
            changes.append(f"{cell} {len(before)} -> {len(after)} edges")
            continue
        for k, ((op_a, in_a), (op_b, in_b)) in enumerate(zip(before, after, strict=True)):
            if op_a != op_b:
                changes.append(f"{cell}[{k}] op {op_a} -> {op_b}")
            if in_a != in_b:
                changes.append(f"{cell}[{k}] input {in_a} -> {in_b}")
    return "; ".join(changes) if changes else "no change"


def is_buildable(g: Genotype) -> bool:
    """False when `reduce_concat` holds a cell input (0 or 1): its resolution would not match.

    Such genotypes arise only in faithful mode; the official code crashed on them (spec 2.2).
    """
    return not {0, 1} & set(g.reduce_concat)
