"""The torch network layer: edge ops, cells and networks built from genotypes, cost counts.

`ops` owns the op table, `network` the cells/networks and `build_network`, `cost` the
parameter/MAC conventions. This package imports torch, `space` and `settings`, nothing above.
"""

from __future__ import annotations

from econas_hpc.nn.cost import count_macs, count_params, feature_size
from econas_hpc.nn.network import NetworkCIFAR, NetworkImageNet, build_network
from econas_hpc.nn.ops import OPS

__all__ = [
    "OPS",
    "NetworkCIFAR",
    "NetworkImageNet",
    "build_network",
    "count_macs",
    "count_params",
    "feature_size",
]
