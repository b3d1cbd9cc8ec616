"""Trains a zoo's missing (network, setting) units through the executors, resumably.

This module owns `train_zoo` (`econas-hpc zoo train`): take the zoo's driver lock, record the
requested settings and training options, compute the new units' costs, then run every missing
unit as one `WorkItem` through `cluster.executors` (debug, local or slurm) and ingest each
result into the zoo file exactly once (a unit with a record is never planned again).

Resumable by construction: the zoo file and the per-unit result files are the truth, the runner
keeps nothing else. On start it ingests results that landed while no runner was watching, adopts
jobs that are still alive (`Executor.find` by the unit's job name, then one `poll`), and submits
only the rest; a unit interrupted mid-training resumes from its checkpoint (the segment trainer's
job). Jobs are supervised as the search's are (`supervise.Supervisor`): a job that ends without
a result is resubmitted until `max_attempts` charged ends, then recorded as "failed" (a later
`zoo train` retries it); faults outside the network are never charged, and one a person must
fix stops the runner (exit 3). It never imports torch (workers do) or h5py
(`store.zoo_state` does).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from econas_hpc.cluster.accounting import JobLimits
from econas_hpc.cluster.executors import Executor, make_executor
from econas_hpc.cluster.options import ALIVE_STATES, load_cluster_options
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import ConfigError, EnvironmentFault, StateError
from econas_hpc.fsio import make_private_dir
from econas_hpc.search.runfile import ExecOptions
from econas_hpc.settings import CIFAR_BASE
from econas_hpc.store.lock import DriverLock, acquire_lock
from econas_hpc.store.zoo_state import ZooState, ZooStore
from econas_hpc.study.zoo import Unit, ZooPaths, check_rules
from econas_hpc.study.zoo_plan import (
    ZooTrainOptions,
    add_settings,
    compute_costs,
    failed_record,
    plan_units,
    requested_settings,
    resolve_train_options,
    result_record,
    unit_spec,
)
from econas_hpc.supervise import Supervisor, Tracked
from econas_hpc.supervise.loop import drive
from econas_hpc.train import SegmentSpec, read_result, result_path

log = logging.getLogger(__name__)

SYNTHETIC_SEED = 0  # train.segment's: the synthetic dataset is one fixed dataset


@dataclass(frozen=True, slots=True)
class ZooTrainRequest:
    """Everything `zoo train` was asked: the zoo, the settings (list or grid), the reference,
    training options (None = the zoo's recorded value or the default), how units execute
    (`ExecOptions`, as for a search) and how often a unit whose job died is submitted."""

    zoo_path: str | Path
    settings: str | None = None
    grid: str | None = None
    reference: str | None = None
    train: Mapping[str, Any] = field(default_factory=dict)
    execution: ExecOptions = field(default_factory=ExecOptions)
    max_attempts: int = 2

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or (self.max_attempts < 1)
        ):
            raise ConfigError(f"max_attempts={self.max_attempts!r} must be an integer >= 1")


@dataclass(slots=True)
class TrainSummary:
    """What one `zoo train` did (counts of units), JSON-ready through `to_dict`."""

    zoo: str
    settings: list[str]
    settings_added: list[str]
    units_total: int
    planned: int = 0
    ingested: int = 0
    adopted: int = 0
    submitted: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def execution_options(config: str | Path | None, overrides: Mapping[str, Any]) -> ExecOptions:
    """How units execute: the `[slurm]` table of the site file `config` (if any), then
    `overrides` (execution fields or cluster option names; None ignored).

    Raises:
        ConfigError: an unreadable site file, an unknown option or a bad value.
    """
    cluster = load_cluster_options(Path(config) if config else None, {})
    return ExecOptions(cluster=cluster).updated(overrides)


def train_zoo(request: ZooTrainRequest) -> TrainSummary:
    """Add the requested settings to the zoo and train every missing unit (see module doc).

    Raises:
        ConfigError: bad settings or grid, or options that contradict the zoo's.
        StateError: no zoo file, or another runner drives it.
        SubmissionError: the executor refused a submission.
    """
    # Parse first: a bad --settings/--grid fails before anything is touched (layers do not
    # change which settings are valid, so the plain CIFAR base is enough here).
    names = requested_settings(request.settings, request.grid, CIFAR_BASE)
    paths = ZooPaths.of(request.zoo_path)
    store = ZooStore(paths.zoo)
    if not store.exists():
        raise StateError(f"zoo file {paths.zoo} does not exist; create it with `zoo create`")
    make_private_dir(paths.units.parent, "zoo folder")  # another user's or a writable one: refused
    with acquire_lock(paths.zoo) as lock:
        zoo = store.load()
        check_rules(zoo, paths.zoo)
        options = resolve_train_options(zoo, request.train)
        added = add_settings(zoo, names, request.reference, options)
        costs = compute_costs(zoo, options)
        log.info(
            "zoo %s: %d settings; sized %d new (network, setting) pairs",
            paths.zoo,
            len(zoo.settings),
            costs,
        )
        store.save(zoo)
        units = plan_units(zoo)
        summary = TrainSummary(
            str(paths.zoo),
            list(zoo.settings),
            added,
            len(zoo.networks) * len(zoo.settings),
            planned=len(units),
            options=asdict(options),
        )
        if units:
            _prepare_data(options)
            ctx = _Context(options, paths, request.execution, request.max_attempts, lock)
            _Runner(zoo, store, ctx, summary).run(units)
        summary.statuses = dict(Counter(r.status for r in zoo.results.values()))
        return summary


def _prepare_data(options: ZooTrainOptions) -> None:
    """Write the synthetic dataset once, before concurrent jobs would race to write it."""
    if options.dataset != "synthetic":
        return
    from econas_hpc.data.cifar import synthetic_dir
    from econas_hpc.data.synthetic import write_synthetic_cifar

    n_train, n_test = options.synthetic_train, options.synthetic_test
    root = synthetic_dir(Path(options.data_dir), n_train, n_test, SYNTHETIC_SEED)
    write_synthetic_cifar(root, n_train=n_train, n_test=n_test, seed=SYNTHETIC_SEED)


@dataclass(frozen=True, slots=True)
class _Context:
    options: ZooTrainOptions
    paths: ZooPaths
    execution: ExecOptions
    max_attempts: int
    lock: DriverLock


class _Runner:
    """The zoo's units as a `supervise.loop.JobLoop`: submit, ingest, poll (one batched call),
    resubmit dead jobs, save. The job mechanics and the retry policy are the supervisor's (the
    same as the search's)."""

    def __init__(self, zoo: ZooState, store: ZooStore, ctx: _Context, summary: TrainSummary):
        self.zoo, self.store, self.ctx, self.summary = zoo, store, ctx, summary
        execution = ctx.execution
        executor: Executor = make_executor(
            execution.executor, ctx.paths.executor, execution.cluster
        )
        self.jobs = Supervisor(
            executor,
            ctx.paths.name_prefix,
            ctx.max_attempts,
            JobLimits.from_options(execution.cluster, executor.kind),
            probe_root=ctx.paths.executor.parent,
            data_dir=ctx.options.data_dir,
        )
        self.specs: dict[Unit, SegmentSpec] = {}
        self.inflight: dict[Unit, Tracked] = {}
        self.queue: list[Unit] = []
        self.batch = 1

    def run(self, units: list[Unit]) -> None:
        self.specs = {
            u: unit_spec(self.zoo, u, self.ctx.options, self.ctx.paths, self.ctx.execution.device)
            for u in units
        }
        waiting = [u for u in units if not self._ingest(u)]
        if len(waiting) < len(units):
            self.store.save(self.zoo)
        self._adopt(waiting)
        self.queue = [u for u in waiting if u not in self.inflight]
        # The debug executor trains inside submit(): one unit per call keeps the file current.
        self.batch = 1 if self.jobs.kind == "debug" else max(1, len(self.queue))
        drive(self, self.ctx.lock, self.ctx.execution.poll_s)

    # --- `supervise.loop.JobLoop` -------------------------------------------------------------

    def submit(self) -> None:
        if self.queue:
            self._submit(self.queue[: self.batch])
            del self.queue[: self.batch]

    def ingest(self) -> int:
        done = [u for u in self.inflight if self._ingest(u)]
        for unit in done:
            del self.inflight[unit]
        return len(done)

    def finished(self) -> bool:
        return not self.queue and not self.inflight

    def poll(self) -> int:
        """One batched poll; dead jobs' units are ingested (a result may have just landed),
        retried, recorded as failed, or the runner stops (a fault a person must fix)."""
        polled = self.jobs.poll(list(self.inflight.values()))
        changed = 0
        for tracked, verdict in polled.dead:
            unit = next(u for u, t in self.inflight.items() if t.name == tracked.name)
            del self.inflight[unit]
            if self._ingest(unit):
                changed += 1
            else:
                changed += self._give_up_or_retry(unit, tracked, verdict)
        return changed

    def save(self, changed: int) -> None:
        if changed:
            self.store.save(self.zoo)

    def _ingest(self, unit: Unit) -> bool:
        """Ingest the unit's final result if its file exists; True when it did."""
        result = read_result(self.specs[unit])
        if result is None or result.status == "interrupted":
            return False
        record = result_record(unit, result)
        self.zoo.results[unit.key] = record
        self.summary.ingested += 1
        log.info(
            "%s %s: %s, test accuracy %.2f %%, %.1f s on %s",
            unit.arch_id,
            unit.setting,
            record.status,
            record.test_acc,
            record.wall_s,
            record.device,
        )
        return True

    def _tracked(self, unit: Unit, job_id: str, submitted_at: float) -> Tracked:
        run_dir = Path(self.specs[unit].run_dir)
        return Tracked(self.ctx.paths.job_name(unit), job_id, submitted_at, run_dir)

    def _adopt(self, units: list[Unit]) -> None:
        """Follow the jobs of an earlier runner that still run these units."""
        names = {self.ctx.paths.job_name(u): u for u in units}
        found = self.jobs.adopt(names)
        states = self.jobs.states(found.values())
        for name, job_id in found.items():
            if states.get(job_id) in ALIVE_STATES:
                self.inflight[names[name]] = self._tracked(names[name], job_id, math.nan)
        self.summary.adopted = len(self.inflight)
        if self.inflight:
            log.info("adopted %d running unit(s) of an earlier runner", len(self.inflight))

    def _item(self, unit: Unit) -> WorkItem:
        spec = self.specs[unit]
        name = self.ctx.paths.job_name(unit)
        return WorkItem(name, "train", spec.to_dict(), str(result_path(spec)))

    def _submit(self, units: list[Unit]) -> None:
        job_ids = self.jobs.submit([self._item(u) for u in units], label="units")
        now = time.time()
        for unit, job_id in zip(units, job_ids, strict=True):
            self.inflight[unit] = self._tracked(unit, job_id, now)
        self.summary.submitted += len(units)
        log.info("submitted %d unit(s) to the %s executor", len(units), self.jobs.kind)

    def _give_up_or_retry(self, unit: Unit, tracked: Tracked, verdict: str) -> bool:
        decision = self.jobs.judge(tracked, verdict)
        why = f"job {tracked.job_id} ended {verdict} without a result ({decision.outcome.reason})"
        what = decision.describe(self.ctx.max_attempts)
        if decision.action == "wait":
            self.jobs.cancel(t.job_id for t in self.inflight.values())
            raise EnvironmentFault(
                f"zoo training stopped: {unit.arch_id} {unit.setting}: {why}; nothing was "
                f"charged; fix it, then run `econas-hpc zoo train {self.ctx.paths.zoo}` again"
            )
        if decision.action == "retry":
            log.warning("%s %s: %s; %s", unit.arch_id, unit.setting, why, what)
            self.queue.append(unit)
            return False
        log.warning("%s %s: %s; %s; recorded as failed", unit.arch_id, unit.setting, why, what)
        self.zoo.results[unit.key] = failed_record(unit, why)
        self.summary.failed += 1
        return True
