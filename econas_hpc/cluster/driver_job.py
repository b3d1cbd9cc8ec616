"""The search driver as a Slurm job (`econas-hpc launch|resume --detach`), requeued when signalled.

This module owns `DriverTask`, `driver_options` and `submit_driver`. The task is a small CPU
submitit job that runs the driver command line (`python -m econas_hpc resume <state>`, or the
original `launch` arguments until the state file exists) in a child process and waits. On
USR2, which Slurm sends for a preemption (`preempt_send_user_signal`) or ahead of the time limit
(`--signal=USR2@signal_delay_s`), submitit calls `checkpoint()`: the child gets SIGINT, so the
driver leaves its loop between two atomic saves and releases the driver lock (if it cannot, the
requeued job carries the same SLURM_JOB_ID, which the lock treats as a takeover); the task then
requeues itself with the same arguments, and the next run resumes from the HDF5 state,
re-attaching the segment jobs still in flight.

The child ignores USR2 (Slurm signals every process of the job step, and a Python process dies
of an unhandled USR2) and gets an environment without the driver job's own SLURM_*/SBATCH_*
variables (SLURM_CONF and SLURM_JOB_ID excepted), which would otherwise leak into the segment
jobs it submits. This module imports submitit (tests/test_layering.py allows it here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError

from econas_hpc.cluster.executors import sbatch_parameters
from econas_hpc.cluster.options import ClusterOptions
from econas_hpc.cluster.preflight import check_slurm
from econas_hpc.errors import SubmissionError

__all__ = ["DriverJob", "DriverTask", "driver_folder", "driver_options", "submit_driver"]

log = logging.getLogger(__name__)

DRIVER_MAX_REQUEUES = 10_000  # submitit's time-out countdown: a long search meets many limits
KEEP_ENV = ("SLURM_CONF", "SLURM_JOB_ID")
STRIP_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SUBMITIT_")
WAIT_S = 0.25  # the main thread sleeps in slices so that submitit's USR2 handler runs promptly
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def driver_folder(state_path: str | Path) -> Path:
    """`<run>.d/driver`: the driver job's submitit files and logs, beside the state file."""
    return Path(state_path).expanduser().absolute().with_suffix(".d") / "driver"


def driver_job_name(state_path: str | Path) -> str:
    """`econas-<run>-driver`, as `squeue` shows it (the run name as segment names use it)."""
    return f"econas-{_UNSAFE.sub('_', Path(state_path).stem) or 'run'}-driver"


def driver_options(
    options: ClusterOptions, partition: str | None = None, timeout_min: int | None = None
) -> ClusterOptions:
    """A one-CPU, no-GPU job on the segments' partition (or `partition`), account and QOS.

    GPU requests, memory, constraints and extra sbatch arguments are the segments' and are
    dropped (the driver needs a few hundred MB: any site default will do).
    """
    return dataclasses.replace(
        options,
        partition=partition or options.partition,
        gpus_per_node=None,
        cpus_per_task=1,
        mem_gb=None,
        constraint=None,
        additional_parameters=(),
        segments_per_job=1,
        array_parallelism=1,
        max_num_timeout=DRIVER_MAX_REQUEUES,
        timeout_min=timeout_min or options.timeout_min,
    )


def _child_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k in KEEP_ENV or not k.startswith(STRIP_PREFIXES)
    }


def _child_signals() -> None:  # runs in the child between fork and exec
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # SIG_IGN survives exec; handlers do not
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # so Python installs KeyboardInterrupt


