"""Final retraining of a search's top networks (spec 6.1, 7.2 final selection, 12 #12-13).

This module owns the retraining phase of a run: which networks (the search's `final_ranking`,
top 5 by default), how (the `original` recipe at c0r0s0e600: 600 epochs, cutout 16, path dropout
0.2, auxiliary weight 0.4, cosine 0.025 -> 0.001 in the supplement profile; no auxiliary head
and cosine to 0 in the official one, as the released retrain code), as what (one long
preemptible job per (network, seed) through the cluster executors; the job runs `run_segment`
over epochs [0, e), which checkpoints every epoch and at the requeue signal and resumes exactly),
and where the outcome goes (`/retrain` of the run's HDF5 file, store/retrain_table.py).

Files live beside the search's (`<run>.d/retrain/<arch_id>-seed<k>/` per training, the
executor's under `<run>.d/retrain/executor/`); jobs are named `econas-<run>.rt-<arch_id>-s<k>`,
which the search driver's `econas-<run>-` prefix does not match. `retrain` is idempotent: run it
again and it adopts the jobs still alive, skips finished trainings, resubmits dead ones and
rebuilds the table from the result files. Jobs are supervised as the search's are
(`supervise.Supervisor`): up to `max_attempts` charged ends per training, faults outside the
network never charged, and a fault a person must fix stops it (exit 3). It holds the run's
driver lock while it drives. It never imports torch.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from econas_hpc.cluster.accounting import JobLimits
from econas_hpc.cluster.events import read_events
from econas_hpc.cluster.executors import make_executor
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import ConfigError, EnvironmentFault, StateError
from econas_hpc.recipes import make_recipe
from econas_hpc.search.evolution import final_ranking
from econas_hpc.search.runfile import ExecOptions, TrainOptions, read_run_file
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.summary import summarize_retrain  # file-only: status reads it too
from econas_hpc.settings import Setting
from econas_hpc.space.genotype import check_arch_id
from econas_hpc.store.lock import acquire_lock
from econas_hpc.store.retrain_table import RetrainRecord, write_retrain_table
from econas_hpc.store.state import StateStore
from econas_hpc.supervise import Supervisor, Tracked
from econas_hpc.supervise.loop import drive
from econas_hpc.train import SegmentSpec, read_result, result_path

__all__ = [
    "RetrainJob",
    "RetrainOptions",
    "plan_retrain",
    "retrain",
    "summarize_retrain",
]

log = logging.getLogger(__name__)

_CHECKPOINT_RE = re.compile(r"^ep(\d{3,})-s(\d{5,})\.pt$")  # train/checkpoint.py's names


@dataclass(frozen=True, slots=True)
class RetrainOptions:
    """What to retrain and how to run it.

    `execution`: execution and cluster option overrides (executor, partition, gpus_per_node,
    timeout_min, device, ...) on top of the run's own (`<run>.d/run.json`). `wait`: poll until
    every training ended; otherwise submit, record and return (run again to collect).
    """

    top: int = 5
    setting: str = "c0r0s0e600"
    seeds: int = 1
    wait: bool = True
    max_attempts: int = 3
    execution: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for name in ("top", "seeds", "max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"retrain {name}={value!r} must be an integer >= 1")


@dataclass(frozen=True, slots=True)
class RetrainJob:
    """One (network, seed) to retrain: its place in the ranking, spec and work item."""

    rank: int
    arch_id: str
    seed: int
    proxy_score: float
    spec: SegmentSpec
    item: WorkItem


def _run_options(paths: RunPaths, overrides: Mapping[str, Any]) -> tuple[TrainOptions, ExecOptions]:
    """The run's train and execution options (defaults when it has no run file) + overrides."""
    try:
        train, execution = read_run_file(paths)
    except StateError:
        if paths.run_file.exists():
            raise
        train, execution = TrainOptions(), ExecOptions()
    return train, execution.updated(dict(overrides))


def retrain_dir(state_path: str | Path) -> Path:
    """`<run>.d/retrain`: every retraining's directory and the executor's files."""
    return RunPaths.of(state_path).root / "retrain"


