"""`Supervisor`: submits, adopts, polls and judges the jobs of one job loop.

Every loop that runs work items through an executor (the search's cycles, the final
retraining, the zoo) keeps its own records and results and asks a `Supervisor` for the job
mechanics, so that they follow one set of rules:

- submission tokens: before a `submit`, the item names go to a token file; a driver killed
  between `submit` and saving the ids leaves the token, and the next one `adopt`s those jobs
  (found by name) instead of submitting them twice. The user removes it (`submitted`) once the
  ids are saved;
- adoption: `adopt(names, recorded)` maps item names to the ids of jobs the executor knows
  under those names, when they differ from the recorded ids (one `find` call);
- polling: `poll(jobs)` is one batched executor query; a job is dead when its state is final
  or when it is unknown past the one grace rule (`policy.unknown_is_gone`); a job running
  longer than `job_timeout_s` (executors without a scheduler) is cancelled;
- judging: `judge(job, final_state)` applies `policy.decide` (charged or not, retry, fail or
  wait), with `policy.probe_environment` for a job that left no cause of its own.

It never writes a user's records, never reads a result and never sleeps.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from econas_hpc.cluster.accounting import JobLimits
from econas_hpc.cluster.executors import Executor
from econas_hpc.cluster.options import FINAL_STATES, JobState
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.fsio import make_private_dir, write_json_atomic
from econas_hpc.supervise.policy import Decision, decide, probe_environment, unknown_is_gone

__all__ = ["Polled", "Supervisor", "Tracked"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Tracked:
    """A job a loop follows: its item's name, job id, submission time (`time.time()`; NaN when
    unknown, e.g. adopted) and the item's run folder (where its worker's events are)."""

    name: str
    job_id: str
    submitted_at: float
    run_dir: Path


@dataclass(slots=True)
class Polled:
    """One poll: every job's state, those seen running, those dead (with their final state)
    and those cancelled for running past the time limit (found dead by a later poll)."""

    states: dict[str, JobState] = field(default_factory=dict)
    running: list[Tracked] = field(default_factory=list)
    dead: list[tuple[Tracked, str]] = field(default_factory=list)
    overdue: list[Tracked] = field(default_factory=list)


@dataclass(slots=True)
class Supervisor:
    """The job mechanics of one loop over `executor` (see the module docstring).

    `token`: the loop's submission token file (None: no token; the loop adopts by name).
    `probe_root` / `data_dir`: where `policy.probe_environment` looks.
    """

    executor: Executor
    name_prefix: str
    max_attempts: int
    limits: JobLimits = JobLimits()
    job_timeout_s: float = 0.0
    token: Path | None = None
    probe_root: Path | None = None
    data_dir: str | None = None
    running_since: dict[str, float] = field(default_factory=dict)  # job id -> first seen running
    clock: Callable[[], float] = time.monotonic  # for the time limit (tests inject their own)

    @property
    def kind(self) -> str:
        return self.executor.kind

    # --- submission and adoption --------------------------------------------------------------

    def submit(
        self, items: Sequence[WorkItem], label: str, note: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Write the token (item names, `label`, `note`), then submit `items` in one call."""
        if self.token is not None:
            payload = {**(note or {}), "label": label, "names": [i.name for i in items]}
            make_private_dir(self.token.parent)
            write_json_atomic(self.token, payload, indent=None)
        return self.executor.submit(items, label=label)

    def submitted(self) -> None:
        """The ids of the latest submission are saved: the token is no longer needed."""
        if self.token is not None:
            self.token.unlink(missing_ok=True)

    def token_names(self) -> list[str]:
        """The item names of a submission whose ids may not have been saved ([] for none)."""
        if self.token is None:
            return []
        try:
            data = json.loads(self.token.read_text(encoding="utf-8"))
            if "names" in data:
                return [str(n) for n in data["names"]]
            return [str(item[2]) for item in data.get("items", [])]  # tokens before "names"
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, IndexError, KeyError):
            log.warning("submission token %s is unreadable; relying on job states", self.token)
            return []

    def adopt(
        self, names: Iterable[str], recorded: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """name -> job id for each of `names` the executor knows under a job id other than the
        recorded one (one `find` call; nothing when `names` is empty)."""
        wanted = set(names)
        if not wanted:
            return {}
        recorded = recorded or {}
        found = self.executor.find(self.name_prefix)
        return {n: j for n, j in found.items() if n in wanted and j and j != recorded.get(n, "")}

    def states(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        """One batched query of `job_ids` (an id the executor does not know: "unknown")."""
        ids = sorted(set(job_ids))
        return dict(self.executor.poll(ids)) if ids else {}

    # --- polling ------------------------------------------------------------------------------

    def poll(self, jobs: Sequence[Tracked]) -> Polled:
        """One batched poll of `jobs`: who runs, who is dead, who ran too long (cancelled)."""
        polled = Polled(self.states(j.job_id for j in jobs))
        now, wall = self.clock(), time.time()
        for job in jobs:
            verdict = polled.states.get(job.job_id, "unknown")
            if verdict == "running":
                since = self.running_since.setdefault(job.job_id, now)
                polled.running.append(job)
                if self.job_timeout_s and now - since > self.job_timeout_s:
                    polled.overdue.append(job)
            age = wall - job.submitted_at if math.isfinite(job.submitted_at) else math.inf
            if verdict in FINAL_STATES or (
                verdict == "unknown" and unknown_is_gone(self.kind, age)
            ):
                polled.dead.append((job, verdict))
        self.cancel([j.job_id for j in polled.overdue])
        return polled

    def cancel(self, job_ids: Iterable[str]) -> None:
        ids = sorted(set(job_ids))
        if ids:
            self.executor.cancel(ids)
        for job_id in ids:
            self.running_since.pop(job_id, None)

    # --- judging ------------------------------------------------------------------------------

    def probe(self) -> str:
        """`policy.probe_environment` where this loop keeps its files ("" without a root)."""
        return probe_environment(self.probe_root, self.data_dir) if self.probe_root else ""

    def judge(self, job: Tracked, final_state: str, probe: str | None = None) -> Decision:
        """Record how `job` ended without a result and decide what becomes of its work
        (`policy.decide`); `probe` defaults to `self.probe()`."""
        self.running_since.pop(job.job_id, None)
        probe = self.probe() if probe is None else probe
        return decide(
            job.run_dir,
            job.name,
            job.job_id,
            final_state,
            self.max_attempts,
            self.limits,
            probe,
        )
