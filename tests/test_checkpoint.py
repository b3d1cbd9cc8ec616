"""Checkpoint files: atomic writes, keep-2 pruning, verified loads, fallback and refusal."""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from econas_hpc.errors import CheckpointError
from econas_hpc.fsio import FileSystemFault
from econas_hpc.train.checkpoint import (
    capture_rng_state,
    checkpoint_digest,
    checkpoint_name,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    restore_rng_state,
    save_checkpoint,
    write_json_atomic,
)

META = {"arch_id": "abc123abc123", "genotype_json": "{}", "setting": "c4r4s0e60", "profile": "x"}


def _payload(epoch: int, step: int = 0) -> dict:
    return {
        "meta": dict(META),
        "epoch": epoch,
        "step": step,
        "model": {"w": torch.full((3,), float(epoch))},
        "rng": {"python": (3, tuple(range(5)), None)},
    }


def test_name_orders_by_position() -> None:
    assert checkpoint_name(3, 0) == "ep003-s00000.pt"
    assert checkpoint_name(12, 345) == "ep012-s00345.pt"
    with pytest.raises(CheckpointError):
        checkpoint_name(-1, 0)


def test_round_trip_and_sidecar(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, 0, _payload(1))
    assert path.name == "ep001-s00000.pt"
    sidecar = tmp_path / "ep001-s00000.pt.sha256"
    digest, name = sidecar.read_text().split()
    assert name == path.name
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == checkpoint_digest(path)
    loaded = load_latest(tmp_path, META)
    assert loaded is not None
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], torch.ones(3))
    assert loaded["path"] == str(path)
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]


def test_keeps_newest_two(tmp_path: Path) -> None:
    for epoch in range(1, 5):
        save_checkpoint(tmp_path, epoch, 0, _payload(epoch))
    save_checkpoint(tmp_path, 4, 7, _payload(4, 7))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "ep004-s00000.pt",
        "ep004-s00000.pt.sha256",
        "ep004-s00007.pt",
        "ep004-s00007.pt.sha256",
    ]
    loaded = load_latest(tmp_path, META)
    assert loaded is not None and (loaded["epoch"], loaded["step"]) == (4, 7)


def test_empty_or_missing_directory(tmp_path: Path) -> None:
    assert load_latest(tmp_path / "absent", META) is None
    assert load_latest(tmp_path, META) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar"])
def test_corrupt_newest_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    save_checkpoint(tmp_path, 1, 0, _payload(1))
    newest = save_checkpoint(tmp_path, 2, 0, _payload(2))
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        newest.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    else:
        (tmp_path / (newest.name + ".sha256")).write_text("0" * 64 + "  x\n")
    with caplog.at_level(logging.WARNING, logger="econas_hpc.train.checkpoint"):
        loaded = load_latest(tmp_path, META)
    assert loaded is not None and loaded["epoch"] == 1
    assert any("ep002-s00000.pt" in rec.getMessage() for rec in caplog.records)


def test_all_corrupt_raises(tmp_path: Path) -> None:
    for epoch in (1, 2):
        path = save_checkpoint(tmp_path, epoch, 0, _payload(epoch))
        path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_latest(tmp_path, META)


def test_incomplete_newest_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save_checkpoint(tmp_path, 1, 0, _payload(1))
    newest = save_checkpoint(tmp_path, 2, 0, _payload(2))
    # The writer died after renaming the .pt but before writing its sidecar.
    (tmp_path / (newest.name + ".sha256")).unlink()
    with caplog.at_level(logging.WARNING):
        loaded = load_latest(tmp_path, META)
    assert loaded is not None and loaded["epoch"] == 1
    assert "incomplete" in caplog.text
    # Only an incomplete checkpoint: nothing usable, but nothing corrupt either.
    (tmp_path / "ep001-s00000.pt.sha256").unlink()
    assert load_latest(tmp_path, META) is None


def test_stray_temporary_files_are_ignored(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, 0, _payload(1))
    (tmp_path / ".ep002-s00000.pt.tmp-999").write_bytes(b"half a file")
    loaded = load_latest(tmp_path, META)
    assert loaded is not None and loaded["epoch"] == 1
    assert [c[:2] for c in list_checkpoints(tmp_path)] == [(1, 0)]


def test_failed_write_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(tmp_path, 1, 0, _payload(1))

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("econas_hpc.fsio.os.replace", broken_replace)
    with pytest.raises(FileSystemFault, match="ep002-s00000.pt"):  # fsio: one line, the path
        save_checkpoint(tmp_path, 2, 0, _payload(2))
    monkeypatch.undo()
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]
    loaded = load_latest(tmp_path, META)
    assert loaded is not None and loaded["epoch"] == 1


@pytest.mark.parametrize("key", ["arch_id", "genotype_json", "setting", "profile"])
def test_mismatch_is_refused(tmp_path: Path, key: str) -> None:
    save_checkpoint(tmp_path, 1, 0, _payload(1))
    expect = dict(META, **{key: "other-value"})
    with pytest.raises(CheckpointError, match=key) as info:
        load_latest(tmp_path, expect)
    assert "other-value" in str(info.value) and repr(META[key]) in str(info.value)


def test_payload_needs_meta(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="meta"):
        save_checkpoint(tmp_path, 1, 0, {"model": {}})


def test_load_checkpoint_without_sidecar_raises(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, 0, _payload(1))
    (tmp_path / (path.name + ".sha256")).unlink()
    with pytest.raises(CheckpointError, match="sidecar"):
        load_checkpoint(path)


def test_write_json_atomic_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "result.json"
    write_json_atomic(path, {"a": [1.5, 2]})
    assert path.read_text().startswith("{") and not list(path.parent.glob(".*tmp*"))
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})
    assert "1.5" in path.read_text()  # the previous complete file is untouched


def test_rng_state_round_trip(tmp_path: Path) -> None:
    state = capture_rng_state()
    save_checkpoint(tmp_path, 1, 0, {"meta": dict(META), "rng": state})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    loaded = load_latest(tmp_path, META)
    assert loaded is not None
    restore_rng_state(loaded["rng"])  # through a weights_only load and back
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]
