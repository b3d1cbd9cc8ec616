"""Shared fixtures and the behaviour of the `gpu` and `slurm` markers.

- `gpu`: skipped with "no CUDA device" when `torch.cuda.is_available()` is False.
- `slurm`: skipped when no local SLURM cluster answers (`sinfo` on PATH, `SLURM_CONF` set and
  `sinfo -h` exiting 0 within a few seconds). With `ECONAS_REQUIRE_SLURM=1` (set by CI once it
  starts the cluster) a missing cluster FAILS those tests instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SINFO_TIMEOUT_S = 5.0

# Tiny CPU networks run many times faster with one intra-op thread on these 2-core machines (torch's
# default thread pool oversubscribes the cores once workers run in parallel). Subprocesses and
# local-executor workers inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@functools.cache
def _cuda_available() -> bool:
    import torch  # only tests that carry the gpu marker pay for importing torch here

    return bool(torch.cuda.is_available())


@functools.cache
def slurm_unavailable_reason() -> str | None:
    """Why no local SLURM cluster can be used, or None when `sinfo -h` answers."""
    if shutil.which("sinfo") is None:
        return "no SLURM cluster: `sinfo` is not on PATH"
    if not os.environ.get("SLURM_CONF"):
        return "no SLURM cluster: SLURM_CONF is not set"
    try:
        proc = subprocess.run(
            ["sinfo", "-h"], capture_output=True, text=True, timeout=SINFO_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no SLURM cluster: `sinfo -h` did not answer ({exc})"
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        return f"no SLURM cluster: `sinfo -h` exited {proc.returncode}: {' '.join(detail[:1])}"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None and not _cuda_available():
        pytest.skip("no CUDA device")
    if item.get_closest_marker("slurm") is not None:
        reason = slurm_unavailable_reason()
        if reason is None:
            return
        if os.environ.get("ECONAS_REQUIRE_SLURM") == "1":
            pytest.fail(f"ECONAS_REQUIRE_SLURM=1 but {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh numpy Generator with seed 0 for each test."""
    return np.random.default_rng(0)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """An empty, existing run directory inside the test's tmp_path."""
    path = tmp_path / "run"
    path.mkdir()
    return path
