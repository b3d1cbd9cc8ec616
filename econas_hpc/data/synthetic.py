"""Synthetic, learnable stand-ins for CIFAR-10 and ImageNet, written in the real on-disk formats.

This module owns the image generator and the two writers:
- `write_synthetic_cifar` writes `root/cifar-10-batches-py/` exactly as CIFAR-10's python
  release lays it out (pickled dicts with bytes keys, `data` as N x 3072 uint8 rows holding the
  R, G and B planes one after the other), so `cifar.load_cifar10` reads it with the real reader;
- `write_synthetic_imagenet` writes an ImageFolder tree `root/{train,val}/<class>/*.png`.

Images are drawn from per-class templates defined on the unit square, so one generator serves
every size. Each class has a faint class colour plus `TEMPLATES_PER_CLASS` templates: a smooth
colour field (low-frequency cosines), an oriented grating of 3-5 cycles per image (visible at
32 px, mostly averaged away at 8 px) and a coloured blob. A sample is one template under a random
scale/rotation/shift, blended with another class's template, plus a random per-sample nuisance
template, a per-channel gain and offset, and pixel noise. Measured (3-conv-layer CNN, SGD, CPU):
2 000 images at 8 px -> ~50 % test accuracy after 2 epochs (chance 10 %); 5 000 images, 8
epochs: width 16 -> 73 % at 8 px and 63 % at 32 px, width 48 -> 79 % at 8 px.

Writes are deterministic (same parameters -> identical bytes on one platform; float32 maths may
differ in the last bit across CPUs), idempotent (a marker file records the parameters) and
atomic (a temporary directory renamed into place), so a killed writer leaves no torn dataset.
This module must not read datasets back; that is `cifar.py`'s job.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from econas_hpc.errors import DataError
from econas_hpc.fsio import write_bytes_atomic

NUM_CLASSES = 10
TEMPLATES_PER_CLASS = 6
CIFAR_FOLDER = "cifar-10-batches-py"
MARKER = "econas-synthetic.json"
# Bump whenever the generator's output changes, so stale directories are rewritten.
GENERATOR_VERSION = 1
_PICKLE_PROTOCOL = 4  # fixed (not HIGHEST_PROTOCOL) so bytes stay identical across Pythons
# Difficulty knobs, tuned so a 3-layer CNN reaches ~50-80 % after a few epochs (see tests).
LAMBDA_MAX = 0.45  # weight of the blended other-class template, uniform in [0, LAMBDA_MAX]
NUISANCE_MIN, NUISANCE_MAX = 0.3, 0.8  # weight of the per-sample random template
NOISE_STD = 0.08  # i.i.d. pixel noise, in [0, 1] intensity units
_CHUNK = 2048  # samples rendered at once: bounds memory at ~ _CHUNK * size^2 * 3 float32


@dataclass(frozen=True)
class _Templates:
    """Template parameters, each array indexed [class, template, ...]."""

    class_colour: np.ndarray  # (C, 1, 3) in [0.42, 0.58]
    wave_freq: np.ndarray  # (C, K, 3, 2, 2) cycles per image along (u, v) per channel and wave
    wave_phase: np.ndarray  # (C, K, 3, 2)
    wave_amp: np.ndarray  # (C, K, 3, 2)
    grating_freq: np.ndarray  # (C, K, 2) cycles per image along (u, v)
    grating_colour: np.ndarray  # (C, K, 3)
    blob_centre: np.ndarray  # (C, K, 2)
    blob_sigma: np.ndarray  # (C, K)
    blob_colour: np.ndarray  # (C, K, 3)


def _make_templates(
    rng: np.random.Generator, classes: int, per_class: int = TEMPLATES_PER_CLASS
) -> _Templates:
    k = per_class
    angle = rng.uniform(0.0, np.pi, (classes, k))
    freq = rng.uniform(3.0, 5.0, (classes, k))
    wave_angle = rng.uniform(0.0, 2 * np.pi, (classes, k, 3, 2))
    wave_freq = rng.uniform(0.4, 1.3, (classes, k, 3, 2))
    arrays = {
        "class_colour": 0.5 + rng.uniform(-0.08, 0.08, (classes, 1, 3)),
        "wave_freq": np.stack([wave_freq * np.cos(wave_angle), wave_freq * np.sin(wave_angle)], -1),
        "wave_phase": rng.uniform(0.0, 2 * np.pi, (classes, k, 3, 2)),
        "wave_amp": rng.uniform(0.08, 0.2, (classes, k, 3, 2)),
        "grating_freq": np.stack([freq * np.cos(angle), freq * np.sin(angle)], -1),
        "grating_colour": rng.uniform(-0.18, 0.18, (classes, k, 3)),
        "blob_centre": rng.uniform(0.25, 0.75, (classes, k, 2)),
        "blob_sigma": rng.uniform(0.08, 0.18, (classes, k)),
        "blob_colour": rng.uniform(-0.4, 0.4, (classes, k, 3)),
    }
    # float32 throughout: numpy's float32 cos/exp are ~20x faster than float64 here.
    return _Templates(**{key: a.astype(np.float32) for key, a in arrays.items()})


def _template_field(
    t: _Templates, cls: np.ndarray, k: np.ndarray, u: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """Evaluate templates (cls[i], k[i]) at coordinates u, v of shape (B, H, W) -> (B, H, W, 3)."""
    img = np.broadcast_to(t.class_colour[cls][:, None, :, :], (*u.shape, 3)).copy()
    uu, vv = u[..., None], v[..., None]  # (B, H, W, 1): broadcasts over the colour channels
    f = t.wave_freq[cls, k][:, None, None]  # (B, 1, 1, 3, 2 waves, 2 axes)
    phase, amp = t.wave_phase[cls, k][:, None, None], t.wave_amp[cls, k][:, None, None]
    for w in range(f.shape[-2]):  # a loop over 2 waves beats a reduction over a length-2 axis
        arg = 2 * np.pi * (f[..., w, 0] * uu + f[..., w, 1] * vv) + phase[..., w]
        img += amp[..., w] * np.cos(arg)
    g = t.grating_freq[cls, k]  # (B, 2)
    grating = np.cos(2 * np.pi * (g[:, None, None, 0] * u + g[:, None, None, 1] * v))
    img += grating[..., None] * t.grating_colour[cls, k][:, None, None, :]
    c = t.blob_centre[cls, k]
    d2 = (u - c[:, None, None, 0]) ** 2 + (v - c[:, None, None, 1]) ** 2
    blob = np.exp(-d2 / (2 * t.blob_sigma[cls, k][:, None, None] ** 2))
    img += blob[..., None] * t.blob_colour[cls, k][:, None, None, :]
    return img


def _sample_coords(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample similarity jitter (scale 0.8-1.25, rotation +-15 deg, shift +-0.15) of pixels."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    scale = np.exp(rng.uniform(np.log(0.8), np.log(1.25), n)).astype(np.float32)[:, None, None]
    theta = rng.uniform(-np.pi / 12, np.pi / 12, n).astype(np.float32)[:, None, None]
    shift = rng.uniform(-0.15, 0.15, (n, 2)).astype(np.float32)
    x, y = grid[None, None, :], grid[None, :, None]
    u = (np.cos(theta) * x - np.sin(theta) * y) / scale + 0.5 + shift[:, None, None, :1][..., 0]
    v = (np.sin(theta) * x + np.cos(theta) * y) / scale + 0.5 + shift[:, None, None, 1:][..., 0]
    return u, v


def _render_chunk(
    rng: np.random.Generator, t: _Templates, labels: np.ndarray, size: int
) -> np.ndarray:
    n = len(labels)
    classes = t.class_colour.shape[0]
    u, v = _sample_coords(rng, n, size)
    own = _template_field(t, labels, rng.integers(0, TEMPLATES_PER_CLASS, n), u, v)
    # Blend with another class's template so no single cue separates the classes perfectly.
    other_cls = (labels + rng.integers(1, classes, n)) % classes
    other = _template_field(t, other_cls, rng.integers(0, TEMPLATES_PER_CLASS, n), u, v)
    lam = rng.uniform(0.0, LAMBDA_MAX, n).astype(np.float32)[:, None, None, None]
    img = (1.0 - lam) * own + lam * other
    # Nuisance: a fresh random template per sample (same statistics as the class templates,
    # independent geometry), so every cue type also appears as noise.
    nuisance = _make_templates(rng, n, per_class=1)
    nu, nv = _sample_coords(rng, n, size)
    field = _template_field(nuisance, np.arange(n), np.zeros(n, dtype=np.int64), nu, nv)
    mu = rng.uniform(NUISANCE_MIN, NUISANCE_MAX, n).astype(np.float32)[:, None, None, None]
    img += mu * (field - nuisance.class_colour[:, None])
    img *= rng.uniform(0.8, 1.2, (n, 1, 1, 3)).astype(np.float32)
    img += rng.uniform(-0.1, 0.1, (n, 1, 1, 3)).astype(np.float32)
    img += NOISE_STD * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _render_with(
    t: _Templates, labels: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    out = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for start in range(0, len(labels), _CHUNK):
        stop = min(start + _CHUNK, len(labels))
        out[start:stop] = _render_chunk(rng, t, labels[start:stop], size)
    return out


def _balanced_labels(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes).astype(np.int64)


def _make_split(
    seed: int, split: int, n: int, size: int, classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split (0 = train, 1 = test/val), independent streams per split."""
    templates = _make_templates(np.random.default_rng([seed, 0x7E]), classes)
    rng = np.random.default_rng([seed, split, size])
    labels = _balanced_labels(rng, n, classes)
    return _render_with(templates, labels, size, rng), labels


