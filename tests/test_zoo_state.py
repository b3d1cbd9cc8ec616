"""The zoo's HDF5 file (store/zoo_state.py): round trip, schema, atomic snapshots, fallback."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import h5py
import pytest

from econas_hpc.errors import StateError
from econas_hpc.store.snapshot import USERBLOCK, stamp
from econas_hpc.store.zoo_state import (
    NAN,
    SCHEMA_DOC,
    ZOO_SCHEMA_VERSION,
    ZooCost,
    ZooNetwork,
    ZooResult,
    ZooSetting,
    ZooState,
    ZooStore,
)


def _zoo() -> ZooState:
    zoo = ZooState(
        config={
            "kind": "econas-zoo",
            "size": 2,
            "reference": "c0r0s0e600",
            "train": {"layers": 3, "dataset": "synthetic"},
        }
    )
    zoo.networks = {a: ZooNetwork(a, f'{{"id": "{a}"}}') for a in ("aaaaaaaaaaaa", "bbbbbbbbbbbb")}
    zoo.settings = {
        "c0r0s0e600": ZooSetting("c0r0s0e600", 0, 0, 0, 600, "original", True, 50000, "t0"),
        "c4r4s0e60": ZooSetting("c4r4s0e60", 4, 4, 0, 60, "reduced", False, 50000, "t1"),
    }
    zoo.costs = {
        ("aaaaaaaaaaaa", "c0r0s0e600"): ZooCost(3.3e6, 5.28e8),
        ("aaaaaaaaaaaa", "c4r4s0e60"): ZooCost(2.4e5, 2.55e6),
        ("bbbbbbbbbbbb", "c0r0s0e600"): ZooCost(3.1e6, NAN),  # one unknown value stays NaN
    }
    zoo.results = {
        ("aaaaaaaaaaaa", "c0r0s0e600"): ZooResult(
            "aaaaaaaaaaaa", "c0r0s0e600", "ok", 97.1, 97.3, 600, 3600.0, 3600.5, "cuda:0 H100"
        ),
        ("bbbbbbbbbbbb", "c4r4s0e60"): ZooResult(
            "bbbbbbbbbbbb", "c4r4s0e60", "diverged", NAN, NAN, 3, NAN, 2.0, "cpu", "nan loss"
        ),
    }
    return zoo


def _plain(value: Any) -> Any:
    """Comparable form: dataclasses as dicts, NaN as a marker (NaN != NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def _same(a: ZooState, b: ZooState) -> None:
    for name in ("config", "networks", "settings", "costs", "results", "created"):
        assert _plain(getattr(a, name)) == _plain(getattr(b, name)), name


def test_round_trip(tmp_path: Path) -> None:
    zoo = _zoo()
    store = ZooStore(tmp_path / "zoo.h5")
    store.save(zoo)
    loaded = ZooStore(tmp_path / "zoo.h5").load()
    _same(zoo, loaded)
    assert isinstance(loaded.settings["c0r0s0e600"].reference, bool)
    assert loaded.settings["c0r0s0e600"].reference and not loaded.settings["c4r4s0e60"].reference
    # The unknown cost pair (bbbb, c4r4s0e60) is not invented on load.
    assert ("bbbbbbbbbbbb", "c4r4s0e60") not in loaded.costs


def test_file_is_self_describing(tmp_path: Path) -> None:
    ZooStore(tmp_path / "zoo.h5").save(_zoo())
    with h5py.File(tmp_path / "zoo.h5", "r") as handle:
        assert int(handle.attrs["schema_version"]) == ZOO_SCHEMA_VERSION
        assert handle.attrs["schema_doc"] == SCHEMA_DOC
        assert "config_json" in handle.attrs
        assert handle["networks/macs"].shape == (2, 2)
        for group in ("networks", "settings", "results"):
            for name, dataset in handle[group].items():
                assert dataset.attrs["description"], f"/{group}/{name} has no description"
        assert list(handle["results/status"].asstr()[()]) == ["ok", "diverged"]
    for column in ("test_acc", "gpu_s", "train_images", "genotype_json", "macs"):
        assert column in SCHEMA_DOC


def test_empty_zoo_round_trip(tmp_path: Path) -> None:
    zoo = ZooState(config={"size": 0})
    ZooStore(tmp_path / "empty.h5").save(zoo)
    _same(zoo, ZooStore(tmp_path / "empty.h5").load())


def test_previous_snapshot_kept_and_used_when_main_is_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ZooStore(tmp_path / "zoo.h5")
    first = _zoo()
    store.save(first)
    second = _zoo()
    second.config["note"] = "second"
    store.save(second)
    assert store.prev_path.exists()
    store.path.write_bytes(b"torn")  # a main file that cannot be read
    with caplog.at_level(logging.WARNING):
        loaded = ZooStore(store.path).load()
    assert "note" not in loaded.config  # the first snapshot, from .prev
    assert "previous snapshot" in caplog.text


def test_stray_tmp_is_ignored_and_never_written(tmp_path: Path) -> None:
    store = ZooStore(tmp_path / "zoo.h5")
    store.save(_zoo())
    (tmp_path / "zoo.h5.tmp").write_bytes(b"half a file")
    _same(_zoo(), store.load())
    store.save(_zoo())
    # Saves use no predictable temporary name: a file (or a planted link) there is not touched.
    assert (tmp_path / "zoo.h5.tmp").read_bytes() == b"half a file"


def test_missing_and_newer_schema_raise(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="does not exist"):
        ZooStore(tmp_path / "nope.h5").load()
    store = ZooStore(tmp_path / "zoo.h5")
    store.save(_zoo())
    with h5py.File(store.path, "r+") as handle:
        handle.attrs["schema_version"] = ZOO_SCHEMA_VERSION + 1
    with pytest.raises(StateError, match="checksum mismatch"):
        store.load()  # a damaged file: its checksum no longer holds
    # an intact file of a newer schema
    store.path.write_bytes(stamp(store.path.read_bytes()[USERBLOCK:]))
    with pytest.raises(StateError, match="schema_version 2; this econas-hpc"):
        store.load()
