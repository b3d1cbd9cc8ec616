"""The HDF5 state file: round trip, schema refusal, `.prev` fallback, atomicity, plain reading."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from econas_hpc.errors import StateError
from econas_hpc.records import RunState
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.dryrun import new_state, simulate_search
from econas_hpc.store.retrain_table import RetrainRecord, read_retrain_table, write_retrain_table
from econas_hpc.store.snapshot import USERBLOCK, stamp
from econas_hpc.store.state import SCHEMA_DOC, StateStore

ROOT = Path(__file__).resolve().parents[1]
NOW = "2000-01-01T00:00:00+00:00"


def _dump(state: RunState) -> str:
    return json.dumps(state.to_dict(), sort_keys=True)


@pytest.fixture(scope="module")
def busy_state() -> RunState:
    """A run in the middle of cycle 6: planned jobs, a submitted one, failures, checkpoints."""
    cfg = SearchConfig(cycles=6)
    state = simulate_search(cfg)
    evo.apply_plan(state, evo.plan_cycle(state, cfg, evo.rng_from_json(state.rng_state)))
    jobs = evo.open_jobs(state)
    evo.record_submission(state, jobs[0].arch_id, jobs[0].segment, "4242_7", NOW)
    evo.apply_result(state, jobs[1].arch_id, jobs[1].segment, 0.0, "diverged", 6)
    first = next(iter(state.networks))
    state.networks[first] = replace(
        state.networks[first], checkpoint_path="ckpt/x/ep019.pt", checkpoint_sha256="ab" * 32
    )
    state.cycles[0] = replace(state.cycles[0], proxy_rank_spearman=(0.5, float("nan")))
    return state


def test_round_trip_with_nans_and_open_jobs(tmp_path: Path, busy_state: RunState) -> None:
    store = StateStore(tmp_path / "run1.h5")
    assert not store.exists()
    store.save(busy_state)
    loaded = store.load()
    assert _dump(loaded) == _dump(busy_state)
    assert store.loaded_from == store.path
    assert any(np.isnan(n.scores[2]) for n in loaded.networks.values())
    assert list(loaded.networks) == list(busy_state.networks)  # birth order kept
    assert evo.is_planned(loaded) and len(evo.open_jobs(loaded)) == len(evo.open_jobs(busy_state))


def test_empty_tables_round_trip(tmp_path: Path) -> None:
    state = new_state(SearchConfig(strategy="single"), NOW)
    store = StateStore(tmp_path / "empty.h5", pools=evo.current_pools)
    store.save(state)
    assert _dump(store.load()) == _dump(state)
    with h5py.File(store.path, "r") as handle:
        assert handle["networks/scores"].shape == (0, 1)
        assert handle["jobs/arch_id"].shape == (0,)
        assert handle["pools/P60"].shape == (0,)


def test_newer_schema_is_refused(tmp_path: Path, busy_state: RunState) -> None:
    store = StateStore(tmp_path / "run1.h5")
    store.save(busy_state)
    with h5py.File(store.path, "r+") as handle:
        handle.attrs["schema_version"] = 99
    store.path.write_bytes(stamp(store.path.read_bytes()[USERBLOCK:]))  # intact, only newer
    with pytest.raises(
        StateError, match=r"schema_version 99; .*reads schema version\(s\) 1: upgrade"
    ):
        store.load()


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.h5"
    with pytest.raises(StateError, match=f"state file {path} does not exist"):
        StateStore(path).load()


def test_truncated_main_falls_back_to_prev(
    tmp_path: Path, busy_state: RunState, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(tmp_path / "run1.h5")
    older = new_state(SearchConfig(), NOW)
    store.save(older)
    store.save(busy_state)
    assert store.prev_path.exists()
    size = store.path.stat().st_size
    with store.path.open("r+b") as handle:
        handle.truncate(size // 2)
    with caplog.at_level(logging.WARNING):
        state, used = store.load_with_source()
    assert used == store.prev_path and _dump(state) == _dump(older)
    assert "unreadable" in caplog.text and "previous snapshot" in caplog.text
    # a save after a fallback keeps the good .prev instead of the corrupt main file
    store.save(busy_state)
    assert _dump(StateStore(store.prev_path).load()) == _dump(older)
    store.prev_path.write_bytes(b"garbage")
    store.path.write_bytes(b"")
    with pytest.raises(StateError, match="cannot be loaded: .*run1.h5 is unreadable"):
        store.load()


def test_stray_tmp_is_ignored_and_never_written(tmp_path: Path, busy_state: RunState) -> None:
    store = StateStore(tmp_path / "run1.h5")
    store.save(busy_state)
    store.tmp_path.write_bytes(b"half a file")
    assert _dump(store.load()) == _dump(busy_state)
    store.save(busy_state)
    # saves use no predictable temporary name: a file (or a planted link) there is not touched
    assert store.tmp_path.read_bytes() == b"half a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1.h5", "run1.h5.prev", "run1.h5.tmp"]


_PLAIN_READER = textwrap.dedent(
    """
    import sys, h5py
    with h5py.File(sys.argv[1], "r") as f:
        assert f.attrs["schema_version"] == 1
        ids = [s.decode() for s in f["networks/arch_id"][()]]
        scores = f["networks/scores"][()]
        status = [s.decode() for s in f["networks/status"][()]]
        children = f["cycles/children"].asstr()[()]
        print(len(ids), scores.shape[1], status.count("ok"), len(f["pools/P20"]), children[1])
        print(f["networks/scores"].attrs["description"])
    assert not any(m.startswith("econas_hpc") for m in sys.modules)
    """
)


def test_readable_with_plain_h5py(tmp_path: Path, busy_state: RunState) -> None:
    store = StateStore(tmp_path / "run1.h5", pools=evo.current_pools)
    store.save(busy_state)
    proc = subprocess.run(
        [sys.executable, "-c", _PLAIN_READER, str(store.path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    first, second = proc.stdout.splitlines()
    ok = sum(n.status == "ok" for n in busy_state.networks.values())
    pool = evo.pools(busy_state, SearchConfig(), busy_state.cycle)["P20"]
    child_ids = ",".join(busy_state.cycles[1].children)
    assert first == f"{len(busy_state.networks)} 3 {ok} {len(pool)} {child_ids}"
    assert "NaN = not yet" in second
    assert "/networks/genotype_json" in SCHEMA_DOC and "/cycles/mothers" in SCHEMA_DOC


def test_h5dump_shows_the_tables(tmp_path: Path, busy_state: RunState) -> None:
    if shutil.which("h5dump") is None:
        pytest.skip("h5dump is not installed")
    store = StateStore(tmp_path / "run1.h5", pools=evo.current_pools)
    store.save(busy_state)
    out = subprocess.run(
        ["h5dump", "-H", str(store.path)], capture_output=True, text=True, check=True
    ).stdout
    for name in ("networks", "arch_id", "scores", "jobs", "cycles", "pools", "schema_doc"):
        assert name in out


_WRITER = textwrap.dedent(
    """
    import sys
    from econas_hpc.search.config import SearchConfig
    from econas_hpc.search.dryrun import simulate_search
    from econas_hpc.store.state import StateStore
    state = simulate_search(SearchConfig(cycles=4))
    store = StateStore(sys.argv[1])
    for i in range(50):
        state.updated = str(i)
        store.save(state)
    """
)


def test_reader_never_sees_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "run1.h5"
    expected = simulate_search(SearchConfig(cycles=4))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], env=env, cwd=ROOT)
    store = StateStore(path)
    seen: list[int] = []
    try:
        while writer.poll() is None or not seen:
            if not path.exists():
                time.sleep(0.01)  # the writer is still starting
                continue
            state = store.load()
            assert store.loaded_from == path  # never needed the fallback
            assert len(state.networks) == len(expected.networks)
            seen.append(int(state.updated))
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert seen == sorted(seen) and len(seen) >= 2
    assert int(store.load().updated) == 49


def test_groups_of_other_writers_survive_a_save(tmp_path: Path, busy_state: RunState) -> None:
    """`retrain` writes `/retrain` into the run file; the driver's next save must keep it."""
    store = StateStore(tmp_path / "run.h5")
    store.save(busy_state)
    write_retrain_table(store.path, [RetrainRecord("abc", 0, 1, 50.0, "c0r0s0e600")])
    store.save(busy_state)
    assert [r.arch_id for r in read_retrain_table(store.path)] == ["abc"]
    assert _dump(store.load()) == _dump(busy_state) and store.loaded_from == store.path
    with h5py.File(store.path, "r") as handle:
        assert handle["retrain/arch_id"].asstr()[0] == "abc"
        assert "networks" in handle
