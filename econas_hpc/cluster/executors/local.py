"""The local executor: submitit controller subprocesses on this machine, one GPU each.

This module owns `LocalExecutor` and its job table `<folder>/local-jobs.json` (through
`cluster.registry`): each job is one submitit controller process whose pid is recorded. A
restarted driver re-attaches a running job when that pid is alive and its `/proc/<pid>/cmdline`
is our controller for that job's folder; otherwise the job's state comes from submitit's result
pickle (`done`/`failed`), or `failed` when the process died without one. Queued jobs are in the
file too, and the next executor instance starts them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import submitit
import submitit.local.local

from econas_hpc.cluster.events import ECONAS_JOB_ID
from econas_hpc.cluster.executors.task import CheckpointableTask
from econas_hpc.cluster.naming import PACKAGE_ROOT
from econas_hpc.cluster.options import ClusterOptions, JobState
from econas_hpc.cluster.registry import JobRegistry, RegisteredJob, pack_items
from econas_hpc.cluster.workitem import WorkItem

log = logging.getLogger(__name__)

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # no scheduler limit locally; submitit needs some number


@contextlib.contextmanager
def _job_env(job_id: str) -> Iterator[None]:
    """The environment a local controller copies when it starts: the package on PYTHONPATH
    (no shell `setup` lines: a shell between us and the controller would swallow cancel's
    SIGINT) and our job id for the worker's events."""
    old = {key: os.environ.get(key) for key in ("PYTHONPATH", ECONAS_JOB_ID)}
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), old["PYTHONPATH"]) if p)
    os.environ.update({"PYTHONPATH": path, ECONAS_JOB_ID: job_id})
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def visible_gpus() -> tuple[int, ...]:
    """GPU indices this process may hand out: CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        parts = [p.strip() for p in env.split(",") if p.strip()]
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(range(sum(line.startswith("GPU ") for line in out.splitlines())))


def _child_pids(pid: int) -> tuple[int, ...]:
    """The direct children of `pid` (Linux /proc), e.g. a local controller's task processes."""
    children: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Field 4 is the parent pid; the command name (field 2) may contain spaces.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return tuple(children)


@contextlib.contextmanager
def _interruptible_children() -> Iterator[None]:
    """Start children with SIGINT at its default, as `cancel` needs (SIGINT stops a controller).

    A driver started in the background of a script (`cmd &`, nohup) inherits SIGINT ignored, and
    an ignored signal survives exec: its controllers could then never be cancelled.
    """
    restore = None
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        with contextlib.suppress(ValueError):  # only the main thread may change handlers
            restore = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        if restore is not None:
            signal.signal(signal.SIGINT, restore)


