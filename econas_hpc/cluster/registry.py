"""The on-disk job table of the executors that have no scheduler (debug, local).

This module owns `JobRegistry`: `<folder>/<kind>-jobs.json`, written atomically after every
change, so that a restarted driver finds every job it submitted: its items, its state, and for a
local job the pid of its submitit controller and the GPU it was given. Queued local jobs are
stored too and started by the next executor instance. It knows nothing about submitit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from econas_hpc.cluster.options import FINAL_STATES, JobState
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.fsio import make_private_dir, write_json_atomic

__all__ = ["RegisteredJob", "JobRegistry", "pack_items"]


def pack_items(items: Sequence[WorkItem], per_job: int) -> list[list[WorkItem]]:
    """Consecutive groups of `per_job` items: one group per job (K = 1: one item per job)."""
    return [list(items[i : i + per_job]) for i in range(0, len(items), per_job)]


@dataclass(slots=True)
class RegisteredJob:
    """One job of a registry: its items and what is known about it (the search's own job
    bookkeeping is `records.JobRecord`)."""

    job_id: str
    items: list[WorkItem]
    state: str = "pending"
    pid: int | None = None
    gpu: int | None = None
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [i.name for i in self.items]

    def to_dict(self) -> dict[str, Any]:
        # A concluded job only needs its item names (for `find`); dropping the specs keeps the
        # table small, so rewriting it after every change stays cheap over a 2,797-job search.
        items = [] if self.state in FINAL_STATES else [i.to_dict() for i in self.items]
        return {
            "items": items,
            "names": self.names,
            "state": self.state,
            "pid": self.pid,
            "gpu": self.gpu,
        }


class JobRegistry:
    """Jobs by id (`<prefix>-<n>`, n increasing, never reused), persisted as JSON."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.path = Path(folder) / f"{prefix}-jobs.json"
        self.prefix = prefix
        self.next = 0
        self.jobs: dict[str, RegisteredJob] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.next = int(data["next"])
            for job_id, rec in data["jobs"].items():
                items = [WorkItem.from_dict(i) for i in rec["items"]]
                self.jobs[job_id] = RegisteredJob(
                    job_id, items, rec["state"], rec["pid"], rec["gpu"], rec.get("names", [])
                )

    def add(self, items: list[WorkItem]) -> RegisteredJob:
        record = RegisteredJob(f"{self.prefix}-{self.next}", items)
        self.next += 1
        self.jobs[record.job_id] = record
        return record

    def with_state(self, *states: str) -> Iterator[RegisteredJob]:
        """Records in `states`, in submission order."""
        return (r for r in self.jobs.values() if r.state in states)

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """The recorded state of each id; "unknown" for ids this registry never issued."""
        return {j: self.jobs[j].state if j in self.jobs else "unknown" for j in job_ids}  # type: ignore[misc]

    def names(self, prefix: str) -> dict[str, str]:
        """item name -> job id for names starting with `prefix` (the newest job wins)."""
        out: dict[str, str] = {}
        for record in self.jobs.values():  # insertion order = submission order
            for name in record.names:
                if name.startswith(prefix):
                    out[name] = record.job_id
        return out

    def save(self) -> None:
        make_private_dir(self.path.parent, "executor folder")
        data = {"next": self.next, "jobs": {k: r.to_dict() for k, r in self.jobs.items()}}
        write_json_atomic(self.path, data, sort_keys=False)  # insertion order = submissions
