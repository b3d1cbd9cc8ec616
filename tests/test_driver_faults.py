"""Exactness under kills, and every fault the driver must survive with nothing lost.

- A dry-run search killed (os._exit(137), as SIGKILL leaves it) at each named point of a cycle,
  inside and between cycles and in the middle of a save, then resumed, ends in the same state
  as an uninterrupted run with the same seed. The kills run in a forked child (no interpreter
  start-up) through `ECONAS_CRASH_AT`.
- A real SIGKILL of a `launch` subprocess with jobs in flight on the local executor, then resume.
- Real tiny training on the local executor, killed once and resumed.
- Bad input and faults: missing/corrupt state, a second driver, a missing data directory, jobs
  that crash, hang past their time limit or diverge.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from econas_hpc.errors import DataError, StateError
from econas_hpc.records import WORST_SCORE, RunState
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.driver import run_search
from econas_hpc.search.reconcile import CRASH_ENV, SearchEvent
from econas_hpc.search.runfile import DryrunFault, ExecOptions
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.summary import summarize
from econas_hpc.store.lock import acquire_lock
from econas_hpc.store.state import StateStore

ROOT = Path(__file__).resolve().parents[1]
SMALL = SearchConfig(cycles=6, initial_population=8, dry_run=True)
DEBUG = ExecOptions(executor="debug")
TINY = SearchConfig(
    cycles=3,
    initial_population=4,
    continue_p20=2,
    continue_p40=1,
    mothers_p20=2,
    mothers_p40=1,
    mothers_p60=1,
    dry_run=True,
)


def dumps(state: RunState, checkpoints: bool = True) -> str:
    """The state as JSON without what legitimately differs between equal runs: timestamps, job
    ids, wall/GPU times, the (absolute) data directory, and with `checkpoints` False the digests
    of checkpoint files (which hold wall times)."""
    data = state.to_dict()
    for net in data["networks"] if not checkpoints else ():
        net.pop("checkpoint_sha256")
    for key in ("created", "updated", "run_id"):  # run_id: made anew by each launch
        data.pop(key)
    data["config"].pop("data_dir")
    for job in data["jobs"]:
        job.pop("job_id")
        job.pop("submitted_at")
    for cycle in data["cycles"]:
        cycle.pop("wall_s")
        cycle.pop("gpu_s")
    return json.dumps(data, sort_keys=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The uninterrupted run of SMALL."""
    path = tmp_path_factory.mktemp("reference") / "run.h5"
    return dumps(run_search(path, SMALL, DEBUG))


def crash_in_child(path: Path, cfg: SearchConfig | None, crash_at: str) -> int:
    """Run the driver in a forked child that dies at `crash_at`; returns its exit code."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 3
        try:
            os.environ[CRASH_ENV] = crash_at
            logging.disable(logging.CRITICAL)
            run_search(path, cfg, DEBUG if cfg is not None else None)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize(
    "crash_at",
    [
        "after_plan_saved:-1",  # the initial population planned, nothing submitted
        "after_submit:0",  # jobs submitted (and, debug, finished), ids not saved: orphans
        "after_ids_saved:2",
        "after_ingest:3",  # results applied in memory only
        "mid_save:1",  # a torn .tmp beside the old file
        "after_cycle_saved:4",  # between cycles
        "after_plan_saved:5",  # the last cycle
    ],
)
def test_killed_and_resumed_equals_uninterrupted(
    tmp_path: Path, reference: str, crash_at: str
) -> None:
    path = tmp_path / "run.h5"
    assert crash_in_child(path, SMALL, crash_at) == 137
    assert summarize(path).driver is None  # the dead driver's lock is not a running driver
    if crash_at.startswith("mid_save"):
        assert StateStore(path).tmp_path.exists()
    if crash_at.startswith("after_submit"):  # the orphan token names the submitted jobs
        assert RunPaths.of(path).token.exists()
    assert dumps(run_search(path, None)) == reference


def test_killed_repeatedly_equals_uninterrupted(tmp_path: Path, reference: str) -> None:
    path = tmp_path / "run.h5"
    assert crash_in_child(path, SMALL, "after_submit:-1") == 137
    assert crash_in_child(path, None, "mid_save:0") == 137
    assert crash_in_child(path, None, "after_submit:2") == 137
    assert crash_in_child(path, None, "after_ingest:2") == 137
    assert dumps(run_search(path, None)) == reference


def _launch_cli(state: Path, config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "econas_hpc",
        "launch",
        "--state",
        str(state),
        "--config",
        str(config),
    ]
    return subprocess.Popen(
        command, cwd=state.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_for(predicate: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _submitted_jobs(path: Path) -> int:
    try:
        state = StateStore(path).load()
    except StateError:
        return 0
    return sum(j.state in ("submitted", "running") for j in state.jobs.values())


def _search_table(cfg: SearchConfig) -> str:
    """`cfg` as the [search] table of a launch file."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in cfg.to_dict().items() if k != "concat_mode"]
    return "[search]\n" + "\n".join(lines) + "\n"


