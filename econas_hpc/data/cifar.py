"""CIFAR-10 on the host: reading the python-pickle release, splits and fixed subsets.

This module owns the reader of `<root>/cifar-10-batches-py/` (our own: torchvision's `CIFAR10`
checks md5 sums that synthetic files cannot match) with its restricted unpickler
(`CifarUnpickler`: a batch file may name only the few globals the release holds, so a planted
file cannot import or call anything), the deterministic hold-out split and the fixed 1/s
subset of the sample-ratio factor (spec 5.2), and `load_dataset`, the one entry point the
trainer calls. It does no augmentation and no device transfer (`augment.py` does both).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np

from econas_hpc.data.arrays import ArrayDataset
from econas_hpc.data.digits import load_digits_split  # sklearn itself is imported on use
from econas_hpc.data.synthetic import CIFAR_FOLDER, write_synthetic_cifar
from econas_hpc.errors import ConfigError, DataError, UnsafeDataError
from econas_hpc.settings import DATASETS, MAX_LEVEL, reduce_level

log = logging.getLogger(__name__)

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
LAYOUT = f"<root>/{CIFAR_FOLDER}/data_batch_1..5, {TEST_FILE}"
# Independent streams per purpose, so changing the split never changes the subset or vice versa.
_SPLIT_STREAM, _SUBSET_STREAM = 0x5EED_0001, 0x5EED_0002


def _missing_error(folder: Path, missing: list[str], tried_download: bool) -> DataError:
    what = "download failed; " if tried_download else ""
    return DataError(
        f"CIFAR-10 not found in {folder} (missing {', '.join(missing)}): {what}expected layout "
        f"{LAYOUT}; get {CIFAR_URL} and extract it into {folder.parent}, "
        "or use --dataset synthetic"
    )


# numpy's own array reconstruction: the function `ndarray.__reduce__` names, under both module
# paths it has had (numpy < 2 pickles `numpy.core.multiarray`, numpy >= 2 `numpy._core...`).
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "bytes"): bytes,
    ("builtins", "str"): str,
    ("builtins", "int"): int,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a CIFAR-10 python batch holds.

    The release is a dict of bytes keys, lists of ints/bytes and one uint8 numpy array; any other
    global (`os.system`, `builtins.eval`, `subprocess.Popen`, ...) is refused before it is even
    imported, so a planted batch file can run no code.
    """

    def find_class(self, module: str, name: str) -> object:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise UnsafeDataError(f"{module}.{name}")
        return found


def read_pickle_restricted(path: Path) -> object:
    """Unpickle `path` with `CifarUnpickler` (Python 2 strings load as bytes).

    Raises:
        UnsafeDataError: the file names a global the CIFAR-10 release does not hold.
        OSError, pickle.UnpicklingError, ...: as `pickle.load` (the caller maps them).
    """
    with open(path, "rb") as f:
        try:
            return CifarUnpickler(f, encoding="bytes").load()
        except UnsafeDataError as exc:
            raise UnsafeDataError(
                f"refusing CIFAR-10 batch {path}: it names {exc}, which a CIFAR-10 python batch "
                "never holds (allowed: dicts, lists, bytes, str, int and numpy arrays); the file "
                "was not written by the CIFAR-10 release or by this tool"
            ) from None


