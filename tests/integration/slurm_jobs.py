"""Callables that the local-cluster tests submit as real SLURM jobs.

The jobs' interpreter cannot import test modules by name, so the tests register this module with
``cloudpickle.register_pickle_by_value``: everything here travels inside the job's pickle. Keep it
free of imports from the test package.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import submitit


def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b


def square(x: int) -> int:
    """Return ``x * x``."""
    return x * x


def gpu_environment() -> dict[str, str | None]:
    """Return the GPU-related environment that SLURM gave the job."""
    keys = ("CUDA_VISIBLE_DEVICES", "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")
    return {key: os.environ.get(key) for key in keys}


class CountingTask(submitit.helpers.Checkpointable):
    """Counts to ``n`` slowly, appending "<restart_count> <i>" to a progress file per step.

    ``self.i`` is the position; ``checkpoint()`` (inherited) pickles ``self``, so a requeued
    job continues from the step it had reached instead of from 0.
    """

    def __init__(self) -> None:
        self.i = 0

    def __call__(self, n: int, progress: str, step_s: float) -> int:
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        path = Path(progress)
        while self.i < n:
            with path.open("a") as f:
                f.write(f"{restart} {self.i}\n")
            time.sleep(step_s)
            self.i += 1
        return self.i
