"""The executors that run work items: debug (in-process), local (subprocesses), slurm (arrays).

This module is the package's only submitit importer. It owns the `Executor` protocol, the three
executors, `CheckpointableTask` (the submitit-facing `SegmentTask`) and the rendering of the
sbatch script (`sbatch_script`, checked against a golden file). Scheduler text queries live in
`slurm_query.py`, options in `options.py`, the local job table in `registry.py`.

Naming (what `squeue` shows). One `submit()` is one job array named `<run prefix>-<label>`
(e.g. `econas-run1-c12`; without a label a short digest of the item names). Each array task
renames itself to its item's name (`econas-<run>-<arch_id>-s<seg>`) when it starts, so a running
segment shows run, network and segment; a one-job submission carries the item's name from the
start. Which array index holds which items is written to `<folder>/arrays/` (before sbatch under
the array's name, after it under the job id), which is how `find()` maps names to job ids even
for tasks that have not started, and for a submission the driver did not live to record.

Local jobs (`<folder>/local-jobs.json`): each job is one submitit controller process; its pid is
recorded. A restarted driver re-attaches a running job when that pid is alive and its
`/proc/<pid>/cmdline` is our controller for that job's folder; otherwise the job's state comes
from submitit's result pickle (`done`/`failed`), or `failed` when the process died without one.
Queued jobs are in the file too, and the next executor instance starts them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import submitit
import submitit.local.local
from submitit.core.utils import FailedJobError
from submitit.slurm.slurm import _convert_mem, _make_sbatch_string

from econas_hpc.cluster import slurm_query
from econas_hpc.cluster.debug import DebugExecutor
from econas_hpc.cluster.naming import (
    PACKAGE_ROOT,
    ArrayManifests,
    array_name,
    id_key,
    job_name,
    pythonpath_line,
)
from econas_hpc.cluster.options import ClusterOptions, JobState, load_cluster_options
from econas_hpc.cluster.registry import JobRecord, JobRegistry, pack_items
from econas_hpc.cluster.tasks import ECONAS_JOB_ID, SegmentTask, WorkItem
from econas_hpc.errors import ConfigError, SubmissionError
from econas_hpc.fsio import make_private_dir

__all__ = [
    "CheckpointableTask",
    "ClusterOptions",
    "Executor",
    "JobState",
    "load_cluster_options",
    "make_executor",
    "sbatch_parameters",
    "sbatch_script",
]

log = logging.getLogger(__name__)

KINDS = ("debug", "local", "slurm")
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # no scheduler limit locally; submitit needs some number
RENAME_TIMEOUT_S = 10.0


class Executor(Protocol):
    kind: str

    def submit(self, items: Sequence[WorkItem], label: str = "") -> list[str]: ...
    def poll(self, job_ids: Sequence[str]) -> dict[str, JobState]: ...
    def cancel(self, job_ids: Sequence[str]) -> None: ...
    def find(self, name_prefix: str) -> dict[str, str]: ...


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


# --- local ------------------------------------------------------------------------------------


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
    def Popen(command: Any, **kwargs: Any) -> subprocess.Popen[Any]:  # noqa: N802  (the API)
        kwargs["start_new_session"] = True
        if not isinstance(command, list):
            return subprocess.Popen(command, **kwargs)
        folder = Path(command[-1])
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "controller.log", "ab") as out:  # the child keeps its own copy
            return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)


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

    def _job_folder(self, record: JobRecord) -> Path:
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

    def _start(self, record: JobRecord) -> None:
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

    def _running_state(self, record: JobRecord) -> JobState:
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

    def _controller_alive(self, record: JobRecord) -> bool:
        # A pid can be reused after a reboot: it is ours only if it runs our controller for this
        # job's folder. A zombie has an empty cmdline and counts as dead.
        try:
            cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return "submitit.local._local" in cmdline and str(self._job_folder(record)) in cmdline


# --- slurm ------------------------------------------------------------------------------------


def sbatch_parameters(options: ClusterOptions, name: str) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (`mem` in GB, as `update_parameters` expects it)."""
    params: dict[str, Any] = {
        "job_name": name,
        "time": options.timeout_min,
        "signal_delay_s": options.signal_delay_s,
        "array_parallelism": options.array_parallelism,
        "setup": [*options.setup, pythonpath_line()],
    }
    for key in ("partition", "gpus_per_node", "cpus_per_task", "account", "qos", "constraint"):
        if getattr(options, key) is not None:
            params[key] = getattr(options, key)
    if options.mem_gb is not None:  # SlurmExecutor writes `--mem=<value>`: a bare 2.0 is refused
        params["mem"] = _convert_mem(options.mem_gb)
    # `true` is a bare flag; `false` means "leave it out" (submitit would write --key=False).
    extra = {k: v for k, v in options.additional_parameters if v is not False}
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_script(options: ClusterOptions, folder: Path, name: str, array_size: int = 0) -> str:
    """The sbatch file submitit writes for these options (an array when `array_size` > 1)."""
    params = sbatch_parameters(options, name)
    command = " ".join(
        [shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))]
    )
    map_count = array_size if array_size > 1 else None
    return str(_make_sbatch_string(command=command, folder=folder, map_count=map_count, **params))


