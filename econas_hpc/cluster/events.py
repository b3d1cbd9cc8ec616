"""The worker event log `<run_dir>/events.jsonl`: who ran what, when, and how it ended.

This module owns the event file's name and format: one JSON line per event (start, finish,
skip, signal) with the scheduler's job id, restart count, host and pid, appended in one write
and fsynced, and read back skipping a torn last line.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from econas_hpc.fsio import append_text, make_private_dir

EVENTS_FILE = "events.jsonl"
ECONAS_JOB_ID = "ECONAS_JOB_ID"  # set by executors without a scheduler (local-<n>)


def job_context() -> dict[str, Any]:
    """Who is running: the scheduler's job id and restart count, host and pid."""
    job_id = os.environ.get(ECONAS_JOB_ID) or os.environ.get("SLURM_JOB_ID") or ""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job_id = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"  # the id the driver submitted
    return {
        "job_id": job_id,
        "restart": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def append_event(run_dir: Path, event: str, item: str, **fields: Any) -> None:
    """Append one JSON line to `<run_dir>/events.jsonl` (one write: whole lines on local disks)."""
    record = {"t": round(time.time(), 3), "event": event, "item": item, **job_context(), **fields}
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    make_private_dir(run_dir, "network folder")
    append_text(run_dir / EVENTS_FILE, line)  # O_NOFOLLOW: never through a planted link


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete event of `run_dir`; a torn last line (a killed writer) is skipped."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    return events
