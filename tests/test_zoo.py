"""The zoo library: sampling, settings and options, the training plan, result records, report."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from econas_hpc.cluster import tasks
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import ConfigError, StateError
from econas_hpc.search.runfile import ExecOptions
from econas_hpc.space.catalog import ZOO_OPS
from econas_hpc.space.genotype import Genotype
from econas_hpc.store.zoo_state import ZooCost, ZooResult, ZooState, ZooStore
from econas_hpc.study.report import ReportOptions, build_report, entropy_lines
from econas_hpc.study.zoo import Unit, ZooPaths, create_zoo, sample_zoo
from econas_hpc.study.zoo_plan import (
    ZooTrainOptions,
    add_settings,
    plan_units,
    requested_settings,
    resolve_train_options,
    result_record,
    unit_spec,
)
from econas_hpc.study.zoo_runner import ZooTrainRequest, train_zoo
from econas_hpc.train import SegmentResult

TINY = {"layers": 3, "dataset": "synthetic", "synthetic_train": 256, "synthetic_test": 128}


def test_sample_zoo_is_distinct_all_concat_and_seeded() -> None:
    genotypes = sample_zoo(12, nodes=5, ops="zoo13", seed=7)
    assert len({g.arch_id for g in genotypes}) == 12
    for g in genotypes:
        assert g.nodes == 5
        assert {op for op, _ in (*g.normal, *g.reduce)} <= set(ZOO_OPS)
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5, 6)  # supplement C
    assert [g.arch_id for g in sample_zoo(12, 5, "zoo13", 7)] == [g.arch_id for g in genotypes]
    assert [g.arch_id for g in sample_zoo(12, 5, "zoo13", 8)] != [g.arch_id for g in genotypes]
    with pytest.raises(ConfigError, match="op set"):
        sample_zoo(3, 5, "zoo99", 0)
    with pytest.raises(ConfigError, match="size"):
        sample_zoo(0, 5, "zoo13", 0)


def test_create_zoo_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "zoo.h5"
    zoo = create_zoo(path, 3, seed=1)
    assert list(ZooStore(path).load().networks) == list(zoo.networks)
    before = path.read_bytes()
    with pytest.raises(StateError, match=str(path)):
        create_zoo(path, 3, seed=2)
    assert path.read_bytes() == before


def test_paths_and_job_names(tmp_path: Path) -> None:
    paths = ZooPaths.of(tmp_path / "state" / "zoo1.h5")
    unit = Unit("abcdef012345", "c4r4s0e60")
    assert paths.unit_dir(unit) == tmp_path / "state/zoo1.d/units/abcdef012345/c4r4s0e60"
    assert paths.job_name(unit) == "zoo-zoo1-abcdef012345-c4r4s0e60"
    assert paths.report_dir() == tmp_path / "state/zoo1.report"


def test_requested_settings_forms() -> None:
    base = ZooTrainOptions().base()
    assert requested_settings("c4r4s0e60, c0r0s0e30", None, base) == ["c4r4s0e60", "c0r0s0e30"]
    assert requested_settings(None, "c=0,4 e=30", base) == ["c0r0s0e30", "c4r0s0e30"]
    assert requested_settings(None, None, base) == []
    with pytest.raises(ConfigError, match="not both"):
        requested_settings("c4r4s0e60", "c=0 e=1", base)


def test_train_options_are_recorded_then_enforced() -> None:
    zoo = ZooState(config={})
    options = resolve_train_options(zoo, {**TINY, "data_dir": "data", "profile": None})
    assert zoo.config["train"]["layers"] == 3
    assert Path(options.data_dir).is_absolute()  # workers may start elsewhere
    assert options.base().layers == 3 and options.train_size() == 256
    assert resolve_train_options(zoo, {}) == options  # nothing given: the recorded ones
    assert resolve_train_options(zoo, {"layers": 3, "data_dir": "data"}) == options
    with pytest.raises(ConfigError, match="layers=3"):
        resolve_train_options(zoo, {"layers": 5})
    with pytest.raises(ConfigError, match="dataset"):
        ZooTrainOptions(dataset="mnist")


def test_add_settings_reference_and_recipes() -> None:
    zoo = ZooState(config={"seed": 0})
    options = ZooTrainOptions(**TINY)
    assert add_settings(zoo, ["c6r4s4e1"], "c6r4s0e2", options) == ["c6r4s0e2", "c6r4s4e1"]
    assert zoo.settings["c6r4s0e2"].recipe == "original" and zoo.settings["c6r4s0e2"].reference
    assert zoo.settings["c6r4s4e1"].recipe == "reduced"
    assert zoo.settings["c6r4s4e1"].train_images == 64  # 256 / 2^2
    assert add_settings(zoo, ["c6r4s4e1", "c6r4s2e1"], None, options) == ["c6r4s2e1"]
    with pytest.raises(ConfigError, match="reference c6r4s0e2"):
        add_settings(zoo, [], "c0r0s0e600", options)


def _results_zoo(tmp_path: Path) -> tuple[ZooState, ZooTrainOptions]:
    zoo = create_zoo(tmp_path / "zoo.h5", 3, seed=0)
    options = ZooTrainOptions(**TINY)
    add_settings(zoo, ["c6r4s4e1"], "c6r4s0e2", options)
    return zoo, options


def test_plan_units_reference_first_and_only_missing(tmp_path: Path) -> None:
    zoo, options = _results_zoo(tmp_path)
    a, b, c = zoo.networks
    units = plan_units(zoo)
    assert [u.setting for u in units] == ["c6r4s0e2"] * 3 + ["c6r4s4e1"] * 3
    nan = math.nan
    zoo.results[(a, "c6r4s0e2")] = ZooResult(a, "c6r4s0e2", "ok", 50.0, 51.0, 2, nan, 1.0, "cpu")
    zoo.results[(b, "c6r4s0e2")] = ZooResult(b, "c6r4s0e2", "diverged", nan, nan, 1, nan, 1.0, "")
    zoo.results[(c, "c6r4s0e2")] = ZooResult(c, "c6r4s0e2", "failed", nan, nan, 0, nan, nan, "")
    # diverged is an answer; failed (the job died) is retried
    assert [u.key for u in plan_units(zoo)] == [(c, "c6r4s0e2")] + [
        (x, "c6r4s4e1") for x in (a, b, c)
    ]
    spec = unit_spec(zoo, Unit(a, "c6r4s0e2"), options, ZooPaths.of(tmp_path / "zoo.h5"), "cpu")
    assert (spec.epoch_start, spec.epoch_end, spec.recipe.name) == (0, 2, "original")
    assert spec.recipe.epochs == 2 and spec.base.layers == 3
    assert spec.run_dir.endswith(f"zoo.d/units/{a}/c6r4s0e2")
    assert Genotype.from_json(spec.genotype_json).arch_id == a


def _segment(status: str, device: str = "cpu") -> SegmentResult:
    return SegmentResult(
        "abcdef012345",
        0,
        2,
        status,
        40.0 if status == "ok" else 0.0,
        (2.0, 1.5),
        (35.0, 40.0),
        (33.0, 38.5),
        "test",
        "supplement",
        "clean",
        "c6r4s4e1",
        12.5,
        device,
        0,
        1000,
    )


def test_result_record() -> None:
    unit = Unit("abcdef012345", "c6r4s4e1")
    ok = result_record(unit, _segment("ok", "cuda:0 NVIDIA H100"))
    assert (ok.status, ok.test_acc, ok.sel_acc, ok.epochs, ok.gpu_s) == ("ok", 38.5, 40.0, 2, 12.5)
    cpu = result_record(unit, _segment("ok"))
    assert math.isnan(cpu.gpu_s) and cpu.wall_s == 12.5
    bad = result_record(unit, _segment("diverged"))
    assert bad.status == "diverged" and math.isnan(bad.test_acc)


# --- the report on a hand-made zoo -----------------------------------------------------------

REF = "c6r4s0e4"
LINE = ("c6r4s0e1", "c6r4s2e1", "c6r4s4e1")  # one factor line along s, increasing subscript


def _filled_zoo(tmp_path: Path) -> ZooState:
    """6 networks; the reference, and three settings that rank them ever better."""
    zoo = create_zoo(tmp_path / "zoo.h5", 6, seed=3)
    add_settings(zoo, list(LINE), REF, resolve_train_options(zoo, TINY))
    ids = list(zoo.networks)
    ref_acc = [90.0, 91.0, 92.0, 93.0, 94.0, 95.0]
    reduced = {  # network order scrambled less and less along the line
        "c6r4s4e1": [50.0, 49.0, 48.0, 53.0, 52.0, 51.0],
        "c6r4s2e1": [60.0, 62.0, 61.0, 63.0, 64.0, 65.0],
        "c6r4s0e1": [70.0, 71.0, 72.0, 73.0, 74.0, 75.0],
    }
    for i, arch_id in enumerate(ids):
        for setting, acc in ((REF, ref_acc), *reduced.items()):
            gpu = 400.0 if setting == REF else 10.0
            zoo.results[(arch_id, setting)] = ZooResult(
                arch_id, setting, "ok", acc[i], acc[i], 1, gpu, gpu, "cuda:0 H100"
            )
            macs = 1e6 if setting == REF else 2.5e5
            zoo.costs[(arch_id, setting)] = ZooCost(1e4, macs)
    nan = math.nan
    zoo.results[(ids[5], "c6r4s4e1")] = ZooResult(
        ids[5], "c6r4s4e1", "diverged", nan, nan, 1, nan, 1.0, "cpu"
    )
    del zoo.results[(ids[4], "c6r4s4e1")]  # still pending
    return zoo


def test_build_report_numbers(tmp_path: Path) -> None:
    zoo = _filled_zoo(tmp_path)
    report = build_report(zoo, ReportOptions(band=0.15, threshold=0.9))
    rows = {r["setting"]: r for r in report["settings"]}
    assert set(rows) == set(LINE) and report["reference"]["setting"] == REF
    first = rows["c6r4s4e1"]
    assert (first["ranked"], first["excluded"], first["pending"]) == (4, 1, 1)
    assert first["excluded_statuses"] == {"diverged": 1}
    expected = spearmanr([90, 91, 92, 93], [50, 49, 48, 53]).statistic
    assert first["rho_sp"] == pytest.approx(expected)
    assert first["flips"] == 3  # (0,1), (0,2), (1,2) reversed
    # MACs 4x less, 4x fewer images (s4), 4x fewer epochs: 64x; GPU time 400 s / 10 s
    assert first["acceleration"] == pytest.approx(64.0)
    assert first["acceleration_measured"] == pytest.approx(40.0)
    assert first["measured_basis"] == "gpu_s"
    last = rows["c6r4s0e1"]
    assert last["rho_sp"] == pytest.approx(1.0) and last["flips"] == 0
    assert last["acceleration"] == pytest.approx(16.0)
    assert rows["c6r4s2e1"]["rho_sp_tolerant"] >= rows["c6r4s2e1"]["rho_sp"]
    (line,) = report["factor_lines"]
    assert line["factor"] == "s" and line["settings"] == list(LINE)
    # rho_sp falls as s grows (fewer images): supplement D's rho_e reads -1.
    assert [round(v, 3) for v in line["rho_sp"]] == [1.0, 0.943, 0.2]
    assert line["rho_e"] == pytest.approx(-1.0)
    assert "c6r4s0e1" in report["good"]
    assert any("3 cells" in w for w in report["warnings"])
    assert any("synthetic" in w for w in report["warnings"])


def test_entropy_lines_reversed_and_constant() -> None:
    rho = {"c6r4s4e1": 0.9, "c6r4s2e1": 0.5, "c6r4s0e1": 0.1}
    (line,) = entropy_lines(rho)
    assert line["settings"] == ["c6r4s0e1", "c6r4s2e1", "c6r4s4e1"]
    assert line["rho_e"] == pytest.approx(1.0)  # 0.1, 0.5, 0.9 by increasing subscript
    (flat,) = entropy_lines(dict.fromkeys(rho, 0.5))
    assert flat["rho_e"] is None  # a constant sequence has no trend (JSON null)


def test_report_without_settings(tmp_path: Path) -> None:
    zoo = create_zoo(tmp_path / "zoo.h5", 2, seed=0)
    report = build_report(zoo)
    assert report["reference"] is None and report["settings"] == []
    assert np.isfinite(report["band"])


# --- the runner's bookkeeping, with a fake worker (no training) ------------------------------


def _fake_worker(fail: set[str], calls: Counter[str]) -> Callable[[WorkItem, Any], str]:
    """A stand-in for the training runner: crashes for arch_ids in `fail`, else writes a result."""

    def run(item: WorkItem, stop: Any) -> str:
        spec = item.spec
        calls[item.name] += 1
        if spec["arch_id"] in fail:
            raise RuntimeError("injected crash")
        acc = float(int(spec["arch_id"][:4], 16) % 1000) / 10
        result = SegmentResult(
            spec["arch_id"],
            0,
            spec["epoch_end"],
            "ok",
            acc,
            (2.0,),
            (acc,),
            (acc,),
            "test",
            spec["recipe"]["profile"],
            "clean",
            spec["setting"],
            0.5,
            "cpu",
            0,
            100,
        )
        Path(item.result_path).write_text(json.dumps(result.to_dict()))
        return "ok"

    return run


def test_runner_retries_records_failures_and_retries_them_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "zoo.h5"
    ids = list(create_zoo(path, 3, seed=2).networks)
    calls: Counter[str] = Counter()
    monkeypatch.setitem(tasks._RUNNERS, "train", _fake_worker({ids[0]}, calls))
    request = ZooTrainRequest(
        path, "c6r4s4e1", None, "c6r4s0e2", TINY, ExecOptions(executor="debug"), max_attempts=2
    )
    summary = train_zoo(request)
    assert (summary.planned, summary.submitted, summary.failed) == (6, 8, 2)  # 2 resubmissions
    zoo = ZooStore(path).load()
    assert [zoo.results[(ids[0], s)].status for s in ("c6r4s0e2", "c6r4s4e1")] == ["failed"] * 2
    assert "without a result" in zoo.results[(ids[0], "c6r4s0e2")].detail
    assert calls[f"zoo-zoo-{ids[0]}-c6r4s0e2"] == 2 and calls[f"zoo-zoo-{ids[1]}-c6r4s0e2"] == 1
    # A later run retries only the failed units.
    monkeypatch.setitem(tasks._RUNNERS, "train", _fake_worker(set(), calls))
    again = train_zoo(ZooTrainRequest(path, execution=ExecOptions(executor="debug")))
    assert (again.planned, again.submitted, again.failed) == (2, 2, 0)
    assert again.statuses == {"ok": 6}
    assert calls[f"zoo-zoo-{ids[1]}-c6r4s0e2"] == 1  # finished units never run again


def test_runner_ingests_results_that_landed_while_no_runner_watched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "zoo.h5"
    create_zoo(path, 2, seed=4)
    calls: Counter[str] = Counter()
    monkeypatch.setitem(tasks._RUNNERS, "train", _fake_worker(set(), calls))
    request = ZooTrainRequest(
        path, None, "c=6 r=4 s=4 e=1", "c6r4s0e2", TINY, ExecOptions(executor="debug")
    )
    train_zoo(request)
    # Lose the zoo's records (as if the runner died before saving): results on disk suffice.
    zoo = ZooStore(path).load()
    zoo.results.clear()
    ZooStore(path).save(zoo)
    summary = train_zoo(ZooTrainRequest(path, execution=ExecOptions(executor="debug")))
    assert (summary.planned, summary.ingested, summary.submitted) == (4, 4, 0)
    assert set(calls.values()) == {1}
