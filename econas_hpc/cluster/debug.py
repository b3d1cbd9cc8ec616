"""The debug executor: every job runs synchronously, in this process, inside `submit()`.

This module owns `DebugExecutor` (submitit's DebugExecutor semantics, but the results are on
disk as soon as `submit()` returns, and job ids `debug-<n>` with their final states survive a
restart in `<folder>/debug-jobs.json`). No subprocess, no scheduler, no submitit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from econas_hpc.cluster.events import ECONAS_JOB_ID
from econas_hpc.cluster.options import ClusterOptions, JobState
from econas_hpc.cluster.registry import JobRegistry, pack_items
from econas_hpc.cluster.tasks import SegmentTask
from econas_hpc.cluster.workitem import WorkItem

__all__ = ["DebugExecutor"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _job_id(job_id: str) -> Iterator[None]:
    old = os.environ.get(ECONAS_JOB_ID)
    os.environ[ECONAS_JOB_ID] = job_id
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ECONAS_JOB_ID, None)
        else:
            os.environ[ECONAS_JOB_ID] = old


class DebugExecutor:
    """Runs each job synchronously inside `submit()`; results are on disk when it returns."""

    kind = "debug"

    def __init__(self, folder: Path, options: ClusterOptions) -> None:
        self.options = options
        self.registry = JobRegistry(folder, "debug")

    def submit(self, items: Sequence[WorkItem], label: str = "") -> list[str]:
        """Run every item now (K per job); a crashed item makes its job "failed"."""
        ids: list[str] = []
        for chunk in pack_items(items, self.options.segments_per_job):
            record = self.registry.add(chunk)
            try:
                with _job_id(record.job_id):  # the worker's events name the job, as elsewhere
                    SegmentTask()(chunk)
                record.state = "done"
            except Exception as exc:  # a crashed item is a failed job, as on a cluster
                log.warning("debug job %s failed: %s", record.job_id, exc)
                record.state = "failed"
            ids += [record.job_id] * len(chunk)
        self.registry.save()  # once per submission: the table is rewritten whole
        return ids

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return self.registry.states(job_ids)

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Nothing to do: debug jobs end inside `submit()`."""

    def find(self, name_prefix: str) -> dict[str, str]:
        return self.registry.names(name_prefix)
