"""The dry-run work item: a deterministic pseudo-accuracy instead of training.

This module owns how a "dryrun" `WorkItem` runs on a worker: an optional resumable sleep that
checks the stop event (its progress file is its "per-epoch checkpoint"), injected failures
(crash, hang, diverge) for rehearsals and fault tests, and a result file with the keys of a
training segment's result, scored by `space.pseudo.dry_result`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from econas_hpc.cluster.workitem import WorkItem, write_worker_json

TICK_S = 0.1  # how often a sleeping dry-run item looks at the stop event
PROGRESS_EVERY_S = 1.0  # a dry-run item's "per-epoch checkpoint": its progress file


def progress_path(item: WorkItem) -> Path:
    return Path(item.result_path + ".progress")


def dryrun_result(item: WorkItem, diverge: bool, wall_s: float, resumes: int) -> dict[str, Any]:
    """A SegmentResult-shaped dict (same keys) for a dry-run item: the driver's dry-run score."""
    from econas_hpc.space.pseudo import dry_result  # pure; only dry-run workers need it

    spec = item.spec
    start, end = int(spec["epoch_start"]), int(spec["epoch_end"])
    status, score = "diverged", 0.0
    if not diverge:
        segments = int(spec.get("segments", 3))
        status, score = dry_result(
            spec["genotype_json"], int(spec["segment"]), int(spec["seed"]), segments
        )
    epochs = max(1, end - start)
    return {
        "arch_id": spec["arch_id"],
        "epoch_start": start,
        "epoch_end": end,
        "status": status,
        "score": score,
        "train_loss": [round(2.3 * (1 - score / 100), 4)] * epochs,
        "sel_acc": [score] * epochs,
        "test_acc": [score] * epochs,
        "selection": "val",
        "profile": "dryrun",
        "cell_output": "clean",
        "setting": str(spec.get("setting", "")),
        "wall_s": round(wall_s, 3),
        "device": "none",
        "resumes": resumes,
        "params": 0,
        "detail": "dry run: injected divergence" if diverge else f"dry run: {status}",
        "checkpoint": "",
        "checkpoint_sha256": "",
    }


def run_dryrun(item: WorkItem, stop: threading.Event) -> str:
    """Sleep `sleep_s` (resumable, stop-checked), then fail as asked or write the result."""
    spec, progress = item.spec, progress_path(item)
    fail = spec.get("fail") or ""
    done_s, resumes = 0.0, 0
    if progress.exists():
        saved = json.loads(progress.read_text(encoding="utf-8"))
        done_s, resumes = float(saved["slept_s"]), int(saved["resumes"]) + 1
    if fail == "hang":
        while True:  # deliberately deaf to `stop`: a hung worker that only the scheduler ends
            time.sleep(1.0)
    target, last_save = float(spec.get("sleep_s") or 0.0), time.monotonic()
    while done_s < target:
        if stop.is_set():
            write_worker_json(progress, {"slept_s": done_s, "resumes": resumes})
            return "interrupted"
        tick = min(TICK_S, target - done_s)
        time.sleep(tick)
        done_s += tick
        if time.monotonic() - last_save >= PROGRESS_EVERY_S:
            write_worker_json(progress, {"slept_s": done_s, "resumes": resumes})
            last_save = time.monotonic()
    if fail == "crash":
        raise RuntimeError(f"dry-run item {item.name}: injected crash")
    result = dryrun_result(item, fail == "diverge", done_s, resumes)
    item.write_result(result)
    progress.unlink(missing_ok=True)
    return str(result["status"])
