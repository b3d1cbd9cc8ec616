"""Helpers of the search-level tests against the local Slurm cluster (test_slurm_search.py).

Runs and checks whole searches: a TOML config, `econas-hpc` as a subprocess (exactly what a
user runs), the state compared without ids and times, and the per-segment ledger (every
segment concluded once, resumed ones continued from the checkpoint their signal wrote, and the
`cluster.accounting` counters of each).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from econas_hpc.cluster import slurm_query
from econas_hpc.cluster.accounting import Counters, JobLimits, segment_counters
from econas_hpc.cluster.events import read_events
from econas_hpc.records import RunState
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.store.state import StateStore

ROOT = Path(__file__).resolve().parents[2]
SEARCH = {
    "cycles": 0,
    "initial_population": 2,
    "continue_p20": 1,
    "continue_p40": 1,
    "mothers_p20": 1,
    "mothers_p40": 1,
    "mothers_p60": 1,
    "max_idle_cycles": 3,
    "segment_epochs": 1,
    "setting": "c6r4s0e3",
    "dry_run": True,
    "seed": 7,
}


def _toml(value: object) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_config(
    folder: Path,
    search: Mapping[str, Any] | None = None,
    sleep_s: float = 0.0,
    slurm: Mapping[str, Any] | None = None,
    name: str = "search.toml",
) -> Path:
    """A launch file: [search] (small dry run), [execution] dryrun_sleep_s, optional [slurm]."""
    lines = ["[search]", *(f"{k} = {_toml(v)}" for k, v in {**SEARCH, **(search or {})}.items())]
    lines += ["[execution]", f"dryrun_sleep_s = {sleep_s}"]
    if slurm:
        lines += ["[slurm]", *(f"{k} = {_toml(v)}" for k, v in slurm.items())]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def new_state(folder: Path, stem: str) -> Path:
    """A state path whose run name is unique on this cluster (job names embed it)."""
    return folder / f"{stem}{uuid.uuid4().hex[:6]}.h5"


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def econas(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `econas-hpc ARGS` to completion (stdout and stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "econas_hpc", *args],
        cwd=cwd,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_econas(*args: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start `econas-hpc ARGS` in the background, its output into `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "econas_hpc", *args],
            cwd=cwd,
            env=_env(None),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.3)


def load(state_path: Path) -> RunState:
    return StateStore(state_path).load()


def essence(state: RunState, attempts: bool = True) -> Any:
    """The state without job ids, times and the data directory (NaN as a string)."""
    data = state.to_dict()
    for key in ("created", "updated", "run_id"):  # run_id: made anew by each launch
        data.pop(key)
    data["config"] = {k: v for k, v in data["config"].items() if k != "data_dir"}
    drop = {"job_id", "submitted_at", "wall_s", "gpu_s"}
    if not attempts:
        drop |= {"attempt", "attempts"}
    for table in ("networks", "jobs", "cycles"):
        data[table] = [{k: v for k, v in row.items() if k not in drop} for row in data[table]]
    return json.loads(json.dumps(data), parse_constant=str)


def all_events(state_path: Path) -> list[dict[str, Any]]:
    paths = RunPaths.of(state_path)
    return [e for d in sorted(paths.nets.glob("*")) for e in read_events(d)]


def started_items(state_path: Path) -> dict[str, str]:
    """item name -> job id of every segment whose worker has started."""
    return {e["item"]: str(e["job_id"]) for e in all_events(state_path) if e["event"] == "start"}


def ledger(state_path: Path, limits: JobLimits) -> dict[str, Counters]:
    """Check every segment concluded once from its checkpoints; return its counters by item.

    Every job is done with one result and exactly one finishing worker ("none counted twice",
    "no segment lost"); each start after a signal resumed from the checkpoint that signal's
    stop wrote (nothing after it was trained again); the result's resume count matches.
    """
    state, paths = load(state_path), RunPaths.of(state_path)
    assert all(j.state == "done" for j in state.jobs.values()), state.jobs
    assert all(n.status == "ok" for n in state.networks.values())
    out = {}
    for (arch, seg), job in state.jobs.items():
        name, run_dir = paths.job_name(arch, seg), paths.net_dir(arch)
        events = [e for e in read_events(run_dir) if e["item"] == name]
        finished = [e for e in events if e["event"] == "finish" and e["status"] != "crashed"]
        assert len(finished) == 1, f"{name}: {len(finished)} finishing runs"
        starts = [e for e in events if e["event"] == "start"]
        for before, after in zip(events, events[1:], strict=False):
            if before["event"] == "signal" and after["event"] == "start":
                assert before["stopped"] and after["last_checkpoint_t"] is not None, name
                assert after["last_checkpoint_t"] >= before["t"] - before["stop_s"] - 0.5, name
        results = list(run_dir.glob(f"result-e*-{seg * SEARCH['segment_epochs']:03d}.json"))
        result = json.loads(results[0].read_text(encoding="utf-8"))
        assert result["resumes"] == sum(s["last_checkpoint_t"] is not None for s in starts), name
        out[name] = segment_counters(events, name, limits)
        assert out[name].jobs == job.attempt, f"{name}: {out[name].jobs} jobs, {job.attempt}"
    return out


def run_jobs(state_path: Path) -> list[tuple[str, str, str]]:
    """(job id, name, state) of the run's segment jobs, from one sacct listing."""
    prefix = RunPaths.of(state_path).name_prefix
    return [row for row in slurm_query.list_jobs() if row[1].startswith(prefix)]


