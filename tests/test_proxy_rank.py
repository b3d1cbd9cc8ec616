"""The proxy's rank consistency (issue 7, "In the search too") and the retraining results in
`status` and `best` (issue 8): recorded per cycle, stored, summarized, rendered.

Dry runs on the debug executor keep these fast (as in test_driver.py).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from scipy.stats import spearmanr

from econas_hpc.cli import main
from econas_hpc.errors import ConfigError
from econas_hpc.records import NetworkRecord, RunState
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig, load_config
from econas_hpc.search.driver import run_search
from econas_hpc.search.runfile import ExecOptions
from econas_hpc.search.summary import best_genotypes, summarize
from econas_hpc.store.retrain_table import RetrainRecord, write_retrain_table
from econas_hpc.store.state import StateStore
from econas_hpc.ui.search_view import render_best, render_status

SMALL = SearchConfig(cycles=3, initial_population=8, dry_run=True)
DEBUG = ExecOptions(executor="debug")


def _rendered(render: Any, data: Any) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    render(console, data)
    return console.export_text()


# --- the Spearman of the policy module ----------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1, 2, 3, 4], [10, 20, 30, 40]),
        ([1, 2, 3, 4], [4, 3, 2, 1]),
        ([1, 2, 2, 3, 5], [2, 1, 4, 4, 9]),  # ties on both sides: average ranks
        ([5.0, 1.0, 3.0, 3.0, 3.0, 0.5], [1.0, 2.0, 3.0, 3.0, 7.0, 0.0]),
    ],
)
def test_spearman_matches_scipy(x: list[float], y: list[float]) -> None:
    expected = spearmanr(x, y).statistic
    assert evo.spearman(np.array(x), np.array(y)) == pytest.approx(expected, abs=1e-12)


def test_average_ranks_and_constant_samples() -> None:
    assert evo.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert math.isnan(evo.spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))


def _net(arch_id: str, scores: tuple[float, ...], status: str = "ok") -> NetworkRecord:
    done = sum(not math.isnan(s) for s in scores)
    padded = scores + (math.nan,) * (3 - len(scores))
    return NetworkRecord(arch_id, "", "{}", 0, 0, done, padded, status=status)


def test_proxy_rank_needs_three_ok_networks_with_both_scores() -> None:
    state = RunState(SearchConfig(), 0, "")
    for net in (
        _net("a", (50.0, 60.0)),
        _net("b", (40.0, 55.0)),
        _net("c", (30.0,)),
        _net("d", (0.0, 0.0), status="diverged"),
    ):
        state.networks[net.arch_id] = net
    assert all(math.isnan(v) for v in evo.proxy_rank_spearman(state))  # 2 with both scores
    state.networks["e"] = _net("e", (45.0, 50.0, 70.0))
    first, second = evo.proxy_rank_spearman(state)
    assert first == pytest.approx(spearmanr([50, 40, 45], [60, 55, 50]).statistic)
    assert math.isnan(second)  # one network reached segment 3


# --- recorded by the search ---------------------------------------------------------------------


def test_dry_run_records_proxy_rank_once_networks_reach_p40_and_p60(tmp_path: Path) -> None:
    state = run_search(tmp_path / "run.h5", SMALL, DEBUG)
    by_cycle = {c.cycle: c.proxy_rank_spearman for c in state.cycles}
    assert all(math.isnan(v) for v in by_cycle[-1])  # initial phase: segment 1 only
    assert 0.0 < by_cycle[0][0] <= 1.0 and math.isnan(by_cycle[0][1])  # P40 reached, no P60
    for cycle in (1, 2):  # the dry-run evaluator correlates later segments with earlier ones
        assert all(0.0 < v <= 1.0 for v in by_cycle[cycle])
    loaded = StateStore(tmp_path / "run.h5").load()
    assert [c.proxy_rank_spearman[0] for c in loaded.cycles[1:]] == [
        by_cycle[c][0] for c in (0, 1, 2)
    ]
    assert by_cycle[2] == evo.proxy_rank_spearman(state)  # what the last finish_cycle saw


def test_proxy_rank_warn_is_validated_and_optional(tmp_path: Path) -> None:
    stored = SMALL.to_dict()
    stored.pop("proxy_rank_warn")  # a state file written before the field existed
    assert SearchConfig.from_dict(stored).proxy_rank_warn == 0.5
    assert SearchConfig(proxy_rank_warn=1).proxy_rank_warn == 1.0
    assert isinstance(SearchConfig(proxy_rank_warn=0).to_dict()["proxy_rank_warn"], float)
    for bad in (1.5, -2, math.nan, True, "0.5"):
        with pytest.raises(ConfigError, match="proxy_rank_warn"):
            SearchConfig(proxy_rank_warn=bad)  # type: ignore[arg-type]
    path = tmp_path / "c.toml"
    path.write_text("[search]\nproxy_rank_warn = 0.7\n")
    assert load_config(path).proxy_rank_warn == 0.7


# --- status -------------------------------------------------------------------------------------


def test_status_reports_the_latest_finished_cycles_values(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    state = run_search(path, SMALL.replace(cycles=1), DEBUG)
    early = summarize(path)
    assert early.proxy_rank["P20_P40"] == state.cycles[-1].proxy_rank_spearman[0]
    assert early.proxy_rank["P40_P60"] is None and early.retrain == []
    text = _rendered(render_status, [early])
    assert "proxy rank" in text and "P40~P60 -" in text


def test_status_warns_below_the_threshold(tmp_path: Path) -> None:
    calm = tmp_path / "calm.h5"
    run_search(calm, SMALL.replace(proxy_rank_warn=-1.0), DEBUG)
    text = _rendered(render_status, [summarize(calm)])
    assert "proxy rank" in text and "WARNING" not in text
    strict = tmp_path / "strict.h5"
    run_search(strict, SMALL.replace(proxy_rank_warn=1.0), DEBUG)
    run = summarize(strict)
    assert all(v is not None and v < 1.0 for v in run.proxy_rank.values())
    text = _rendered(render_status, [run])
    assert "WARNING: P20~P40 and P40~P60 below 1.00" in text


def test_status_and_best_json_include_proxy_rank_and_retrain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["launch", "--cycles", "2", "--executor", "debug", "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["status", "--json", "state/run1.h5"]) == 0
    (status,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert set(status["proxy_rank"]) == {"P20_P40", "P40_P60"}
    assert all(isinstance(v, float) for v in status["proxy_rank"].values())
    assert status["proxy_rank_warn"] == 0.5 and status["retrain"] == []
    assert main(["best", "--json", "state/run1.h5"]) == 0
    assert all(n["retrain"] is None for n in json.loads(capsys.readouterr().out)["networks"])


# --- retraining results -------------------------------------------------------------------------


def _retrain_rows(state: RunState, cfg: SearchConfig) -> list[RetrainRecord]:
    (first, score1), (second, score2) = evo.final_ranking(state, cfg, 2)
    row = RetrainRecord(
        first,
        0,
        1,
        score1,
        "c0r0s0e600",
        "ok",
        2.5,
        97.5,
        3_300_000,
        600,
        600,
        40.0,
        2,
        2,
        "123",
        "",
    )
    return [
        row,
        replace(row, seed=1, test_error=2.7, test_acc=97.3, gpu_hours=41.0),
        RetrainRecord(second, 0, 2, score2, "c0r0s0e600", "running", epochs=600, epochs_done=17),
    ]


def test_retrain_table_shows_in_status_and_best(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.h5"
    state = run_search(path, SMALL, DEBUG)
    records = _retrain_rows(state, SMALL)
    write_retrain_table(path, records)

    assert main(["status", "--json", str(path)]) == 0
    (status,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    done, running = status["retrain"]
    assert (done["arch_id"], done["rank"], done["seeds"], done["finished"]) == (
        records[0].arch_id,
        1,
        2,
        2,
    )
    assert done["test_error_mean"] == pytest.approx(2.6)
    assert done["test_error_std"] == pytest.approx(math.sqrt(0.02))
    assert (running["finished"], running["test_error_mean"], running["test_error_std"]) == (
        0,
        None,
        None,
    )
    text = _rendered(render_status, [summarize(path)])
    assert "final retraining" in text and "2.60 ± 0.14 % (2/2 seeds)" in text

    assert main(["best", "--json", str(path), "--top", "3"]) == 0
    networks = json.loads(capsys.readouterr().out)["networks"]
    assert networks[0]["retrain"]["test_error_mean"] == pytest.approx(2.6)
    assert networks[1]["retrain"]["finished"] == 0 and networks[2]["retrain"] is None
    text = _rendered(render_best, best_genotypes(path, top=3))
    assert "retrained test error" in text and "2.60 ± 0.14 % (2/2 seeds)" in text