def _marker_matches(folder: Path, params: dict[str, object]) -> bool:
    try:
        return bool(json.loads((folder / MARKER).read_text()) == params)
    except (OSError, ValueError):
        return False


def _publish(tmp: Path, final: Path, params: dict[str, object]) -> None:
    """Move a finished temporary directory into place, replacing only an older synthetic one."""
    if final.exists():
        if _marker_matches(final, params):  # a concurrent writer finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        elif not (final / MARKER).exists():
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(
                f"{final} exists and is not a synthetic dataset; refusing to overwrite "
                "it (pick another --data-dir)"
            )
        else:
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, final)
    except OSError:  # lost a race to an identical writer between the check and the rename
        shutil.rmtree(tmp, ignore_errors=True)
        if not _marker_matches(final, params):
            raise


def _write_pickle(path: Path, obj: dict[bytes, object]) -> None:
    # Only dicts, lists, bytes, ints and uint8 arrays: what `cifar.CifarUnpickler` accepts.
    write_bytes_atomic(path, pickle.dumps(obj, protocol=_PICKLE_PROTOCOL))


def _cifar_batch(
    label: bytes, images: np.ndarray, labels: np.ndarray, first: int
) -> dict[bytes, object]:
    # CIFAR rows: 1024 R values, then 1024 G, then 1024 B, each plane row-major.
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)
    names = [b"synthetic_%06d.png" % (first + i) for i in range(len(images))]
    return {
        b"batch_label": label,
        b"labels": [int(x) for x in labels],
        b"data": data,
        b"filenames": names,
    }