class SlurmExecutor:
    """One job array per `submit()`; batched sacct/squeue/scancel for everything else."""

    kind = "slurm"

    def __init__(self, folder: Path, options: ClusterOptions) -> None:
        if shutil.which("sbatch") is None:
            raise SubmissionError(
                "sbatch not found on PATH; use --executor local or load your site's Slurm module"
            )
        self.folder, self.options = Path(folder), options
        self.manifests = ArrayManifests(self.folder)

    def submit(self, items: Sequence[WorkItem], label: str = "") -> list[str]:
        if not items:
            return []
        chunks = pack_items(items, self.options.segments_per_job)
        name = job_name(chunks[0]) if len(chunks) == 1 else array_name(items, label)
        names = [[i.name for i in chunk] for chunk in chunks]
        self.manifests.before_submit(name, names)  # the orphan token
        ids = [str(job.job_id) for job in self._sbatch(chunks, name)]
        self.manifests.after_submit(name, names, ids)
        log.info("submitted %s: %d job(s) for %d item(s) as %s", name, len(ids), len(items), ids[0])
        return [job_id for job_id, chunk in zip(ids, chunks, strict=True) for _ in chunk]

    def _sbatch(self, chunks: list[list[WorkItem]], name: str) -> list[Any]:
        executor = submitit.SlurmExecutor(
            self.folder / "jobs" / "%j", max_num_timeout=self.options.max_num_timeout
        )
        try:
            executor.update_parameters(**sbatch_parameters(self.options, name))
        except ValueError as exc:
            raise ConfigError(f"bad Slurm parameters: {' '.join(str(exc).split())}") from exc
        task = CheckpointableTask(stop_timeout_s=max(5, self.options.signal_delay_s - 10))
        stderr = io.StringIO()  # submitit prints sbatch's stderr; it goes into our error instead
        try:
            with contextlib.redirect_stderr(stderr), executor.batch():
                jobs = [executor.submit(task, chunk) for chunk in chunks]
        except FailedJobError as exc:
            message = " ".join((str(exc) or stderr.getvalue()).split())
            raise SubmissionError(f"sbatch refused {name}: {message}") from exc
        except OSError as exc:
            raise SubmissionError(f"sbatch could not be run for {name}: {exc}") from exc
        return jobs

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return slurm_query.query_states(job_ids)

    def cancel(self, job_ids: Sequence[str]) -> None:
        slurm_query.cancel_jobs(job_ids)

    def find(self, name_prefix: str) -> dict[str, str]:
        """item name -> job id for this user's recent jobs, via one sacct/squeue call, and for
        every job this executor's manifests recorded: sacct lists a job only seconds after
        sbatch returned (more on a busy site), and an orphan missed here would run twice."""
        found: dict[str, str] = {}
        listed = [(job_id, name) for job_id, name, _ in slurm_query.list_jobs()]
        rows = sorted({*listed, *self.manifests.recorded()}, key=lambda r: id_key(r[0]))
        for job_id, scheduler_name in rows:  # oldest first: the newest job of a name wins
            for name in self.manifests.item_names(job_id, scheduler_name):
                if name.startswith(name_prefix):
                    found[name] = job_id
        return found


def make_executor(kind: str, folder: Path, options: ClusterOptions) -> Executor:
    """The executor `kind` ("debug" | "local" | "slurm") keeping its files under `folder`.

    Raises:
        ConfigError: an unknown kind.
        SubmissionError: "slurm" without `sbatch` on the PATH.
    """
    factories: dict[str, type[DebugExecutor] | type[LocalExecutor] | type[SlurmExecutor]] = {
        "debug": DebugExecutor,
        "local": LocalExecutor,
        "slurm": SlurmExecutor,
    }
    if kind not in factories:
        raise ConfigError(f"executor {kind!r} is unknown; allowed: {KINDS}")
    # submitit's job folders (its pickles included) live inside this private folder
    make_private_dir(folder, "executor folder")
    return factories[kind](Path(folder), options)
