"""Operation names, the search and model-zoo op sets, and the published genotypes.

This module owns names only: which ops exist (the network builder in `econas_hpc.nn.ops` must
provide a constructor for every name in `ALL_OPS`) and the built-in genotypes users can ask for
by name. It must not import torch and holds no behaviour beyond lookup.
"""

from __future__ import annotations

from econas_hpc.errors import InvalidGenotypeError
from econas_hpc.space.genotype import Genotype

# The 8 EcoNAS / DARTS search ops, in the PRIMITIVES order of the official code (spec 2.4).
SEARCH_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

# The 13 model-zoo ops (supplement C; NASNet's space, names as suggested in spec 2.4). Unverified
# against the paper's figure, see spec 12 #3.
ZOO_OPS: tuple[str, ...] = (
    "skip_connect",
    "conv_1x3_3x1",
    "conv_7x1_1x7",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)

# The two extra entries of the official OPS table, needed by the NASNet/AmoebaNet genotypes.
EXTRA_OPS: tuple[str, ...] = ("sep_conv_7x7", "conv_7x1_1x7")

ALL_OPS: frozenset[str] = frozenset(SEARCH_OPS + ZOO_OPS + EXTRA_OPS)

OP_SETS: dict[str, tuple[str, ...]] = {"search8": SEARCH_OPS, "zoo13": ZOO_OPS}


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