def _write_cifar_files(folder: Path, n_train: int, n_test: int, seed: int) -> None:
    train_x, train_y = _make_split(seed, 0, n_train, 32, NUM_CLASSES)
    for i, idx in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        batch = _cifar_batch(b"training batch %d of 5" % i, train_x[idx], train_y[idx], int(idx[0]))
        _write_pickle(folder / f"data_batch_{i}", batch)
    test_x, test_y = _make_split(seed, 1, n_test, 32, NUM_CLASSES)
    _write_pickle(folder / "test_batch", _cifar_batch(b"testing batch 1 of 1", test_x, test_y, 0))
    meta = {
        b"num_cases_per_batch": -(-n_train // 5),
        b"num_vis": 3072,
        b"label_names": [b"synthetic_%d" % c for c in range(NUM_CLASSES)],
    }
    _write_pickle(folder / "batches.meta", meta)


def write_synthetic_cifar(
    root: Path, n_train: int = 5000, n_test: int = 1000, seed: int = 0
) -> Path:
    """Write a learnable synthetic CIFAR-10 in the python-pickle format under `root`.

    Args:
        root: parent directory; the dataset goes to `root/cifar-10-batches-py`.
        n_train: training images, spread over data_batch_1..5 (sizes differ by at most 1).
        n_test: images in test_batch.
        seed: fixes templates and samples; same arguments -> byte-identical files.

    Returns:
        The `cifar-10-batches-py` directory.

    Raises:
        DataError: bad sizes, or the directory holds a non-synthetic (real) dataset.
    """
    if n_train < 5 or n_test < 1:
        raise DataError(
            f"synthetic CIFAR needs n_train >= 5 and n_test >= 1, got {n_train}, {n_test}"
        )
    root = Path(root)
    final = root / CIFAR_FOLDER
    params = {
        "kind": "cifar10",
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
        "version": GENERATOR_VERSION,
    }
    if _marker_matches(final, params):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{CIFAR_FOLDER}.tmp-", dir=root))
    try:
        _write_cifar_files(tmp, n_train, n_test, seed)
        write_bytes_atomic(
            tmp / MARKER, json.dumps(params).encode()
        )  # last: it certifies a complete directory
        _publish(tmp, final, params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_synthetic_imagenet(
    root: Path, classes: int = 4, per_class: int = 8, size: int = 64, seed: int = 0
) -> Path:
    """Write a small synthetic ImageFolder tree `root/{train,val}/<class>/*.png`.

    Each split holds `per_class` PNG images of `size` x `size` per class, from the same
    generator as `write_synthetic_cifar`. Idempotent and atomic like it; returns `root`.
    """
    if classes < 2 or per_class < 1 or size < 8:
        raise DataError(
            f"synthetic ImageNet needs classes >= 2, per_class >= 1, size >= 8; got "
            f"{classes}, {per_class}, {size}"
        )
    from PIL import Image  # deferred: PIL is only needed by this writer

    root = Path(root)
    params = {
        "kind": "imagenet",
        "classes": classes,
        "per_class": per_class,
        "size": size,
        "seed": seed,
        "version": GENERATOR_VERSION,
    }
    if _marker_matches(root, params):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        for split, name in enumerate(("train", "val")):
            images, labels = _make_split(seed, split, classes * per_class, size, classes)
            for c in range(classes):
                (tmp / name / f"class_{c:03d}").mkdir(parents=True)
            for i, (img, label) in enumerate(zip(images, labels, strict=True)):
                Image.fromarray(img).save(tmp / name / f"class_{label:03d}" / f"img_{i:05d}.png")
        write_bytes_atomic(tmp / MARKER, json.dumps(params).encode())
        _publish(tmp, root, params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