def test_sigkill_with_local_jobs_in_flight_then_resume(tmp_path: Path) -> None:
    cfg = TINY.replace(cycles=2)
    reference = dumps(run_search(tmp_path / "ref.h5", cfg, DEBUG))
    config = tmp_path / "run.toml"
    config.write_text(
        _search_table(cfg) + '[execution]\nexecutor = "local"\n'
        "dryrun_sleep_s = 1.0\n[slurm]\nmax_concurrent = 4\n"
    )
    path = tmp_path / "run.h5"
    driver = _launch_cli(path, config)
    try:
        _wait_for(lambda: _submitted_jobs(path) > 0, 120)  # jobs are in flight
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    events: list[SearchEvent] = []
    state = run_search(path, None, None, events.append)
    assert dumps(state) == reference
    resumed = next(e for e in events if e.kind == "resumed" and "reconciled" in e.message)
    assert resumed.data["alive"] + resumed.data["ingested"] > 0  # re-attached, not resubmitted


@pytest.mark.slow
def test_tiny_training_killed_and_resumed(tmp_path: Path) -> None:
    """Real training (5 channels, 8 px, 3 cells, 1-epoch segments, 200 images) on the local
    executor; the driver is SIGKILLed once mid-search and resumed: same final state."""
    cfg = (
        "[search]\ncycles = 1\ninitial_population = 2\ncontinue_p20 = 1\ncontinue_p40 = 0\n"
        "mothers_p20 = 1\nmothers_p40 = 0\nmothers_p60 = 0\nsegments = 3\nsegment_epochs = 1\n"
        'setting = "c6r4s0e3"\ndataset = "synthetic"\ndata_dir = "data"\n'
        "synthetic_train = 200\nsynthetic_test = 50\n"
        "[train]\nlayers = 3\nrecipe = { batch_size = 50 }\n"
        '[execution]\nexecutor = "local"\ndevice = "cpu"\n[slurm]\nmax_concurrent = 2\n'
    )
    config = tmp_path / "tiny.toml"
    config.write_text(cfg)
    path = tmp_path / "run.h5"
    driver = _launch_cli(path, config)
    try:
        _wait_for(lambda: _submitted_jobs(path) > 0, 120)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    state = run_search(path, None)
    assert [n.segments_done for n in state.networks.values()] == [2, 1, 1]
    assert all(n.status == "ok" and n.checkpoint_sha256 for n in state.networks.values())
    # The same search uninterrupted, in another directory: identical scores and state.
    other = tmp_path / "again"
    other.mkdir()
    (other / "tiny.toml").write_text(cfg)
    driver = _launch_cli(other / "run.h5", other / "tiny.toml")
    assert driver.wait(timeout=300) == 0
    again = StateStore(other / "run.h5").load()
    assert dumps(again, checkpoints=False) == dumps(state, checkpoints=False)


# --- bad input --------------------------------------------------------------------------------