def _field(batch: dict[object, object], key: str) -> object:
    # The real files are Python 2 pickles: keys load as bytes with encoding="bytes"; accept str too.
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch file into (images NHWC uint8, labels int64).

    Raises:
        DataError: unreadable, truncated or malformed file (the message names it).
    """
    try:
        batch = read_pickle_restricted(path)
        if not isinstance(batch, dict):
            raise TypeError(f"a batch is a dict, not {type(batch).__name__}")
        data = np.asarray(_field(batch, "data"))
        labels = np.asarray(_field(batch, "labels"), dtype=np.int64)
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        ImportError,
        IndexError,
        MemoryError,
        RecursionError,
    ) as exc:
        raise DataError(
            f"cannot read CIFAR-10 batch {path}: {type(exc).__name__}: {exc}; the "
            "file is truncated or not a CIFAR-10 python batch"
        ) from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    out_of_range = labels.size > 0 and not 0 <= labels.min() <= labels.max() <= 9
    if labels.shape != (data.shape[0],) or out_of_range:
        raise DataError(
            f"{path}: 'labels' must be {data.shape[0]} ints in 0..9, got shape {labels.shape}"
        )
    # Rows hold the R, G and B planes one after the other: (N, 3, 32, 32) -> NHWC.
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def _download(root: Path, missing: list[str]) -> None:
    try:
        import torchvision  # deferred: importing it costs seconds and is only needed here

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - any network/extract failure means "no data"
        log.warning("CIFAR-10 download into %s failed: %s", root, exc)
        raise _missing_error(root / CIFAR_FOLDER, missing, True) from exc


def _missing_files(folder: Path) -> list[str]:
    return [name for name in (*TRAIN_FILES, TEST_FILE) if not (folder / name).is_file()]


def load_cifar10(root: Path, download: bool = True) -> tuple[ArrayDataset, ArrayDataset]:
    """Load (train, test) from `root/cifar-10-batches-py/` (CIFAR-10's python release).

    Args:
        root: the directory that holds `cifar-10-batches-py/`.
        download: when files are missing, fetch them with torchvision first.

    Raises:
        DataError: files missing (and not downloadable), truncated or malformed; one line naming
            the directory, the expected layout and where to get the data.
    """
    root = Path(root)
    folder = root / CIFAR_FOLDER
    for where in (root, folder):  # unreadable is not missing: never "download" over it
        if where.exists() and not os.access(where, os.R_OK | os.X_OK):
            raise DataError(
                f"CIFAR-10 folder {where} is not readable by this user (permission denied)"
            )
    missing = _missing_files(folder)
    if missing and download:
        _download(root, missing)
        missing = _missing_files(folder)
    if missing:
        raise _missing_error(folder, missing, False)
    parts = [read_batch(folder / name) for name in TRAIN_FILES]
    train = ArrayDataset(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    )
    test = ArrayDataset(*read_batch(folder / TEST_FILE))
    return train, test


def split_holdout(
    train: ArrayDataset, val_size: int, seed: int
) -> tuple[ArrayDataset, ArrayDataset]:
    """Carve a validation set of `val_size` samples out of `train`, deterministically from `seed`.

    Both parts keep the original sample order and are disjoint; e.g. 45 000 / 5 000 for
    `val_size=5000` on CIFAR-10. `val_size=0` returns (train, empty).

    Raises:
        ConfigError: `val_size` outside 0..len(train)-1.
    """
    n = len(train)
    if not 0 <= val_size < n:
        raise ConfigError(f"val_size={val_size} must be in 0..{n - 1} for {n} training samples")
    perm = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(n)
    val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    return train.take(train_idx), train.take(val_idx)


def subset_for(train: ArrayDataset, s: int, seed: int) -> ArrayDataset:
    """The fixed subset of sample level s (s=0 -> all), a pure function of `seed`.

    Keeps `reduce_level(len(train), s)` samples (len / 2^(s/2), rounded half up, >= 1; spec
    5.1), in the original order; the per-epoch shuffle is `augment.epoch_order`'s job.

    Raises:
        ConfigError: a level outside 0..MAX_LEVEL.
    """
    if not 0 <= s <= MAX_LEVEL:
        raise ConfigError(f"sample level s={s} must be in 0..{MAX_LEVEL} (0 = all samples)")
    size = reduce_level(len(train), s)
    if size >= len(train):
        return train
    rng = np.random.default_rng([seed, _SUBSET_STREAM])
    return train.take(np.sort(rng.choice(len(train), size=size, replace=False)))


def synthetic_dir(data_dir: Path, n_train: int, n_test: int, seed: int) -> Path:
    """Where `load_dataset("synthetic", data_dir, ...)` keeps files: a folder per parameter set."""
    return Path(data_dir) / f"synthetic-{n_train}-{n_test}-seed{seed}"


def load_dataset(
    name: str,
    data_dir: Path | str,
    *,
    download: bool = True,
    n_train: int = 5000,
    n_test: int = 1000,
    seed: int = 0,
) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) for `name` in DATASETS.

    "cifar10" reads `data_dir/cifar-10-batches-py/`. "digits" is scikit-learn's bundled 8x8
    digits in the CIFAR layout (`digits.load_digits_split`; `data_dir` unused). "synthetic"
    writes a synthetic CIFAR-10 of `n_train`/`n_test` images under `synthetic_dir(data_dir, ...)`
    if absent and reads it back through `load_cifar10`, so the real reader is exercised; real
    data in `data_dir` is untouched.

    Raises:
        ConfigError: unknown name. DataError: see `load_cifar10`.
    """
    if name == "cifar10":
        return load_cifar10(Path(data_dir), download=download)
    if name == "digits":
        return load_digits_split()
    if name == "synthetic":
        root = synthetic_dir(Path(data_dir), n_train, n_test, seed)
        write_synthetic_cifar(root, n_train=n_train, n_test=n_test, seed=seed)
        return load_cifar10(root, download=False)
    raise ConfigError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
