"""Atomic, verified training checkpoints: one directory per network, the newest two kept.

This module owns the on-disk checkpoint format, the atomic JSON writer used for result files, and
the capture/restore of the global RNG states. What goes into a payload is the trainer's business
(`segment.py`); this module only writes it so that a reader never sees a torn file, verifies it
on load, and refuses a checkpoint of another network.

Layout of a checkpoint directory:
- `ep{epoch:03d}-s{step:05d}.pt`: a plain `torch.save` file. `epoch` is the epoch in progress and
  `step` the optimizer steps already done in it, so step 0 is an epoch boundary ("epoch 3, step 0"
  = three epochs done) and names sort in training order.
- `ep{epoch:03d}-s{step:05d}.pt.sha256`: the sidecar, `"<hex>  <name>\\n"` (the `sha256sum`
  format, so `sha256sum -c` works). It is written, atomically, only after the `.pt` file is in
  place: a `.pt` without a sidecar is *incomplete* (the writer died between the two renames) and
  is skipped; a `.pt` whose bytes do not match its sidecar, or that does not unpickle, is
  *corrupt* and the reader falls back to the previous one with a warning.

Writes go to a hidden temporary file in the same directory, are flushed and fsynced, then
`os.replace`d; the directory is fsynced so the rename itself survives a crash. Older checkpoints
are deleted only after the new one is complete, and the newest two are always kept (timm,
torchtitan).

Payloads must hold `payload["meta"]`, a mapping of strings; `load_latest` compares it with the
caller's expectation and raises `CheckpointError` on any difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from econas_hpc import fsio
from econas_hpc.errors import CheckpointError

__all__ = [
    "KEEP_LAST",
    "capture_rng_state",
    "checkpoint_digest",
    "checkpoint_name",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest",
    "restore_rng_state",
    "save_checkpoint",
    "write_json_atomic",
]

log = logging.getLogger(__name__)

KEEP_LAST = 2  # complete checkpoints kept; the previous one is the fallback for a corrupt newest
_NAME_RE = re.compile(r"^ep(\d{3,})-s(\d{5,})\.pt$")
_SIDECAR_SUFFIX = ".sha256"


def checkpoint_name(epoch: int, step: int) -> str:
    """File name of the checkpoint at (epoch in progress, steps done in it)."""
    if epoch < 0 or step < 0:
        raise CheckpointError(f"checkpoint position must be >= 0, got epoch={epoch} step={step}")
    return f"ep{epoch:03d}-s{step:05d}.pt"


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk. Some network filesystems
    # refuse fsync on a directory; the data file itself is already fsynced, so tolerate that.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `fsio` (unpredictable 0600 temporary, fsync, rename)."""
    fsio.write_bytes_atomic(path, data)


