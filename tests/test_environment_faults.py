"""Faults outside the network never change a search's answer (issue 15, items 2 and 5).

Real tiny training (3 cells, 8 px, 1-epoch segments, 200 images in CIFAR-10's own file format)
on the real local executor, driven through the command line:

- an empty `--data` folder: the driver stops with exit code 3 and one line naming the cause,
  nothing is failed or charged, `status` names the waiting segments; `resume` after the data is
  in place ends with the same best networks as an uninterrupted run;
- Ctrl-C (SIGINT to the driver) three times, each time resumed: exit 130 without tracebacks,
  nothing failed, the same best; SIGTERM exits 3 and releases the driver lock;
- a deleted network folder and a corrupt latest checkpoint between two cycles: the lost
  segments are recomputed (training is deterministic), nothing failed, the same best.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from econas_hpc.data.synthetic import write_synthetic_cifar
from econas_hpc.errors import EXIT_ENVIRONMENT
from econas_hpc.records import RunState
from econas_hpc.search import evolution as evo
from econas_hpc.search.reconcile import CRASH_ENV
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.store.lock import lock_path_for
from econas_hpc.store.state import StateStore
from econas_hpc.train import checkpoint as ckpt

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 200, 50
TIMEOUT_S = 600  # generous: a loaded 2-core machine; nothing here depends on speed


def _config(data: Path) -> str:
    return (
        "[search]\ncycles = 2\ninitial_population = 2\ncontinue_p20 = 1\ncontinue_p40 = 1\n"
        "mothers_p20 = 1\nmothers_p40 = 0\nmothers_p60 = 0\nsegments = 3\nsegment_epochs = 1\n"
        f'setting = "c6r4s0e3"\ndataset = "cifar10"\ndata_dir = "{data}"\n'
        "[train]\nlayers = 3\nrecipe = { batch_size = 50 }\n"
        '[execution]\nexecutor = "local"\ndevice = "cpu"\n[slurm]\nmax_concurrent = 2\n'
    )


def _env(**extra: str) -> dict[str, str]:
    # No CIFAR-10 download from here: a proxy that refuses at once, whatever the network.
    proxy = "http://127.0.0.1:9"
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "http_proxy": proxy,
        "https_proxy": proxy,
        **extra,
    }


def _cli(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "econas_hpc", *args],
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=TIMEOUT_S)
    return proc.returncode, err


def _launch(run: Path, data: Path, **env: str) -> subprocess.Popen[str]:
    config = run.parent / "run.toml"
    config.write_text(_config(data))
    return _cli("launch", "--state", str(run), "--config", str(config), **env)


def _answer(state: RunState) -> list[tuple[str, float]]:
    return evo.final_ranking(state, state.config, 5)


def _assert_nothing_failed(state: RunState) -> None:
    assert [n.status for n in state.networks.values()] == ["ok"] * len(state.networks)
    assert all(j.state == "done" and not j.cause for j in state.jobs.values())


def _data(folder: Path) -> Path:
    write_synthetic_cifar(folder, n_train=N_TRAIN, n_test=N_TEST, seed=0)
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, float]]:
    """The uninterrupted run's best networks (same data, same seed)."""
    root = tmp_path_factory.mktemp("reference")
    run = root / "run.h5"
    code, err = _finish(_launch(run, _data(root / "data")))
    assert code == 0, err
    state = StateStore(run).load()
    _assert_nothing_failed(state)
    answer = _answer(state)
    assert answer
    return answer


