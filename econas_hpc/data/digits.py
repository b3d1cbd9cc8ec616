"""Real handwritten digits without a download: scikit-learn's bundled 8x8 set, CIFAR-shaped.

This module owns the `digits` dataset: `sklearn.datasets.load_digits` (1,797 grey 8x8 images of
the digits 0-9, 17 grey levels, shipped inside the scikit-learn wheel, so nothing is fetched),
its fixed stratified test split and its normalisation constants. Images come back in the layout
every other dataset of the package has, `ArrayDataset` uint8 NHWC (N, 32, 32, 3), so the same
trainer, hold-out split, 1/s subsets and augmentation serve it:

- Grey levels 0..16 are scaled to 0..255 (rounded), 0 being the background.
- Each native pixel becomes a 4x4 block (pixel replication, not interpolation): the 32 px image
  is the unreduced side of CIFAR's base network, and the reduction to r4 (8 px, an antialiased
  bilinear resize in `augment.py`) lands back on the native grid, so "r4" means "the digits as
  scanned"; a smooth upsampling would blur them before any reduction.
- The one grey channel is replicated to three rather than giving the network a 1-channel stem:
  the network, its parameter count and the cost model stay those of CIFAR-10 (the settings'
  channel arithmetic is defined on them), and the stem's extra weights cost nothing here.

The test split is a quarter of each class (450 images), chosen by a fixed seed; the training
part (1,347) is what `cifar.split_holdout` carves the selection split from. Augmentation for
digits is the random shift of the 32 px crop with 4 px zero padding (one native pixel) and no
horizontal flip (a mirrored 3 is no digit); `augment.augment_for` picks it by dataset name.
"""

from __future__ import annotations

import numpy as np

from econas_hpc.data.arrays import ArrayDataset
from econas_hpc.errors import DataError

SIDE = 32  # the unreduced side of the CIFAR-10 base network
NATIVE = 8
TEST_FRACTION = 0.25
CLASSES = 10
TRAIN_SIZE, TEST_SIZE = 1347, 450  # of the 1,797 images: the split below (tested)
# Mean and standard deviation of the 0..1 intensities of the 1,347 training images at 32 px
# (equal across the three replicated channels); tests/test_digits.py recomputes them.
DIGITS_MEAN = (0.30549,) * 3
DIGITS_STD = (0.37610,) * 3
_TEST_STREAM = 0x5EED_D161


def _read_bundled() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float 0..16, labels (1797,)) from the scikit-learn wheel."""
    try:
        from sklearn.datasets import load_digits  # deferred: only this dataset needs sklearn
    except ImportError as exc:
        raise DataError(
            "dataset 'digits' needs scikit-learn (pip install scikit-learn); "
            "or use --dataset synthetic"
        ) from exc
    try:
        bunch = load_digits()
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read scikit-learn's bundled digits: {exc}") from exc
    return np.asarray(bunch.images), np.asarray(bunch.target)


def to_cifar_layout(images: np.ndarray) -> np.ndarray:
    """(N, 8, 8) grey levels 0..16 -> uint8 (N, 32, 32, 3): scaled, 4x4 blocks, 3 channels."""
    grey = np.rint(np.clip(images, 0.0, 16.0) * (255.0 / 16.0)).astype(np.uint8)
    factor = SIDE // NATIVE
    big = grey.repeat(factor, axis=1).repeat(factor, axis=2)
    return np.ascontiguousarray(np.repeat(big[..., None], 3, axis=3))


def stratified_test_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the test split: round(fraction * n_c) random samples of each class."""
    rng = np.random.default_rng([seed, _TEST_STREAM])
    picked = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(fraction * members.size))
        picked.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(picked))


def load_digits_split(seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) of the bundled digits in the CIFAR layout; a pure function of `seed`.

    Raises:
        DataError: scikit-learn is missing or its bundled file is unreadable.
    """
    raw, target = _read_bundled()
    if raw.ndim != 3 or raw.shape[1:] != (NATIVE, NATIVE) or raw.shape[0] != target.shape[0]:
        raise DataError(f"scikit-learn's digits have shape {raw.shape}, expected (N, 8, 8)")
    images = to_cifar_layout(raw)
    labels = target.astype(np.int64)
    test_idx = stratified_test_indices(labels, TEST_FRACTION, seed)
    train_mask = np.ones(labels.size, dtype=bool)
    train_mask[test_idx] = False
    train_idx = np.flatnonzero(train_mask)
    return (
        ArrayDataset(images[train_idx], labels[train_idx]),
        ArrayDataset(images[test_idx], labels[test_idx]),
    )
