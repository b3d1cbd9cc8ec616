"""Faults outside the data: a full disk during a save, and silent corruption of a state file.

A full disk is tested twice: on a real, tiny tmpfs (skipped only where it cannot be mounted) and
by a deterministic fault injection (`fsync` failing with ENOSPC, as it does on NFS), so that
the test runs everywhere. Corruption: single 8-byte flips all over a state file must each give
a clean one-line error, a fallback to `.prev` that `status` and `best` report, or the very same
state; none may change the loaded state silently.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h5py
import pytest

from econas_hpc import fsio
from econas_hpc.cli import EXIT_ENVIRONMENT, main
from econas_hpc.errors import StateError
from econas_hpc.fsio import NoSpaceError
from econas_hpc.records import RunState
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.dryrun import new_state, simulate_search
from econas_hpc.search.summary import best_genotypes, summarize
from econas_hpc.store.snapshot import USERBLOCK, stamp
from econas_hpc.store.state import StateStore

NOW = "2000-01-01T00:00:00+00:00"
FLIPS = 162


def _dump(state: RunState) -> str:
    return json.dumps(state.to_dict(), sort_keys=True)


def _store(path: Path) -> StateStore:
    return StateStore(path, pools=evo.current_pools)


@pytest.fixture(scope="module")
def states() -> tuple[RunState, RunState]:
    """(older, newer): a freshly planned run and the same run three cycles on."""
    cfg = SearchConfig(cycles=3)
    return new_state(cfg, NOW), simulate_search(cfg)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- a full disk ------------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        pytest.skip(f"mount cannot run here: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def _fill(folder: Path) -> Path:
    """A file that takes every free byte of `folder`'s file system."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0"):
                pass
    finally:
        os.close(fd)
    return filler


def _assert_full_disk_refused(store: StateStore, older: RunState, newer: RunState) -> None:
    with pytest.raises(NoSpaceError) as info:
        store.save(newer)
    message = str(info.value)
    assert "\n" not in message and "no space left" in message and str(store.path) in message
    assert _leftovers(store.path.parent) == []
    assert _dump(store.load()) == _dump(older) and store.loaded_from == store.path


def test_full_tmpfs_is_one_line_and_keeps_the_last_good_state(
    tmp_path: Path, states: tuple[RunState, RunState]
) -> None:
    older, newer = states
    with _tmpfs(tmp_path / "disk", "512k") as disk:
        store = _store(disk / "run1.h5")
        store.save(older)
        store.save(older)  # so that there is a .prev too
        prev_bytes = store.prev_path.read_bytes()
        filler = _fill(disk)
        _assert_full_disk_refused(store, older, newer)
        assert store.prev_path.read_bytes() == prev_bytes
        filler.unlink()  # space again: the next save goes through
        store.save(newer)
        assert _dump(store.load()) == _dump(newer)
        assert _dump(StateStore(store.prev_path).load()) == _dump(older)


def test_injected_enospc_is_one_line_and_keeps_the_last_good_state(
    tmp_path: Path, states: tuple[RunState, RunState], monkeypatch: pytest.MonkeyPatch
) -> None:
    older, newer = states
    store = _store(tmp_path / "run1.h5")
    store.save(older)
    store.save(older)
    prev_bytes = store.prev_path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsio.os, "fsync", full)
    _assert_full_disk_refused(store, older, newer)
    assert store.prev_path.read_bytes() == prev_bytes
    monkeypatch.undo()
    store.save(newer)
    assert _dump(store.load()) == _dump(newer)


def test_cli_full_disk_exits_3_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsio.os, "fsync", full)
    argv = ["launch", "--state", "state/r.h5", "--cycles", "1", "--executor", "debug"]
    assert main([*argv, "--dry-run"]) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left" in err[0], err
    assert not StateStore(tmp_path / "state" / "r.h5").exists()
    assert _leftovers(tmp_path / "state") == []


# --- silent corruption ------------------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        data = handle.read(8)
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in data))


