"""A segment's data: its train / selection / test sets on the device, and their augmentation.

Owns `SegmentData` and `load_data` (what `segment.open_run` loads and `packed.py` shares between
lanes whose specs read the same data), and the fixed seeds of the shared splits.

Must not: train, or import h5py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from econas_hpc.data.arrays import ArrayDataset
from econas_hpc.data.augment import DeviceAugment, augment_for
from econas_hpc.data.cifar import load_dataset, split_holdout, subset_for
from econas_hpc.settings import Setting
from econas_hpc.train import SegmentSpec

__all__ = ["HOLDOUT_SEED", "SYNTHETIC_SEED", "Pair", "SegmentData", "load_data"]

HOLDOUT_SEED = 0  # one held-out split shared by every network, whatever its own seed
SYNTHETIC_SEED = 0  # the synthetic dataset is one fixed dataset, not a per-network draw


Pair = tuple[torch.Tensor, torch.Tensor]  # (uint8 images, int64 labels) on the device


@dataclass(frozen=True, slots=True)
class SegmentData:
    """A segment's device-resident sets and augmentation (`load_data`); lanes may share one."""

    train: Pair
    sel: Pair  # the very tensors of `test` when selecting on the test set
    test: Pair
    aug: DeviceAugment


def load_data(spec: SegmentSpec, setting: Setting, device: torch.device) -> SegmentData:
    """The segment's train / selection / test sets, on the device once, and its augmentation."""
    n_train, n_test = spec.synthetic_train, spec.synthetic_test
    train, test = load_dataset(
        spec.dataset, spec.data_dir, n_train=n_train, n_test=n_test, seed=SYNTHETIC_SEED
    )
    val = test
    if spec.recipe.selection == "val":
        val_size = max(1, round(len(train) * spec.recipe.val_fraction))
        train, val = split_holdout(train, val_size, HOLDOUT_SEED)
    train = subset_for(train, setting.s, spec.seed)  # s0 keeps everything

    def put(ds: ArrayDataset) -> Pair:
        return torch.from_numpy(ds.images).to(device), torch.from_numpy(ds.labels).long().to(device)

    tests = put(test)
    aug = augment_for(
        spec.dataset, setting.resolution(spec.base), spec.recipe.cutout_length, device
    )
    return SegmentData(put(train), tests if val is test else put(val), tests, aug)