def test_missing_and_unreadable_state_files(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="does not exist; start a run with"):
        run_search(tmp_path / "nope.h5", None)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file")
    with pytest.raises(StateError, match="cannot be loaded"):
        run_search(garbage, None)
    assert garbage.read_bytes() == b"not an HDF5 file"


def test_truncated_state_falls_back_to_previous_snapshot(tmp_path: Path, reference: str) -> None:
    path = tmp_path / "run.h5"
    assert crash_in_child(path, SMALL, "after_cycle_saved:2") == 137
    path.write_bytes(path.read_bytes()[:1000])  # a disk that lost the end of the file
    events: list[SearchEvent] = []
    state = run_search(path, None, None, events.append)
    warning = next(e for e in events if e.kind == "warning")
    assert "continuing from the previous snapshot" in warning.message
    assert dumps(state) == reference


def test_second_driver_is_refused_with_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    run_search(path, SMALL.replace(cycles=0), DEBUG)
    before = path.read_bytes()
    with acquire_lock(path):
        assert summarize(path).driver["pid"] == os.getpid()
        with pytest.raises(StateError, match=rf"pid {os.getpid()}"):
            run_search(path, None)
    assert path.read_bytes() == before


def test_missing_data_directory_writes_nothing(tmp_path: Path) -> None:
    cfg = SearchConfig(dataset="cifar10", data_dir=str(tmp_path / "no-such-dir"))
    with pytest.raises(DataError, match="no-such-dir does not exist"):
        run_search(tmp_path / "run.h5", cfg, DEBUG)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- faulty jobs ------------------------------------------------------------------------------


def _faults(*faults: DryrunFault, executor: str = "debug", **extra: float) -> ExecOptions:
    return ExecOptions(executor=executor).updated({"faults": faults, **extra})


def test_crashing_job_is_retried_then_marked_failed(tmp_path: Path) -> None:
    cfg = TINY.replace(cycles=1, max_attempts=2)
    events: list[SearchEvent] = []
    faults = _faults(DryrunFault("crash", -1, 0), DryrunFault("crash", 0, 1, attempts=1))
    state = run_search(tmp_path / "run.h5", cfg, faults, events.append)
    first, second = list(state.networks)[0], state.cycles[1].continued[1][0]
    assert state.networks[first].status == "failed" and state.networks[first].attempts == 2
    assert state.networks[first].scores[0] == WORST_SCORE
    assert state.jobs[(second, 2)].attempt == 2 and state.jobs[(second, 2)].state == "done"
    assert [e.kind for e in events].count("retry") == 2  # network 1 once, network 2 once
    assert any(e.kind == "failed" and e.data["arch_id"] == first for e in events)


def test_diverged_job_scores_worst_and_is_not_retried(tmp_path: Path) -> None:
    state = run_search(
        tmp_path / "run.h5", TINY.replace(cycles=0), _faults(DryrunFault("diverge", -1, 1))
    )
    net = list(state.networks.values())[1]
    assert net.status == "diverged" and net.scores[0] == WORST_SCORE and net.attempts == 1


def test_hanging_job_is_cancelled_past_its_time_limit_and_retried(tmp_path: Path) -> None:
    """The hung first attempt is the deterministic trigger: it never ends, so it is cancelled
    once its limit passes. The limit is generous (60 s): the retry, whose only work is a
    worker's start-up (importing torch, several seconds on a loaded 2-core machine), stays far
    below it (a 1-second limit once cancelled retries too, and 20 s did under a load of 15)."""
    events: list[SearchEvent] = []
    options = _faults(
        DryrunFault("hang", -1, 0, attempts=1),
        executor="local",
        job_timeout_s=60.0,
        max_concurrent=2,
    )
    state = run_search(
        tmp_path / "run.h5", TINY.replace(cycles=0, initial_population=2), options, events.append
    )
    first = list(state.networks.values())[0]
    assert first.status == "ok" and first.attempts == 2
    assert [e.kind for e in events].count("timeout") == 1