def plan_retrain(state_path: str | Path, options: RetrainOptions) -> list[RetrainJob]:
    """The (network, seed) trainings of the run's top `options.top` networks, in rank order.

    Raises:
        StateError: unreadable state, or no network finished all its segments yet.
        InvalidSettingError / ConfigError: a bad setting or option.
    """
    paths = RunPaths.of(state_path)
    state = StateStore(paths.state).load()
    cfg = state.config
    train, execution = _run_options(paths, dict(options.execution))
    ranking = final_ranking(state, cfg, options.top)
    if not ranking:
        raise StateError(
            f"run {paths.state} has no network that finished all {cfg.segments_per_network} "
            "segment(s) yet; nothing to retrain"
        )
    base = train.base()
    setting = Setting.parse(options.setting, base)
    recipe = make_recipe("original", setting, cfg.profile, {"cell_output": cfg.concat_mode})
    jobs = []
    for rank, (arch_id, score) in enumerate(ranking, start=1):
        for seed in range(options.seeds):
            spec = SegmentSpec(
                arch_id=arch_id,
                genotype_json=state.networks[arch_id].genotype_json,
                setting=str(setting),
                recipe=recipe,
                epoch_start=0,
                epoch_end=setting.e,
                run_dir=str(retrain_dir(paths.state) / f"{check_arch_id(arch_id)}-seed{seed}"),
                dataset=cfg.dataset,
                data_dir=cfg.data_dir,
                seed=seed,
                device=execution.device,
                base=base,
                synthetic_train=cfg.synthetic_train,
                synthetic_test=cfg.synthetic_test,
            )
            name = f"econas-{paths.run}.rt-{arch_id}-s{seed}"
            item = WorkItem(name, "train", spec.to_dict(), str(result_path(spec)))
            jobs.append(RetrainJob(rank, arch_id, seed, score, spec, item))
    return jobs


@dataclass(slots=True)
class _Tracker:
    """Job ids and states of one `retrain` invocation; the job mechanics and the retry policy
    are the supervisor's (the same as the search's)."""

    jobs: Supervisor
    job_ids: dict[str, str] = field(default_factory=dict)  # item name -> job id
    submitted_at: dict[str, float] = field(default_factory=dict)  # NaN: an adopted job
    states: dict[str, str] = field(default_factory=dict)  # job id -> JobState
    failed: set[str] = field(default_factory=set)
    waiting: list[str] = field(default_factory=list)  # why trainings wait for a person

    def adopt(self, jobs: Sequence[RetrainJob]) -> None:
        """Take over the jobs of an earlier invocation, found by name."""
        found = self.jobs.adopt(job.item.name for job in jobs)  # finished ones: for the table
        self.job_ids.update(found)
        self.submitted_at.update(dict.fromkeys(found, math.nan))
        self.refresh(jobs)

    def refresh(self, jobs: Sequence[RetrainJob]) -> None:
        """Poll the live jobs; judge those that ended without a result (`Supervisor.judge`)."""
        live = [j for j in jobs if j.item.name in self.job_ids and not _finished(j)]
        polled = self.jobs.poll([self._tracked(j) for j in live])
        self.states.update(polled.states)
        for tracked, verdict in polled.dead:
            job = next(j for j in live if j.item.name == tracked.name)
            if _finished(job):  # its result landed since the poll
                continue
            decision = self.jobs.judge(tracked, verdict)
            del self.job_ids[tracked.name]  # submitted again by `submit_missing` unless failed
            why = f"{tracked.name}: job {tracked.job_id} ended without a result"
            why += f" ({decision.outcome.reason}); {decision.describe(self.jobs.max_attempts)}"
            log.warning("%s", why)
            if decision.action == "fail":
                self.failed.add(tracked.name)
            elif decision.action == "wait":
                self.waiting.append(why)

    def _tracked(self, job: RetrainJob) -> Tracked:
        name = job.item.name
        return Tracked(name, self.job_ids[name], self.submitted_at[name], Path(job.spec.run_dir))

    def state_of(self, name: str) -> str:
        job_id = self.job_ids.get(name)
        return "" if job_id is None else self.states.get(job_id, "unknown")

    def submit_missing(self, jobs: Sequence[RetrainJob]) -> None:
        """Submit, in one call, every unfinished training without a job (none while waiting)."""
        todo = [
            job
            for job in jobs
            if not _finished(job) and job.item.name not in self.failed | set(self.job_ids)
        ]
        if not todo or self.waiting:
            return
        ids = self.jobs.submit([job.item for job in todo], label="retrain")
        for job, job_id in zip(todo, ids, strict=True):
            self.job_ids[job.item.name], self.submitted_at[job.item.name] = job_id, time.time()
        self.refresh(jobs)

    def finished(self, jobs: Sequence[RetrainJob]) -> bool:
        return all(_finished(job) or job.item.name in self.failed for job in jobs)

    def stop_if_waiting(self, state_path: Path) -> None:
        """Raise once a training waits for a fault outside the network to be fixed.

        Raises:
            EnvironmentFault: naming the first cause and how to continue.
        """
        if self.waiting:
            self.jobs.cancel(self.job_ids.values())  # they would meet the same fault
            raise EnvironmentFault(
                f"retraining stopped: {self.waiting[0]}; nothing was charged; fix it, then run "
                f"`econas-hpc retrain {state_path}` again"
            )


