"""The rules every job loop follows: when a job is gone, what its end costs, what happens next.

This module owns the one unknown-job rule (`unknown_is_gone`), the driver's own look at the
environment (`probe_environment`: a full disk, an unwritable run folder, an unreadable data
folder) and the retry and charging policy (`decide`): how a job that ended without a result
ended (`cluster.accounting`, from its worker's events and the scheduler's final state), and
whether it is submitted again, its work fails for good, or the run waits for a person to fix a
fault outside the network. It keeps no state and never talks to an executor.

The policy (README "Faults"):
- the network's own failures (a crash in its training, a cancellation from outside, a final
  time-out) are charged; at `max_attempts` charged ends the work fails ("fail");
- preemptions, node failures, lost files and interruptions are never charged and are
  submitted again ("retry"): training resumes from checkpoints or recomputes what was lost;
- the data, the disk, permissions, I/O errors and unusable checkpoints are never charged and
  stop the run ("wait"): resubmitting cannot help until a person acts.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from econas_hpc.cluster.accounting import Counters, JobLimits, Outcome, decide_retry

__all__ = [
    "LOW_SPACE_BYTES",
    "UNKNOWN_GRACE_S",
    "Action",
    "Decision",
    "decide",
    "probe_environment",
    "unknown_is_gone",
]

# sacct may not list a job for a while after sbatch returned (more on a busy site); executors
# without a scheduler know every job they started, so there an unknown job is gone at once.
UNKNOWN_GRACE_S: dict[str, float] = {"slurm": 600.0}
LOW_SPACE_BYTES = 1 << 20  # less free space than this beside the run's files: the disk is full

Action = Literal["retry", "fail", "wait"]


def unknown_is_gone(executor_kind: str, age_s: float) -> bool:
    """The one rule for a job the scheduler does not know: gone once `age_s` (seconds since its
    submission; infinite when not known, e.g. a job adopted from an earlier driver) passes the
    executor's grace time."""
    return age_s > UNKNOWN_GRACE_S.get(executor_kind, 0.0)


def probe_environment(root: Path, data_dir: str | Path | None = None) -> str:
    """An environment cause (`errors.CAUSES`) the supervisor sees for itself, "" for none.

    Blamed for a job that ended without a result and without a cause of its own (its worker
    could not even write its events): a nearly full disk under `root`, a `root` it cannot write,
    a `data_dir` it cannot read.
    """
    try:
        if shutil.disk_usage(root).free < LOW_SPACE_BYTES:
            return "no_space"
    except OSError:
        return "lost_files"
    if root.exists() and not os.access(root, os.W_OK | os.X_OK):
        return "permission"
    if data_dir is not None:
        data = Path(data_dir)
        if data.exists() and not os.access(data, os.R_OK | os.X_OK):
            return "data"
    return ""


@dataclass(frozen=True, slots=True)
class Decision:
    """What becomes of a job that ended without a result."""

    outcome: Outcome  # how it ended (kind, charged, reason, cause)
    counters: Counters  # its work's counters over all its jobs, this end included
    action: Action

    def describe(self, max_attempts: int) -> str:
        """ "charged 2 of 3" or "not charged", and what happens next."""
        charge = (
            f"charged {self.counters.charged} of {max_attempts}"
            if self.outcome.charged
            else "not charged"
        )
        then = {
            "retry": "submitting again",
            "wait": "waiting for the fault to be fixed",
            "fail": f"{self.counters.charged} charged end(s) reached max_attempts",
        }
        return f"{charge}; {then[self.action]}"


def decide(
    run_dir: Path,
    item: str,
    job_id: str,
    final_state: str,
    max_attempts: int,
    limits: JobLimits,
    probe: str = "",
) -> Decision:
    """Record the end of job `job_id` of work item `item` (events in `run_dir`, idempotent) and
    decide: "wait" for the causes a person must fix, "retry" while charged ends are fewer than
    `max_attempts` (and always for uncharged ends), else "fail"."""
    outcome, counters, below_limit = decide_retry(
        run_dir, item, job_id, final_state, max_attempts, limits, probe
    )
    action: Action = "retry"
    if outcome.stops:
        action = "wait"
    elif outcome.charged and not below_limit:
        action = "fail"
    return Decision(outcome, counters, action)
