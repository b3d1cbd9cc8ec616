"""The operation names: which ops exist and the search and model-zoo op sets (spec 2.4).

This module owns names only. The network builder in `econas_hpc.nn.ops` must provide a
constructor for every name in `ALL_OPS`; `genotype` checks edges against it and `catalog`
builds the published genotypes from it. It imports nothing of the package, so every module of
`space` may import it.
"""

from __future__ import annotations

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