def _wait_for(predicate: object, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():  # type: ignore[operator]
        assert proc.poll() is None, f"the driver ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _holds_lock(run: Path, pid: int) -> bool:
    try:
        return json.loads(lock_path_for(run).read_text()).get("pid") == pid
    except (OSError, ValueError):
        return False


def _in_flight(run: Path) -> bool:
    try:
        state = StateStore(run).load()
    except Exception:  # not written yet
        return False
    return any(j.state in ("submitted", "running") for j in state.jobs.values())


def test_empty_data_folder_stops_and_resume_after_the_fix_ends_the_same(
    tmp_path: Path, reference: list[tuple[str, float]]
) -> None:
    run, data = tmp_path / "run.h5", tmp_path / "data"
    data.mkdir()
    code, err = _finish(_launch(run, data))
    assert code == EXIT_ENVIRONMENT, err
    last = err.strip().splitlines()[-1]
    assert "data folder unreadable" in last and "resume" in last and "Traceback" not in err
    state = StateStore(run).load()
    assert all(n.status == "pending" for n in state.networks.values())
    assert {j.cause for j in state.jobs.values()} == {"data"}
    assert all(j.state == "planned" for j in state.jobs.values())
    status = subprocess.run(
        [sys.executable, "-m", "econas_hpc", "status", "--json", str(run)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    shown = json.loads(status.stdout)
    assert shown["waiting"] == [
        {"cause": "data", "label": shown["waiting"][0]["label"], "segments": 2}
    ]
    assert "data folder unreadable" in shown["waiting"][0]["label"]
    assert shown["segments"]["failed"] == 0
    _data(data)  # the fix
    code, err = _finish(_cli("resume", str(run)))
    assert code == 0, err
    state = StateStore(run).load()
    _assert_nothing_failed(state)
    assert _answer(state) == reference


def test_ctrl_c_three_times_then_resume_charges_nothing(
    tmp_path: Path, reference: list[tuple[str, float]]
) -> None:
    run = tmp_path / "run.h5"
    driver = _launch(run, _data(tmp_path / "data"))
    for round_ in range(4):
        if round_:
            driver = _cli("resume", str(run))
        _wait_for(lambda d=driver: _holds_lock(run, d.pid) and _in_flight(run), driver)
        if round_ == 3:
            driver.send_signal(signal.SIGTERM)
            code, err = _finish(driver)
            assert code == EXIT_ENVIRONMENT and "SIGTERM" in err, err
        else:
            driver.send_signal(signal.SIGINT)
            code, err = _finish(driver)
            assert code == 130, err
        assert "Traceback" not in err, err
        assert not lock_path_for(run).exists()  # released: the next driver needs no waiting
    code, err = _finish(_cli("resume", str(run)))
    assert code == 0, err
    state = StateStore(run).load()
    _assert_nothing_failed(state)
    assert _answer(state) == reference


def test_deleted_network_folder_and_corrupt_checkpoint_are_recomputed(
    tmp_path: Path, reference: list[tuple[str, float]]
) -> None:
    run = tmp_path / "run.h5"
    # The driver dies (as SIGKILL leaves it) right after planning cycle 1, before submitting.
    code, err = _finish(_launch(run, _data(tmp_path / "data"), **{CRASH_ENV: "after_plan_saved:1"}))
    assert code == 137, err
    paths = RunPaths.of(run)
    continued = dict(StateStore(run).load().cycles[-1].continued)  # arch_id -> segment it trains
    third = next(a for a, s in continued.items() if s == 3)
    second = next(a for a, s in continued.items() if s == 2)
    # The third segment's start checkpoint (the end of segment 2) is corrupt: one flipped byte.
    newest = ckpt.list_checkpoints(paths.net_dir(third) / "checkpoints")[-1][2]
    assert newest.name.startswith("ep002")
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    # The other continued network's folder is deleted whole.
    shutil.rmtree(paths.net_dir(second))
    code, err = _finish(_cli("resume", str(run)))
    assert code == 0, err
    state = StateStore(run).load()
    _assert_nothing_failed(state)
    assert _answer(state) == reference


def test_a_stop_swallowed_by_a_finalizer_is_raised_at_the_next_tick() -> None:
    """Ctrl-C delivered inside a weakref callback or `__del__` is printed and dropped by Python;
    the driver loop must still stop (this once let a driver finish a run it was told to stop)."""
    from econas_hpc import interrupts
    from econas_hpc.supervise.loop import drive

    class Swallowing:
        def __del__(self) -> None:
            try:
                raise KeyboardInterrupt("stop")  # what a handler raises inside a finalizer
            except KeyboardInterrupt as exc:
                interrupts.record(exc)  # the CLI's handler records it before raising

    class Loop:
        ticks = 0

        def submit(self) -> None:
            self.ticks += 1
            if self.ticks == 1:
                Swallowing()  # collected at once; its exception never reaches the loop

        def ingest(self) -> int:
            return 1

        def finished(self) -> bool:
            return self.ticks >= 5

        def poll(self) -> int:
            return 0

        def save(self, changed: int) -> None:
            pass

    class NoLock:
        def refresh(self) -> None:
            pass

    loop = Loop()
    with pytest.raises(KeyboardInterrupt):
        drive(loop, NoLock(), poll_s=1.0, sleep=lambda s: None)  # type: ignore[arg-type]
    assert loop.ticks == 1  # stopped at the tick after the swallowed stop, not at the end
    interrupts.raise_if_pending()  # consumed: nothing owed any more


def test_a_stop_swallowed_by_a_finalizer_prints_no_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python hands a stop raised inside a finalizer to `sys.unraisablehook`, which prints
    "Exception ignored ... Traceback"; under `stops_cleanly` the hook stays quiet for stops (the
    job loop raises the recorded stop) and passes anything else on."""
    import types

    from econas_hpc.cli._common import stops_cleanly

    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.append(info.exc_value))
    stop, other = KeyboardInterrupt("stop"), ValueError("a real bug")
    with stops_cleanly("run x"):
        for exc in (stop, other):
            sys.unraisablehook(types.SimpleNamespace(exc_value=exc))  # what Python calls
    assert seen == [other]
    sys.unraisablehook(types.SimpleNamespace(exc_value=stop))  # restored afterwards
    assert seen == [other, stop]