def write_json_atomic(path: Path, obj: object) -> None:
    """Write `obj` as strict JSON (no NaN) to `path` atomically, then fsync the directory."""
    path = Path(path)
    fsio.make_private_dir(path.parent, "network folder")
    fsio.write_json_atomic(path, obj, sort_keys=False)


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG state (torch CPU/CUDA, numpy, python), as `weights_only`-loadable data."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # MT19937 key as an int64 tensor: weights_only loads tensors but not numpy arrays.
        "numpy": (name, torch.from_numpy(np.asarray(key, np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of `capture_rng_state`; a CUDA state is restored only where CUDA is in use."""
    torch.set_rng_state(state["torch"])
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + _SIDECAR_SUFFIX)


def list_checkpoints(directory: Path) -> list[tuple[int, int, Path]]:
    """All `.pt` checkpoints in `directory` as (epoch, step, path), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    found.sort(key=lambda item: (item[0], item[1]))
    return found


def _prune(directory: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints (and incomplete ones older)."""
    complete = [item for item in list_checkpoints(directory) if _sidecar(item[2]).exists()]
    if len(complete) <= keep:
        return
    newest_kept = complete[-keep]
    for epoch, step, path in list_checkpoints(directory):
        if (epoch, step) >= (newest_kept[0], newest_kept[1]):
            break
        # Sidecar first: a .pt left without its sidecar is merely "incomplete" and skipped.
        with contextlib.suppress(FileNotFoundError):
            _sidecar(path).unlink()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def save_checkpoint(directory: Path, epoch: int, step: int, payload: dict[str, Any]) -> Path:
    """Write `payload` atomically as the checkpoint at (epoch, step) and prune to the newest 2.

    Args:
        directory: the network's checkpoint directory (created if absent).
        epoch: the epoch in progress (epochs completed when `step` is 0).
        step: optimizer steps already done within `epoch`.
        payload: a `torch.save`-able dict with a `"meta"` mapping of strings.

    Returns:
        The path of the new checkpoint.

    Raises:
        CheckpointError: when the payload has no `meta` mapping or the position is negative.
    """
    if not isinstance(payload.get("meta"), Mapping):
        raise CheckpointError("checkpoint payload needs a 'meta' mapping (arch_id, setting, ...)")
    directory = Path(directory)
    fsio.make_private_dir(directory, "checkpoint folder")
    path = directory / checkpoint_name(epoch, step)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    # A rewrite of the same position must not leave an old sidecar next to new bytes.
    with contextlib.suppress(FileNotFoundError):
        _sidecar(path).unlink()
    _write_atomic(path, data)
    _write_atomic(_sidecar(path), f"{digest}  {path.name}\n".encode())
    _fsync_dir(directory)
    _prune(directory, KEEP_LAST)
    return path


def checkpoint_digest(path: Path) -> str:
    """sha256 (hex) of a checkpoint file's bytes, for the search state to record."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify one checkpoint against its sidecar.

    Raises:
        CheckpointError: when the sidecar is missing or malformed, the bytes do not match it,
            or the file does not unpickle into a dict with a `meta` mapping.
    """
    path = Path(path)
    sidecar = _sidecar(path)
    try:
        recorded = sidecar.read_text().split()[0]
    except (FileNotFoundError, IndexError) as exc:
        raise CheckpointError(f"checkpoint {path} has no valid sidecar {sidecar.name}") from exc
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: sha256 {actual[:16]}... != recorded {recorded[:16]}..."
        )
    try:
        # weights_only: payloads hold tensors, numbers, strings and containers only.
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means an unusable file
        raise CheckpointError(f"checkpoint {path} does not load: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), Mapping):
        raise CheckpointError(f"checkpoint {path} holds no 'meta' mapping")
    return payload


def _check_meta(path: Path, meta: Mapping[str, Any], expect: Mapping[str, str]) -> None:
    for key, wanted in expect.items():
        found = meta.get(key)
        if found != wanted:
            raise CheckpointError(
                f"checkpoint {path} belongs to another run: {key}={found!r}, expected {wanted!r}"
            )


def load_latest(
    directory: Path, expect: Mapping[str, str], *, corrupt_is_none: bool = False
) -> dict[str, Any] | None:
    """Load the newest verified checkpoint in `directory`, falling back past corrupt ones.

    Incomplete checkpoints (no sidecar: the writer died between its two renames) are skipped
    with a warning; corrupt ones (hash mismatch, unloadable) too, falling back to the previous.

    Args:
        directory: the network's checkpoint directory (may be absent).
        expect: values `payload["meta"]` must hold (arch_id, genotype_json, setting, profile,
            format_version ...).

    Returns:
        The payload of the newest valid checkpoint, with `payload["path"]` set to its file, or
        None when the directory holds no complete checkpoint at all (nor a valid one, with
        `corrupt_is_none`: a caller that recomputes lost epochs from scratch).

    Raises:
        CheckpointError: when the newest valid checkpoint belongs to another network, setting or
            profile (naming both values), or when every complete checkpoint is corrupt.
        UnsafePathError: a checkpoint (or its sidecar) is a link leading out of `directory`.
    """
    corrupt: list[str] = []
    for _, _, path in reversed(list_checkpoints(directory)):
        fsio.check_within(path, directory, "checkpoint")  # a link out of the folder: refused
        fsio.check_within(_sidecar(path), directory, "checkpoint sidecar")
        if not _sidecar(path).exists():
            log.warning("skipping incomplete checkpoint %s (no sidecar)", path)
            continue
        try:
            payload = load_checkpoint(path)
        except CheckpointError as exc:
            log.warning("%s; falling back to the previous checkpoint", exc)
            corrupt.append(path.name)
            continue
        _check_meta(path, payload["meta"], expect)
        payload["path"] = str(path)
        return payload
    if corrupt and corrupt_is_none:
        log.warning("every checkpoint in %s is corrupt; starting from scratch", directory)
    elif corrupt:
        raise CheckpointError(
            f"every checkpoint in {directory} is corrupt: {', '.join(corrupt)}; "
            "delete them to restart the segment from scratch"
        )
    return None
