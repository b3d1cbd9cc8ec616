"""The published genotypes users can ask for by name, and the op names re-exported.

This module owns the built-in genotypes (DARTS V1/V2, NASNet, AmoebaNet, EcoNAS) and their
lookup. The op names and op sets live in `space.opnames` (below `genotype`, which checks edges
against them) and are re-exported here for callers that read them as `catalog.SEARCH_OPS`. It
must not import torch and holds no behaviour beyond lookup.
"""

from __future__ import annotations

from econas_hpc.errors import InvalidGenotypeError
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.opnames import ALL_OPS, EXTRA_OPS, OP_SETS, SEARCH_OPS, ZOO_OPS

__all__ = [
    "ALL_OPS",
    "AMOEBANET",
    "BUILTIN_GENOTYPES",
    "DARTS_V1",
    "DARTS_V2",
    "ECONAS",
    "EXTRA_OPS",
    "NASNET",
    "OP_SETS",
    "SEARCH_OPS",
    "ZOO_OPS",
    "get_builtin",
]


def _g(
    normal: list[tuple[str, int]],
    normal_concat: list[int],
    reduce: list[tuple[str, int]],
    reduce_concat: list[int],
) -> Genotype:
    return Genotype(tuple(normal), tuple(normal_concat), tuple(reduce), tuple(reduce_concat))


# Spec 10.2, quark0/darts genotypes.py. DARTS cells concatenate all intermediate nodes no matter
# what is read, so these concat lists are kept as published, not derived by the loose-end rule.
DARTS_V1 = _g(
    [
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 2),
    ],
    [2, 3, 4, 5],
    [
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("avg_pool_3x3", 0),
    ],
    [2, 3, 4, 5],
)

DARTS_V2 = _g(
    [
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    [2, 3, 4, 5],
    [
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
    [2, 3, 4, 5],
)

NASNET = _g(
    [
        ("sep_conv_5x5", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 0),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 1),
        ("skip_connect", 0),
        ("avg_pool_3x3", 0),
        ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 1),
    ],
    [2, 3, 4, 5, 6],
    [
        ("sep_conv_5x5", 1),
        ("sep_conv_7x7", 0),
        ("max_pool_3x3", 1),
        ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1),
        ("sep_conv_5x5", 0),
        ("skip_connect", 3),
        ("avg_pool_3x3", 2),
        ("sep_conv_3x3", 2),
        ("max_pool_3x3", 1),
    ],
    [4, 5, 6],
)

AMOEBANET = _g(
    [
        ("avg_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 3),
        ("sep_conv_3x3", 1),
        ("skip_connect", 1),
        ("skip_connect", 0),
        ("avg_pool_3x3", 1),
    ],
    [4, 5, 6],
    [
        ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 0),
        ("sep_conv_7x7", 2),
        ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("conv_7x1_1x7", 0),
        ("sep_conv_3x3", 5),
    ],
    [3, 4, 6],
)

# The *commented* genotype of EcoNAS retrain/eval_param.py (spec 4.2), with both concat lists
# derived by the clean loose-end rule (hidden nodes no other node reads): normal reads only
# inputs 0/1, so [2, 3, 4, 5]; reduce reads 0, 1, 2, 3, so [4, 5] (the file writes [2, 4, 5]).
# This is the best match to the paper's 2.9 M parameters (spec 12 #20), not a certainty.
ECONAS = _g(
    [
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 1),
        ("sep_conv_5x5", 0),
        ("sep_conv_3x3", 0),
        ("max_pool_3x3", 0),
        ("skip_connect", 0),
        ("skip_connect", 0),
    ],
    [2, 3, 4, 5],
    [
        ("max_pool_3x3", 1),
        ("sep_conv_5x5", 1),
        ("skip_connect", 0),
        ("avg_pool_3x3", 2),
        ("dil_conv_5x5", 3),
        ("max_pool_3x3", 0),
        ("dil_conv_3x3", 0),
        ("max_pool_3x3", 1),
    ],
    [4, 5],
)

BUILTIN_GENOTYPES: dict[str, Genotype] = {
    "darts_v1": DARTS_V1,
    "darts_v2": DARTS_V2,
    "nasnet": NASNET,
    "amoebanet": AMOEBANET,
    "econas": ECONAS,
}


def get_builtin(name: str) -> Genotype:
    """Return the built-in genotype called `name`.

    Raises:
        InvalidGenotypeError: `name` is not one of `BUILTIN_GENOTYPES`.
    """
    try:
        return BUILTIN_GENOTYPES[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_GENOTYPES))
        raise InvalidGenotypeError(f"unknown built-in genotype {name!r}; known: {known}") from None
