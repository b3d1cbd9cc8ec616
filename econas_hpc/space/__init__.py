"""The search-space description layer: genotypes, op catalog, sampling and mutation.

Pure Python + numpy (no torch, no h5py); see docs/interfaces.md for the contract.
"""

from __future__ import annotations

from econas_hpc.space.catalog import (
    ALL_OPS,
    BUILTIN_GENOTYPES,
    EXTRA_OPS,
    OP_SETS,
    SEARCH_OPS,
    ZOO_OPS,
    get_builtin,
)
from econas_hpc.space.genotype import Edge, Genotype
from econas_hpc.space.parse import parse_genotype
from econas_hpc.space.sampling import (
    CONCAT_MODES,
    ConcatMode,
    describe_edit,
    is_buildable,
    mutate,
    reconcat,
    sample_genotype,
)

__all__ = [
    "ALL_OPS",
    "BUILTIN_GENOTYPES",
    "CONCAT_MODES",
    "EXTRA_OPS",
    "OP_SETS",
    "SEARCH_OPS",
    "ZOO_OPS",
    "ConcatMode",
    "Edge",
    "Genotype",
    "describe_edit",
    "get_builtin",
    "is_buildable",
    "mutate",
    "parse_genotype",
    "reconcat",
    "sample_genotype",
]