def _finished(job: RetrainJob) -> bool:
    return Path(job.item.result_path).exists()


def _epochs_done(run_dir: Path) -> int:
    """Epochs completed according to the newest checkpoint (its name: epoch in progress)."""
    epochs = [
        int(m.group(1))
        for p in (run_dir / "checkpoints").glob("ep*.pt")
        if (m := _CHECKPOINT_RE.match(p.name))
    ]
    return max(epochs, default=0)


def _record(job: RetrainJob, tracker: _Tracker, gpus: int) -> RetrainRecord:
    """The table row of `job` now: from its result file, else from its job and checkpoints."""
    name, run_dir = job.item.name, Path(job.spec.run_dir)
    signals = sum(
        1 for e in read_events(run_dir) if e.get("event") == "signal" and e.get("item") == name
    )
    common: dict[str, Any] = {
        "arch_id": job.arch_id,
        "seed": job.seed,
        "rank": job.rank,
        "proxy_score": job.proxy_score,
        "setting": job.spec.setting,
        "epochs": job.spec.epoch_end,
        "preemptions": signals,
        "job_id": tracker.job_ids.get(name, ""),
        "run_dir": str(run_dir),
    }
    result = read_result(job.spec)
    if result is None:
        state = tracker.state_of(name)
        status = (
            "failed" if name in tracker.failed else "running" if state == "running" else ("pending")
        )
        return RetrainRecord(**common, status=status, epochs_done=_epochs_done(run_dir))
    ok = result.status == "ok" and bool(result.test_acc)
    acc = result.test_acc[-1] if ok else math.nan
    return RetrainRecord(
        **common,
        status=result.status,
        test_acc=acc,
        test_error=100.0 - acc,
        params=result.params,
        epochs_done=job.spec.epoch_start + len(result.test_acc),
        gpu_hours=result.wall_s * gpus / 3600.0,
        resumes=result.resumes,
    )


@dataclass(slots=True)
class _RetrainLoop:
    """One `retrain` invocation as a `supervise.loop.JobLoop`; its records are the table."""

    tracker: _Tracker
    jobs: Sequence[RetrainJob]
    state_path: Path
    gpus: int
    wait: bool
    written: list[RetrainRecord] | None = None

    def submit(self) -> None:
        self.tracker.submit_missing(self.jobs)

    def ingest(self) -> int:
        return 0  # the table is rebuilt from the result files at every save

    def finished(self) -> bool:
        if self.tracker.waiting:
            self.save(1)
            self.tracker.stop_if_waiting(self.state_path)  # raises
        return not self.wait or self.tracker.finished(self.jobs)

    def poll(self) -> int:
        self.tracker.refresh(self.jobs)
        return 0

    def save(self, changed: int) -> None:
        records = [_record(job, self.tracker, self.gpus) for job in self.jobs]
        if records != self.written:  # NaN != NaN: a pending table is rewritten; it is small
            write_retrain_table(self.state_path, records)
            self.written = records


def retrain(state_path: str | Path, options: RetrainOptions | None = None) -> list[RetrainRecord]:
    """Retrain the run's top networks; return (and store in `/retrain`) one row per training.

    Raises:
        StateError: unreadable state, nothing to retrain, or a live search driver holds the run.
        SubmissionError: the scheduler refused the jobs (e.g. more GPUs than the partition has).
        ConfigError / InvalidSettingError: bad options.
        EnvironmentFault: a training waits for a fault outside the network to be fixed.
    """
    options = options or RetrainOptions()
    jobs = plan_retrain(state_path, options)
    paths = RunPaths.of(state_path)
    _, execution = _run_options(paths, dict(options.execution))
    gpus = execution.cluster.gpus_per_node or 1
    with acquire_lock(paths.state) as lock:
        folder = retrain_dir(paths.state) / "executor"
        executor = make_executor(execution.executor, folder, execution.cluster)
        limits = JobLimits.from_options(execution.cluster, executor.kind)
        tracker = _Tracker(
            Supervisor(
                executor,
                f"econas-{paths.run}.rt-",
                options.max_attempts,
                limits,
                probe_root=retrain_dir(paths.state),
            )
        )
        tracker.adopt(jobs)
        loop = _RetrainLoop(tracker, jobs, paths.state, gpus, options.wait)
        drive(loop, lock, execution.poll_s, sleep=time.sleep)
        return loop.written or []
