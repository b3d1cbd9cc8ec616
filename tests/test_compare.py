"""`compare` end to end on a tiny budget: real training of tiny networks on a small synthetic
set, the three strategies over two seeds, equal budgets, the JSON structure, the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from econas_hpc.bench.compare import CompareConfig, load_compare_config, run_search
from econas_hpc.bench.compare_report import budget_grid, curve_at, mean_std
from econas_hpc.cli import main
from econas_hpc.errors import ConfigError
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.runfile import TrainOptions

TINY_TOML = """
[compare]
budget_epochs = 3
seeds = [0, 1]
top = 1
retrain_setting = "c6r4s0e1"
retrain_recipe = {{ batch_size = 40, cutout_length = 0, drop_path_max = 0.0, \
auxiliary_weight = 0.0 }}
device = "cpu"
workers = 1

[search]
initial_population = 2
continue_p20 = 1
continue_p40 = 1
mothers_p20 = 1
mothers_p40 = 1
mothers_p60 = 1
mothers_single = 1
segments = 3
segment_epochs = 1
setting = "c6r4s0e3"
dataset = "synthetic"
data_dir = "{data}"
synthetic_train = 80
synthetic_test = 20

[train]
layers = 3
recipe = {{ batch_size = 40, val_fraction = 0.25 }}
"""


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("compare")
    preset = root / "tiny.toml"
    preset.write_text(TINY_TOML.format(data=root / "data"))
    out = root / "out"
    assert main(["compare", str(preset), "--out", str(out), "--json"]) == 0
    for name in ("compare.json", "compare.png", "compare.svg"):
        assert (out / name).stat().st_size > 0, name
    return json.loads((out / "compare.json").read_text())


def test_every_strategy_and_seed_spends_the_same_budget(summary: dict) -> None:
    runs = summary["runs"]
    assert sorted((r["strategy"], r["seed"]) for r in runs) == sorted(
        (s, seed) for s in ("econas", "single", "random") for seed in (0, 1)
    )
    assert {r["epochs"] for r in runs} == {3} and summary["budget_equal"] is True
    econas = [r for r in runs if r["strategy"] == "econas"]
    # 1-epoch segments: EcoNAS trains three segments, the others one whole schedule
    assert all(r["segments"] == 3 for r in econas)
    assert all(r["segments"] == 1 for r in runs if r["strategy"] != "econas")
    assert all(r["device_s"] > 0 for r in runs)


def test_json_structure(summary: dict) -> None:
    assert set(summary["strategies"]) == {"econas", "single", "random"}
    for stats in summary["strategies"].values():
        for key in ("final_test_acc", "top1_final_test_acc", "best_score", "device_s"):
            assert set(stats[key]) == {"mean", "std", "n"}
        assert stats["epochs"] == [3]
        assert stats["curve"]["epochs"] == [3]
        assert len(stats["curve"]["best_score"]) == 1
    for run in summary["runs"]:
        assert [row[0] for row in run["curve"]] == sorted(row[0] for row in run["curve"])
        assert len(run["top"]) <= 1
        for row in run["top"]:
            assert 0.0 <= row["final_test_acc"] <= 100.0
            assert row["retrain_status"] == "ok"
    assert "budget" in summary["definitions"]


def test_random_and_single_start_from_the_same_networks(tmp_path: Path) -> None:
    opts = load_compare_config(str(_write(tmp_path)))
    single = run_search(opts, "single", 0, tmp_path / "work")
    randomly = run_search(opts, "random", 0, tmp_path / "work")
    # both draw their first genotype from the same seeded generator; random reuses the result
    # and is charged its epochs and device-seconds all the same
    assert single.found[0][0] == randomly.found[0][0]
    assert single.found[0][2] == randomly.found[0][2]
    assert (single.epochs, single.device_s) == (randomly.epochs, randomly.device_s)


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML.format(data=tmp_path / "data"))
    return path


def test_budget_must_be_a_multiple_of_the_schedule() -> None:
    search = SearchConfig(setting="c6r4s0e3", segments=3, segment_epochs=1)
    with pytest.raises(ConfigError, match="multiple"):
        CompareConfig(search, TrainOptions(), budget_epochs=7)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[compare]\nbudget_epochs = 6\nbudgett = 1\n")
    with pytest.raises(ConfigError, match="budgett"):
        load_compare_config(str(path))


def test_statistics_helpers() -> None:
    assert mean_std([1.0, 3.0, None]) == {"mean": 2.0, "std": pytest.approx(2**0.5), "n": 2}
    assert mean_std([]) == {"mean": None, "std": None, "n": 0}
    assert budget_grid(12, 6) == [6, 12]
    curve = [[2, 0.1, None, None], [4, 0.2, 50.0, 40.0], [6, 0.3, 60.0, 55.0]]
    assert curve_at(curve, 1, 2) is None and curve_at(curve, 5, 2) == 50.0