def settled_run_jobs(
    state_path: Path, at_least: int, timeout_s: float = 60
) -> list[tuple[str, str, str]]:
    """`run_jobs` once sacct lists `at_least` of them: slurmdbd records jobs (and the names array
    tasks give themselves) seconds late on a loaded machine."""
    wait_for(lambda: len(run_jobs(state_path)) >= at_least, timeout_s, f"{at_least} jobs in sacct")
    return run_jobs(state_path)


def squeue(*fields: str) -> list[list[str]]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "|".join(fields)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def foreign_jobs(*prefixes: str) -> list[str]:
    """Queued or running jobs whose names start with none of `prefixes` (other users' tests)."""
    return [f"{jid} {name}" for jid, name in squeue("%i", "%j") if not name.startswith(prefixes)]


def scontrol(*args: str, check: bool = True) -> None:
    subprocess.run(["scontrol", *args], check=check, capture_output=True, timeout=30)


# --- running searches -------------------------------------------------------------------------

SLURM_ARGS = ("--executor", "slurm", "--partition", "gpu", "--poll-interval", "1")


def launch_argv(config: Path, state: Path, *extra: str) -> list[str]:
    """`launch` of `config` into `state` on the `gpu` partition (override with `extra`)."""
    return ["launch", "--config", str(config), "--state", str(state), *SLURM_ARGS, *extra]


def run_search(folder: Path, config: Path, state: Path, *extra: str) -> None:
    """Launch in the foreground; the run must succeed."""
    proc = econas(*launch_argv(config, state, *extra), cwd=folder, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def start_search(folder: Path, config: Path, state: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Launch in the background (output in `<folder>/driver.log`)."""
    return start_econas(*launch_argv(config, state, *extra), cwd=folder, log=folder / "driver.log")


def finish(folder: Path, driver: subprocess.Popen[bytes], timeout_s: float = 150) -> str:
    """Wait for a background driver; it must succeed. Returns its log."""
    code = driver.wait(timeout=timeout_s)
    log = (folder / "driver.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    return log


def reference(folder: Path, config: Path) -> Any:
    """The same search on the in-process debug executor without sleeps: the expected state."""
    quick = config.with_name("reference.toml")
    text = config.read_text(encoding="utf-8")
    quick.write_text(re.sub(r"(?m)^dryrun_sleep_s = .*$", "dryrun_sleep_s = 0.0", text))
    state = folder / "reference" / "ref.h5"
    argv = ["launch", "--config", str(quick), "--state", str(state), "--executor", "debug"]
    proc = econas(*argv, cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return essence(load(state), attempts=False)


def progress_files(state: Path) -> list[Path]:
    """Dry-run "checkpoints" (progress files) of the run's segments still running."""
    return list(RunPaths.of(state).nets.glob("*/*.progress"))


def job_state(job_id: str) -> str:
    """The job's current accounting state ("" before sacct knows it)."""
    argv = ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id]
    rows = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.split()
    return rows[0] if rows else ""


def quiet_cluster(*prefixes: str) -> None:
    """Preempting or downing the node would hit other tests' jobs: wait for them, else skip."""
    try:
        wait_for(lambda: not foreign_jobs(*prefixes), 60, "other jobs to finish")
    except AssertionError:
        pytest.skip(f"other jobs on the cluster would be hit: {foreign_jobs(*prefixes)}")
