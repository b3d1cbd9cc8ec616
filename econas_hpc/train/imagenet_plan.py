"""Which samples each rank of an ImageNet job takes, and how each is augmented.

Owns `rank_indices` (this rank's share of an epoch's permutation, `ShardOrder`), `plan_epoch`
(a rank's indices as steps x micro-batches) and `SeededSamples` (every sample's augmentation
seeded by (seed, epoch, index), whatever rank draws it). `imagenet.py` trains on them.

Must not: train, or import h5py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from econas_hpc.data.augment import mix_seed
from econas_hpc.data.imagenet import ShardOrder
from econas_hpc.train.distributed import DistEnv

__all__ = ["SeededSamples", "plan_epoch", "rank_indices"]


def rank_indices(n: int, seed: int, epoch: int, env: DistEnv) -> list[int]:
    """This rank's share of epoch `epoch`'s permutation of range(n) (ShardOrder, padded)."""
    order = ShardOrder(n, env.rank, env.world_size, seed, shuffle=True)
    order.set_epoch(epoch)
    return order.indices()


def plan_epoch(indices: Sequence[int], per_process: int, accumulate: int) -> list[list[list[int]]]:
    """A rank's indices as steps x micro-batches: `per_process` per step, each step split into
    `accumulate` strided micro-batches (micro-batch m takes every `accumulate`-th index from m).

    Every rank gets the same number of steps of the same sizes (ShardOrder pads by wrapping).
    """
    steps = [list(indices[i : i + per_process]) for i in range(0, len(indices), per_process)]
    return [[s[m::accumulate] for m in range(accumulate) if s[m::accumulate]] for s in steps]


class SeededSamples(Dataset[Any]):
    """`dataset[i]` with its random augmentation seeded by (seed, epoch, i): rank-independent."""

    def __init__(self, dataset: Dataset[Any], seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        # torchvision's random transforms draw from the global CPU generator; fork it so the
        # caller's stream is untouched (workers = 0 runs this in the training process).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(mix_seed(self.seed, self.epoch, index))
            return self.dataset[index]