def test_every_single_flip_is_an_error_a_reported_fallback_or_harmless(
    tmp_path: Path, states: tuple[RunState, RunState]
) -> None:
    older, newer = states
    store = _store(tmp_path / "run1.h5")
    store.save(older)
    store.save(newer)
    original = store.path.read_bytes()
    outcomes = {"fallback": 0, "same": 0}
    for k in range(FLIPS):
        offset = k * (len(original) - 8) // (FLIPS - 1)
        flipped = bytes(b ^ 0xFF for b in original[offset : offset + 8])
        store.path.write_bytes(original[:offset] + flipped + original[offset + 8 :])
        reader = StateStore(store.path)
        state = reader.load()  # a good .prev is there: never an error
        if reader.loaded_from == reader.prev_path:
            assert reader.recovery and "\n" not in reader.recovery, k
            assert _dump(state) == _dump(older), k
            outcomes["fallback"] += 1
        else:
            assert reader.recovery == "" and _dump(state) == _dump(newer), k
            outcomes["same"] += 1
    # the flips hit the tables and attributes, not only padding: most are caught
    assert outcomes["fallback"] > FLIPS // 2, outcomes


def test_a_silent_change_without_a_prev_is_one_line(
    tmp_path: Path, states: tuple[RunState, RunState]
) -> None:
    store = _store(tmp_path / "run1.h5")
    store.save(states[1])
    with h5py.File(store.path, "r+") as handle:
        handle["networks/attempts"][0] += 1
    with pytest.raises(StateError, match="checksum mismatch.*prev is missing") as info:
        store.load()
    assert "\n" not in str(info.value)


def test_status_and_best_report_the_fallback(
    tmp_path: Path, states: tuple[RunState, RunState]
) -> None:
    older, newer = states
    store = _store(tmp_path / "run1.h5")
    store.save(older)
    store.save(newer)
    clean = summarize(store.path)
    assert clean.recovered_from_prev is False and clean.recovery == ""
    with h5py.File(store.path, "r+") as handle:  # a silent change: the checksum no longer holds
        handle.attrs["seed"] = 12345
    status, best = summarize(store.path), best_genotypes(store.path)
    for flag, why in (
        (status.recovered_from_prev, status.recovery),
        (best["recovered_from_prev"], best["recovery"]),
    ):
        assert flag is True
        assert "checksum mismatch" in why and "run1.h5.prev" in why
    assert status.loaded_from == str(store.prev_path)


def test_cli_status_and_best_say_they_recovered(
    tmp_path: Path,
    states: tuple[RunState, RunState],
    capsys: pytest.CaptureFixture[str],
) -> None:
    older, newer = states
    store = _store(tmp_path / "run1.h5")
    store.save(older)
    store.save(newer)
    _flip(store.path, store.path.stat().st_size // 2)
    assert main(["status", "--json", str(store.path)]) == 0
    status = json.loads(capsys.readouterr().out)
    if not status["recovered_from_prev"]:  # the flip hit padding: make it a real change
        with h5py.File(store.path, "r+") as handle:
            handle.attrs["cycle"] = 99
        assert main(["status", "--json", str(store.path)]) == 0
        status = json.loads(capsys.readouterr().out)
    assert status["recovered_from_prev"] is True and status["recovery"]
    assert main(["status", str(store.path)]) == 0
    assert "recovered" in capsys.readouterr().out
    assert main(["best", "--json", str(store.path)]) == 0
    assert json.loads(capsys.readouterr().out)["recovered_from_prev"] is True
    assert main(["best", str(store.path)]) == 0
    assert "recovered from the previous snapshot" in capsys.readouterr().out


def _bad_config_json(path: Path) -> None:
    """A file whose config_json is not JSON but whose checksum holds (a buggy writer)."""
    with h5py.File(path, "r+") as handle:
        handle.attrs["config_json"] = "{not json"
    path.write_bytes(stamp(path.read_bytes()[USERBLOCK:]))


def test_non_json_config_is_one_line_and_falls_back_to_prev(
    tmp_path: Path, states: tuple[RunState, RunState]
) -> None:
    older, newer = states
    store = _store(tmp_path / "run1.h5")
    store.save(older)
    store.save(newer)
    _bad_config_json(store.path)
    assert _dump(store.load()) == _dump(older) and store.loaded_from == store.prev_path
    assert "config_json is not JSON" in store.recovery and "\n" not in store.recovery
    _bad_config_json(store.prev_path)
    with pytest.raises(StateError, match="config_json is not JSON") as info:
        store.load()
    assert "\n" not in str(info.value)
