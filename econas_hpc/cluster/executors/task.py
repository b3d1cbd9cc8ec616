"""`CheckpointableTask`: the `SegmentTask` every executor submits, with submitit's requeue protocol.

This module owns what a job does when Slurm (or a local controller) signals it before its time
limit: stop the items at a step boundary and hand submitit the same task to requeue, or end the
job when a hung item does not stop. A running Slurm array task also renames itself to its
items' name here, so `squeue` shows run, network and segment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Sequence
from typing import Any

import submitit

from econas_hpc.cluster.naming import job_name
from econas_hpc.cluster.tasks import SegmentTask
from econas_hpc.cluster.workitem import WorkItem

log = logging.getLogger(__name__)

RENAME_TIMEOUT_S = 10.0


class CheckpointableTask(SegmentTask, submitit.helpers.Checkpointable):
    """`SegmentTask` + submitit's requeue protocol (USR2 -> checkpoint() -> requeue)."""

    def __call__(self, items: Sequence[WorkItem]) -> list[str]:
        _rename_array_task(items)
        return SegmentTask.__call__(self, items)

    def checkpoint(  # type: ignore[override]  # None = "do not requeue", which submitit handles
        self, *args: Any, **kwargs: Any
    ) -> submitit.helpers.DelayedSubmission | None:
        """Stop the items at a step boundary and resubmit this task with the same items.

        A worker that does not stop within `stop_timeout_s` (a hung item) is not requeued:
        returning None makes submitit end the job, so the driver sees a failure, not a loop.
        """
        if not self.stop(reason="signal"):
            return None
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _rename_array_task(items: Sequence[WorkItem]) -> None:
    """Give a running Slurm array task its items' name (an array shares one name until then)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if not array or not task or not items:
        return
    # `<array>_<task>`, not SLURM_JOB_ID: the last task to start shares the array's own id,
    # and updating that id renames every task of the array.
    job_id = f"{array}_{task}"
    name = job_name(items)
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        proc = subprocess.run(
            ["scontrol", "update", f"JobId={job_id}", f"JobName={name}"],
            capture_output=True,
            text=True,
            timeout=RENAME_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            log.warning("could not rename job %s to %s: %s", job_id, name, proc.stderr.strip())