class _SessionSubprocess:
    """`subprocess` as submitit's local launcher sees it: every Popen in a new session, its
    output in `<job folder>/controller.log` (a cancelled controller's traceback included)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(command: Any, *args: Any, **kwargs: Any) -> subprocess.Popen[Any]:  # noqa: N802
        folder = Path(command[-1]) if isinstance(command, list) else None
        if folder is None:
            return subprocess.Popen(command, *args, start_new_session=True, **kwargs)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "controller.log", "ab") as out:  # the child keeps its own copy
            options: dict[str, Any] = {**kwargs, "stdout": out, "stderr": subprocess.STDOUT}
            return subprocess.Popen(command, *args, start_new_session=True, **options)


@contextlib.contextmanager
def _own_session() -> Iterator[None]:
    """Start local controllers in a session of their own, away from the driver's terminal.

    Ctrl-C in a terminal signals its whole foreground process group: controllers in the
    driver's group would die with it (tracebacks in the terminal, and every job in flight lost
    and counted as a crash). In their own session they run on, as Slurm jobs do, and `resume`
    re-attaches them; `cancel` still reaches them by pid. Their output goes to a log file, so
    a cancelled controller's traceback never lands in the driver's terminal.
    """
    module = submitit.local.local
    original = module.subprocess
    module.subprocess = _SessionSubprocess()  # type: ignore[assignment]
    try:
        yield
    finally:
        module.subprocess = original


class LocalExecutor:
    """Subprocesses on this machine (submitit's LocalExecutor), at most `max_concurrent` at once.

    Jobs beyond the limit wait in the registry and start as earlier ones end; `poll()` drives
    that, so poll regularly. With GPUs, each running job gets one GPU of its own.
    """

    kind = "local"

    def __init__(self, folder: Path, options: ClusterOptions) -> None:
        self.folder, self.options = Path(folder), options
        self.registry = JobRegistry(self.folder, "local")
        self.gpus = visible_gpus()
        self.limit = options.max_concurrent or max(1, len(self.gpus))
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def submit(self, items: Sequence[WorkItem], label: str = "") -> list[str]:
        ids: list[str] = []
        for chunk in pack_items(items, self.options.segments_per_job):
            ids += [self.registry.add(chunk).job_id] * len(chunk)
        self._pump()
        self.registry.save()
        return ids

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        for record in list(self.registry.with_state("running")):
            record.state = self._running_state(record)
        self._pump()
        self.registry.save()
        jobs = self.registry.jobs
        return {j: jobs[j].state if j in jobs else "unknown" for j in job_ids}  # type: ignore[misc]

    def cancel(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            record = self.registry.jobs.get(job_id)
            if record is None or record.state not in ("pending", "running"):
                continue
            if record.state == "running" and self._running_state(record) == "running":
                # SIGKILL to the task processes (a hung task may ignore gentler signals, and its
                # progress is in its checkpoints), then SIGINT: the controller sees them gone.
                for pid in (*_child_pids(record.pid or 0), record.pid or 0):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL if pid != record.pid else signal.SIGINT)
            record.state = "cancelled"
        self.registry.save()

    def find(self, name_prefix: str) -> dict[str, str]:
        return self.registry.names(name_prefix)

    def _job_folder(self, record: RegisteredJob) -> Path:
        return self.folder / "local" / record.job_id

    def _pump(self) -> None:
        """Start queued jobs while fewer than `limit` run (and a GPU is free, if there are GPUs)."""
        running = list(self.registry.with_state("running"))
        busy = {r.gpu for r in running}
        for record in list(self.registry.with_state("pending")):
            if len(running) >= self.limit:
                return
            free = [g for g in self.gpus if g not in busy]
            if self.gpus and not free:
                return
            record.gpu = free[0] if free else None
            self._start(record)
            running.append(record)
            busy.add(record.gpu)

    def _start(self, record: RegisteredJob) -> None:
        executor = submitit.LocalExecutor(
            self._job_folder(record), max_num_timeout=self.options.max_num_timeout
        )
        params: dict[str, Any] = {
            "timeout_min": LOCAL_TIMEOUT_MIN,
            "signal_delay_s": self.options.signal_delay_s,
        }
        if record.gpu is not None:
            params.update(gpus_per_node=1, visible_gpus=(record.gpu,))
        executor.update_parameters(**params)
        task = CheckpointableTask(stop_timeout_s=max(5, self.options.signal_delay_s - 10))
        with _job_env(record.job_id), _interruptible_children(), _own_session():
            job = executor.submit(task, record.items)
        record.pid, record.state = int(job.job_id), "running"
        process = getattr(job, "_process", None)  # LocalJob keeps its controller's Popen
        if process is not None:
            self._procs[record.job_id] = process
        log.info("local job %s started (pid %s, gpu %s)", record.job_id, record.pid, record.gpu)

    def _running_state(self, record: RegisteredJob) -> JobState:
        """running while the controller lives; then done/failed from submitit's result pickle."""
        proc = self._procs.get(record.job_id)
        alive = proc.poll() is None if proc is not None else self._controller_alive(record)
        if alive:
            return "running"
        self._procs.pop(record.job_id, None)
        result = self._job_folder(record) / f"{record.pid}_0_result.pkl"
        if not result.exists():
            return "failed"  # killed (or crashed) before submitit could write anything
        with result.open("rb") as fh:
            outcome = pickle.load(fh)
        return "done" if outcome[0] == "success" else "failed"

    def _controller_alive(self, record: RegisteredJob) -> bool:
        # A pid can be reused after a reboot: it is ours only if it runs our controller for this
        # job's folder. A zombie has an empty cmdline and counts as dead.
        try:
            cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return "submitit.local._local" in cmdline and str(self._job_folder(record)) in cmdline