class DriverTask(submitit.helpers.Checkpointable):
    """Runs `econas-hpc <argv>` in a child process; on USR2 stops it and requeues itself."""

    def __init__(self, state: str, argv: Sequence[str], cwd: str, stop_timeout_s: float) -> None:
        self.state, self.argv, self.cwd = state, list(argv), cwd
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    def __getstate__(self) -> dict[str, Any]:  # the child process never travels in a pickle
        return {
            "state": self.state,
            "argv": self.argv,
            "cwd": self.cwd,
            "stop_timeout_s": self.stop_timeout_s,
        }

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)
        self._proc = None

    def run_argv(self) -> list[str]:
        """The command of this run: `resume <state>` once a detached launch created the state."""
        if self.argv[:1] == ["launch"] and Path(self.state).exists():
            return ["resume", self.state]
        return list(self.argv)

    def __call__(self) -> dict[str, Any]:
        if not logging.getLogger().handlers:  # a job's entry point: its log is the job's stderr
            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        argv = self.run_argv()
        log.info(
            "driver job %s (restart %s): econas-hpc %s",
            os.environ.get("SLURM_JOB_ID"),
            os.environ.get("SLURM_RESTART_COUNT", "0"),
            " ".join(argv),
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "econas_hpc", *argv],
            cwd=self.cwd,
            env=_child_env(),
            preexec_fn=_child_signals,
        )
        # poll() in slices, not wait(): checkpoint() runs in this thread, on top of this loop.
        while self._proc.poll() is None:
            time.sleep(WAIT_S)
        code = self._proc.returncode
        if code != 0:
            raise RuntimeError(f"econas-hpc {' '.join(argv)} exited with code {code}")
        return {"state": self.state, "argv": argv, "returncode": code}

    def stop(self) -> bool:
        """SIGINT the driver (it releases the lock and exits), escalating if it hangs."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return True
        for sig, wait_s in (
            (signal.SIGINT, self.stop_timeout_s),
            (signal.SIGTERM, 5.0),
            (signal.SIGKILL, 5.0),
        ):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            deadline = time.monotonic() + wait_s
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if proc.poll() is not None:
                log.warning("driver stopped by %s (exit code %s)", sig.name, proc.returncode)
                return sig == signal.SIGINT
        return False

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Stop the driver and requeue with the same arguments (the state file has the rest)."""
        self.stop()
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


@dataclass(frozen=True, slots=True)
class DriverJob:
    """A submitted driver job: its id, the run's state file and the job's log file."""

    job_id: str
    state: Path
    log: Path


def submit_driver(
    state_path: str | Path,
    options: ClusterOptions,
    argv: Sequence[str],
    *,
    partition: str | None = None,
    timeout_min: int | None = None,
    cwd: str | Path | None = None,
) -> DriverJob:
    """Submit the driver of `state_path` as a requeueing CPU job running `econas-hpc <argv>`.

    `argv` is the command line without `--detach` (`launch ...` or `resume STATE ...`); it runs
    in `cwd` (default: here), so relative paths keep their meaning. Nothing is left behind
    when Slurm refuses the job.

    Raises:
        SubmissionError: sbatch is missing or refuses the job (one line).
        ConfigError: a signal delay too short to stop the driver, an unknown account.
    """
    state = Path(state_path).expanduser().absolute()
    opts = driver_options(options, partition, timeout_min)
    check_slurm(opts, "driver job")
    folder = driver_folder(state)
    created = [p for p in (folder.parent, folder) if not p.exists()]
    executor = submitit.SlurmExecutor(folder, max_num_timeout=DRIVER_MAX_REQUEUES)
    executor.update_parameters(**sbatch_parameters(opts, driver_job_name(state)))
    task = DriverTask(
        str(state),
        argv,
        str(Path(cwd or Path.cwd()).absolute()),
        stop_timeout_s=max(5.0, min(30.0, opts.signal_delay_s / 2)),
    )
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            job = executor.submit(task)
    except (FailedJobError, OSError) as exc:
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        message = " ".join((str(exc) or stderr.getvalue()).split())
        raise SubmissionError(f"sbatch refused the driver job: {message}") from None
    job_id = str(job.job_id)
    log.info("driver job %s submitted for %s", job_id, state)
    return DriverJob(job_id, state, folder / f"{job_id}_0_log.out")
