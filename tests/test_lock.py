"""The driver lock: one driver per state file, stale locks taken over, live ones refused."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from econas_hpc.errors import StateError
from econas_hpc.store.lock import acquire_lock, lock_path_for


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def _write_lock(path: Path, **fields: object) -> None:
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "job_id": "",
        "started": "2000-01-01T00:00:00+00:00",
        "heartbeat_unix": time.time(),
        "token": "x",
    }
    info.update(fields)
    lock_path_for(path).write_text(json.dumps(info))


def test_second_acquire_is_refused_with_holder_info(tmp_path: Path) -> None:
    state = tmp_path / "run1.h5"
    with acquire_lock(state, job_id="77") as lock:
        assert lock.path == tmp_path / "run1.h5.lock"
        held = json.loads(lock.path.read_text())
        assert held["pid"] == os.getpid() and held["job_id"] == "77"
        with pytest.raises(StateError) as info:
            acquire_lock(state)
        message = str(info.value)
        for part in (
            socket.gethostname(),
            f"pid {os.getpid()}",
            "job 77",
            held["started"],
            "delete the lock file",
        ):
            assert part in message
    assert not lock.path.exists()  # released on exit
    acquire_lock(state).release()


def test_stale_lock_of_dead_pid_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "run1.h5"
    dead = _dead_pid()
    _write_lock(state, pid=dead)
    with caplog.at_level(logging.WARNING):
        lock = acquire_lock(state)
    assert f"process {dead} on this host is gone" in caplog.text
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock.path.exists()


def test_other_host_is_live_until_its_heartbeat_is_old(tmp_path: Path) -> None:
    state = tmp_path / "run1.h5"
    _write_lock(state, host="node-elsewhere", pid=1)
    with pytest.raises(StateError, match="host node-elsewhere, pid 1"):
        acquire_lock(state)
    _write_lock(state, host="node-elsewhere", pid=1, heartbeat_unix=time.time() - 3600)
    acquire_lock(state, stale_after_s=600).release()


def test_requeued_job_takes_over_its_own_lock(tmp_path: Path) -> None:
    state = tmp_path / "run1.h5"
    _write_lock(state, host="node-before-requeue", job_id="123")
    acquire_lock(state, job_id="123").release()


def test_release_leaves_a_foreign_lock_alone(tmp_path: Path) -> None:
    state = tmp_path / "run1.h5"
    lock = acquire_lock(state)
    _write_lock(state, host="node-elsewhere", token="someone-else")
    lock.release()
    assert lock_path_for(state).exists()
    with pytest.raises(StateError, match="no longer held"):
        lock.refresh()


def test_refresh_updates_the_heartbeat(tmp_path: Path) -> None:
    with acquire_lock(tmp_path / "run1.h5") as lock:
        before = json.loads(lock.path.read_text())["heartbeat_unix"]
        time.sleep(0.01)
        lock.refresh()
        assert json.loads(lock.path.read_text())["heartbeat_unix"] > before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run1.h5.lock"]
