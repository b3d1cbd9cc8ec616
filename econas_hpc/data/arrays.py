"""`ArrayDataset`: a dataset in host memory, uint8 NHWC images and int64 labels.

This module owns the one in-memory form every loader returns (`cifar`, `digits`, the synthetic
set) and the trainer consumes, so the loaders need not import each other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from econas_hpc.errors import DataError


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Images (N, 32, 32, 3) uint8 in NHWC as CIFAR stores them, labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] != 3:
            raise DataError(
                f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.dtype != np.int64 or self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"labels must be int64 ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices: np.ndarray) -> ArrayDataset:
        """The samples at `indices`, in that order (copies)."""
        return ArrayDataset(self.images[indices], self.labels[indices])
