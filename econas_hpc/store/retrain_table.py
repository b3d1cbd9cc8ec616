"""The `/retrain` table of a run's HDF5 state file: one row per retrained (network, seed).

This module owns the table's columns, `RetrainRecord`, and its atomic write and read. The write
reuses `store.snapshot`'s machinery: the file is rebuilt in memory (every other group and attribute
copied unchanged), checksummed afresh, written atomically with the current file kept as
`<path>.prev`, so readers never see a torn file and a full disk changes nothing. `StateStore.save`
rewrites the file from its `RunState` and does not know this group: `retrain` rebuilds the table
from the result files whenever it runs, so a later driver save loses nothing that cannot be
recovered. Callers hold the driver lock (store/lock.py) around `write_retrain_table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py

from econas_hpc.errors import StateError
from econas_hpc.store.snapshot import (
    UNUSABLE,
    SnapshotFiles,
    build_image,
    open_snapshot,
    put,
    read_table,
)

__all__ = [
    "RETRAIN_COLUMNS",
    "RETRAIN_GROUP",
    "RetrainRecord",
    "read_retrain_table",
    "write_retrain_table",
]

RETRAIN_GROUP = "retrain"
RETRAIN_DOC = (
    "final retraining of the search's top networks (spec 6.1, supplement E.2): one row per "
    "(arch_id, seed), in ranking order; written by `econas-hpc retrain`"
)
RETRAIN_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("arch_id", "str", "network id (see /networks/arch_id)"),
    ("seed", "i32", "training seed (model init, data order, augmentation)"),
    ("rank", "i32", "1-based position in the search's final ranking"),
    ("proxy_score", "f64", "the search score it was ranked by (last segment accuracy, %)"),
    ("setting", "str", "training setting, e.g. c0r0s0e600"),
    ("status", "str", "pending | running | ok | diverged | unbuildable | failed"),
    ("test_error", "f64", "final-epoch test error (%) = 100 - test_acc; NaN until finished"),
    ("test_acc", "f64", "final-epoch test accuracy (%); NaN until finished"),
    ("params", "i64", "parameters without the auxiliary head; 0 until known"),
    ("epochs", "i32", "epochs of the schedule (the setting's e)"),
    ("epochs_done", "i32", "epochs trained so far"),
    ("gpu_hours", "f64", "GPU-hours over every attempt (one GPU per job)"),
    ("preemptions", "i32", "stop signals received (preemptions and time limits)"),
    ("resumes", "i32", "restarts from a checkpoint of this training"),
    ("job_id", "str", "scheduler job id of the latest submission; empty before"),
    ("run_dir", "str", "directory of its checkpoints, events and result"),
)


@dataclass(frozen=True, slots=True)
class RetrainRecord:
    """One row of `/retrain` (the column descriptions above say what each field means)."""

    arch_id: str
    seed: int
    rank: int
    proxy_score: float
    setting: str
    status: str = "pending"
    test_error: float = math.nan
    test_acc: float = math.nan
    params: int = 0
    epochs: int = 0
    epochs_done: int = 0
    gpu_hours: float = 0.0
    preemptions: int = 0
    resumes: int = 0
    job_id: str = ""
    run_dir: str = ""


def _write_group(handle: h5py.File, records: Sequence[RetrainRecord]) -> None:
    group = handle.create_group(RETRAIN_GROUP)
    group.attrs["description"] = RETRAIN_DOC
    for name, kind, doc in RETRAIN_COLUMNS:
        put(group, name, kind, [getattr(r, name) for r in records], doc)


def write_retrain_table(state_path: str | Path, records: Sequence[RetrainRecord]) -> None:
    """Replace `/retrain` in the state file with `records`, atomically (`.prev` kept).

    Raises:
        StateError: the state file is missing, cannot be opened or fails its checksum.
        NoSpaceError, PermissionFault, FileSystemFault: the write failed; nothing changed.
    """
    files = SnapshotFiles(state_path)
    if not files.path.exists():
        raise StateError(f"state file {files.path} does not exist")

    def fill(dst: h5py.File) -> None:
        with open_snapshot(files.path) as (src, _):
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for name in src:
                if name != RETRAIN_GROUP:
                    src.copy(src[name], dst, name=name)
        _write_group(dst, records)

    try:
        image = build_image(fill)
    except UNUSABLE as exc:
        raise StateError(f"cannot rewrite state file {files.path}: {exc}") from None
    files.write(image, keep_previous=True)


def read_retrain_table(state_path: str | Path) -> list[RetrainRecord]:
    """The `/retrain` rows (empty when the run was never retrained); `.prev` if main is torn.

    Raises:
        StateError: neither the file nor its `.prev` can be read.
    """
    files = SnapshotFiles(state_path)
    problems = []
    for path in (files.path, files.prev_path):
        if not path.exists():
            continue
        try:
            with open_snapshot(path) as (handle, _):
                if RETRAIN_GROUP not in handle:
                    return []
                return _records(handle[RETRAIN_GROUP])
        except UNUSABLE as exc:
            problems.append(f"{path}: {exc}")
    raise StateError(f"cannot read /retrain of {files.path}: {'; '.join(problems) or 'missing'}")


def _records(group: h5py.Group) -> list[RetrainRecord]:
    return [RetrainRecord(**row) for row in read_table(group, RETRAIN_COLUMNS)]
