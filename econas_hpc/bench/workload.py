"""What the benchmark and the GPU check train: random c4r4 genotypes as synthetic-data specs.

Owns `genotypes` (n distinct, always-buildable random genotypes of the search space),
`bench_specs` (one `SegmentSpec` per genotype, each in its own run directory) and
`device_label` (the device a result names, with the CPU's model off CUDA).

Must not: train, time or print.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from econas_hpc.bench import cpu_name
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.sampling import sample_genotype
from econas_hpc.train import SegmentSpec
from econas_hpc.train.segment import device_name

__all__ = ["SYNTHETIC_TEST", "bench_specs", "device_label", "genotypes"]

SYNTHETIC_TEST = 200  # evaluation is not timed; the writer still needs a test split


def genotypes(n: int, seed: int) -> list[Genotype]:
    """`n` distinct random genotypes of the search space (clean concat: always buildable)."""
    rng, found = np.random.default_rng(seed), dict[str, Genotype]()
    while len(found) < n:
        genotype = sample_genotype(rng)
        found.setdefault(genotype.arch_id, genotype)
    return list(found.values())


def bench_specs(
    genotypes: Sequence[Genotype], runs: Path, seed: int, **common: Any
) -> list[SegmentSpec]:
    """One synthetic-data spec per genotype (run dir `runs/<arch_id>`, seed `seed + i`);
    `common` holds the other SegmentSpec fields (synthetic_test defaults to SYNTHETIC_TEST)."""
    common.setdefault("synthetic_test", SYNTHETIC_TEST)
    return [
        SegmentSpec(
            arch_id=g.arch_id,
            genotype_json=g.to_json(),
            run_dir=str(runs / g.arch_id),
            seed=seed + i,
            dataset="synthetic",
            **common,
        )
        for i, g in enumerate(genotypes)
    ]


def device_label(device: torch.device) -> str:
    """ "cuda:N <card>", or the CPU's model and torch's thread count."""
    if device.type == "cuda":
        return device_name(device)
    return f"cpu: {cpu_name()}, {torch.get_num_threads()} torch threads"
