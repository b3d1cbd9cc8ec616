"""The pure search policy (spec 7.2, checklist 6-7) and SearchConfig."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from econas_hpc.errors import ConfigError, StateError
from econas_hpc.records import INITIAL_CYCLE, RunState, pool_name
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig, load_config
from econas_hpc.search.dryrun import new_state, simulate_search

NOW = "2000-01-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def paper_run() -> RunState:
    return simulate_search(SearchConfig())


def _dump(state: RunState) -> str:
    return json.dumps(state.to_dict(), sort_keys=True)


# --- config -----------------------------------------------------------------------------------


def test_config_defaults_are_the_papers() -> None:
    cfg = SearchConfig()
    assert (cfg.cycles, cfg.initial_population, cfg.continue_p20, cfg.continue_p40) == (
        100,
        16,
        8,
        4,
    )
    assert (cfg.mothers_p20, cfg.mothers_p40, cfg.mothers_p60, cfg.mothers_single) == (6, 5, 5, 16)
    assert (cfg.max_idle_cycles, cfg.segments, cfg.segment_epochs, cfg.final_top) == (10, 3, 20, 5)
    assert cfg.concat_mode == "clean"
    assert SearchConfig(profile="official").concat_mode == "faithful"
    assert SearchConfig(strategy="single").epochs_per_segment == 60
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg


def test_config_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown search config key\(s\) cycels.*valid keys:.*cycles"
    ):
        SearchConfig.from_dict({"cycels": 3})


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"strategy": "greedy"}, "strategy='greedy' is unknown; allowed: hierarchical, single"),
        ({"cycles": -1}, "cycles=-1 must be >= 0"),
        ({"cycles": True}, "cycles=True must be of type int"),
        ({"op_set": "x"}, "op_set='x' is unknown; allowed: search8, zoo13"),
        ({"segments": 4, "segment_epochs": 15}, "segments=4 must be 1..3"),
        ({"segment_epochs": 10}, r"3 x segment_epochs=10 = 30 epochs must equal .* \(60\)"),
        ({"setting": "c4r4"}, "setting: setting 'c4r4' is malformed"),
        ({"dataset": "mnist"}, "dataset='mnist' is unknown; allowed: cifar10, digits, synthetic"),
    ],
)
def test_config_rejects_bad_values(changes: dict[str, object], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        SearchConfig().replace(**changes)


def test_load_config_toml(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[search]\ncycles = 7\nstrategy = "single"\n[cluster]\npartition = "gpu"\n')
    cfg = load_config(path)
    assert (cfg.cycles, cfg.strategy) == (7, "single")
    path.write_text("[search]\nseed = 1\nbogus = 2\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(path)
    path.write_text("[other]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"no \[search\] table"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")


# --- tournament and rng -----------------------------------------------------------------------


def test_tournament_l80_picks_the_best_about_23_percent() -> None:
    rng = np.random.default_rng(1)
    picks = np.array(evo.tournament(80, 20000, rng))
    share = float(np.mean(picks == 0))
    expected = 1 - (1 - 1 / 80) ** 21  # 0.232
    assert abs(share - expected) < 0.015
    assert picks.min() >= 0 and picks.max() < 80


def test_tournament_empty_pool_consumes_nothing() -> None:
    rng = np.random.default_rng(0)
    before = evo.rng_to_json(rng)
    assert evo.tournament(0, 5, rng) == [] and evo.tournament(5, 0, rng) == []
    assert evo.rng_to_json(rng) == before
    assert evo.tournament(1, 3, rng) == [0, 0, 0]


def test_rng_json_round_trip() -> None:
    rng = np.random.default_rng(42)
    rng.integers(0, 10, 5)
    clone = evo.rng_from_json(evo.rng_to_json(rng))
    assert rng.integers(0, 1 << 30, 10).tolist() == clone.integers(0, 1 << 30, 10).tolist()
    with pytest.raises(StateError, match="unsupported"):
        evo.rng_from_json(json.dumps({"bit_generator": "MT19937"}))


# --- whole-run counts (checklist 6) -----------------------------------------------------------


def test_paper_default_counts(paper_run: RunState) -> None:
    counts = evo.summary_counts(paper_run)
    assert counts["networks"] == 1601
    assert counts["segments_done"] == 2797
    children = [len(c.children) for c in paper_run.cycles]
    continued = [len(c.continued) for c in paper_run.cycles]
    assert [c.cycle for c in paper_run.cycles] == list(range(-1, 100))
    assert children[:4] == [16, 6, 11, 16] and set(children[3:]) == {16}
    assert continued[:3] == [0, 8, 12] and set(continued[2:]) == {12}
    assert sum(n.segments_done == 3 for n in paper_run.networks.values()) == 396
    assert len(paper_run.jobs) == 2797 and not evo.open_jobs(paper_run)


def test_quotas_per_pool(paper_run: RunState) -> None:
    for record in paper_run.cycles[3:]:
        segs = [s for _, s in record.continued]
        assert segs.count(2) == 8 and segs.count(3) == 4  # top 8 of P20, top 4 of P40
        assert len(record.mothers) == 16
    # Replan a steady-state cycle and check where continued networks and mothers come from.
    cfg = SearchConfig()
    state = simulate_search(cfg.replace(cycles=25))
    current = evo.pools(state, cfg, state.cycle)
    plan = evo.plan_cycle(state, cfg, evo.rng_from_json(state.rng_state))
    origin = [next(p for p, members in current.items() if m in members) for m in plan.mothers]
    assert origin == ["P20"] * 6 + ["P40"] * 5 + ["P60"] * 5
    assert [a for a, _ in plan.continued] == current["P20"][:8] + current["P40"][:4]
    assert plan.pool_sizes == tuple(len(current[p]) for p in ("P20", "P40", "P60"))
    assert plan.pool_best[0] == state.networks[current["P20"][0]].scores[0]


def test_same_seed_same_state_other_seed_differs() -> None:
    small = SearchConfig(cycles=12)
    assert _dump(simulate_search(small)) == _dump(simulate_search(small))
    assert _dump(simulate_search(small)) != _dump(simulate_search(small.replace(seed=1)))


def test_single_strategy_counts() -> None:
    cfg = SearchConfig(strategy="single")
    state = simulate_search(cfg)
    counts = evo.summary_counts(state)
    assert counts["networks"] == 16 + 16 * 100 and counts["segments_done"] == 1616
    assert all(not c.continued for c in state.cycles)
    assert all(len(n.scores) == 1 for n in state.networks.values())
    ranking = evo.final_ranking(state, cfg, 5)
    assert len(ranking) == 5 and ranking[0][1] >= ranking[-1][1]


# --- pools, aging, tie-breaking ---------------------------------------------------------------


def _initial_state(cfg: SearchConfig) -> tuple[RunState, np.random.Generator]:
    state = new_state(cfg, NOW)
    rng = evo.rng_from_json(state.rng_state)
    evo.apply_plan(state, evo.plan_initial(cfg, rng))
    return state, rng


def test_retirement_after_idle_cycles() -> None:
    cfg = SearchConfig()
    state, _ = _initial_state(cfg)
    for job in evo.open_jobs(state):
        evo.apply_result(state, job.arch_id, 1, 50.0, "ok", INITIAL_CYCLE)
    assert len(evo.pools(state, cfg, 9)["P20"]) == 16  # tag 0, idle 9 cycles: still in
    assert evo.pools(state, cfg, 10)["P20"] == []  # idle 10 cycles: retired
    assert evo.pools(state, cfg.replace(max_idle_cycles=11), 10)["P20"] != []


def test_pool_ties_keep_birth_order_and_failures_are_excluded() -> None:
    cfg = SearchConfig()
    state, _ = _initial_state(cfg)
    ids = list(state.networks)
    for k, arch_id in enumerate(ids):
        status = "diverged" if k == 3 else "ok"
        evo.apply_result(state, arch_id, 1, 70.0 if k % 2 else 60.0, status, 0)
    pool = evo.pools(state, cfg, 0)["P20"]
    odd = [a for k, a in enumerate(ids) if k % 2 and k != 3]
    even = [a for k, a in enumerate(ids) if not k % 2]
    assert pool == odd + even
    failed = state.networks[ids[3]]
    assert failed.status == "diverged" and failed.scores[0] == 0.0 and failed.segments_done == 1
    assert evo.summary_counts(state)["networks"] == 16


def test_official_pools_rank_by_best_segment_supplement_by_latest() -> None:
    # Two networks reach P40: A scored 80 then 60, B 70 then 65. The official main.py ranks by
    # the max over a network's entries (A 80 > B 70); the supplement profile by the latest
    # segment (B 65 > A 60). The continuation (top 1 of P40) follows that order.
    for profile, first in (("official", 0), ("supplement", 1)):
        cfg = SearchConfig(profile=profile, continue_p20=2, continue_p40=1)
        state, rng = _initial_state(cfg)
        ids = list(state.networks)
        for k, arch_id in enumerate(ids):
            evo.apply_result(state, arch_id, 1, (80.0, 70.0)[k] if k < 2 else 10.0, "ok", -1)
        evo.finish_cycle(state)
        evo.apply_plan(state, evo.plan_cycle(state, cfg, rng))
        assert {a for a, seg in state.cycles[-1].continued} == set(ids[:2])
        for arch_id, score in ((ids[0], 60.0), (ids[1], 65.0)):
            evo.apply_result(state, arch_id, 2, score, "ok", 0)
        pool = evo.pools(state, cfg, 1)["P40"]
        assert pool == [ids[first], ids[1 - first]]
        assert evo.pool_score(state.networks[ids[0]], cfg) == (
            80.0 if profile == "official" else 60.0
        )


def test_apply_result_is_idempotent_and_checked() -> None:
    cfg = SearchConfig()
    state, _ = _initial_state(cfg)
    arch_id = next(iter(state.networks))
    assert evo.apply_result(state, arch_id, 1, 55.5, "ok", 0) is True
    assert evo.apply_result(state, arch_id, 1, 99.0, "ok", 0) is False
    assert state.networks[arch_id].scores[0] == 55.5
    assert math.isnan(state.networks[arch_id].scores[1])
    with pytest.raises(StateError, match="unknown network/job"):
        evo.apply_result(state, arch_id, 2, 1.0, "ok", 0)
    other = list(state.networks)[1]
    with pytest.raises(StateError, match="not finite"):
        evo.apply_result(state, other, 1, float("nan"), "ok", 0)
    with pytest.raises(StateError, match="status 'weird'"):
        evo.apply_result(state, other, 1, 1.0, "weird", 0)


def test_cycle_lifecycle_and_write_ahead() -> None:
    cfg = SearchConfig(cycles=3)
    state, rng = _initial_state(cfg)
    assert evo.is_planned(state) and state.rng_state == evo.rng_to_json(rng)
    with pytest.raises(StateError, match="still open"):
        evo.finish_cycle(state)
    with pytest.raises(StateError, match="already planned"):
        evo.apply_plan(state, evo.plan_initial(cfg, rng))
    job = evo.open_jobs(state)[0]
    evo.record_submission(state, job.arch_id, 1, "123_4", NOW)
    assert state.jobs[job.key].attempt == 1 and state.jobs[job.key].state == "submitted"
    assert state.networks[job.arch_id].attempts == 1
    for job in evo.open_jobs(state):
        evo.apply_result(state, job.arch_id, 1, 40.0, "ok", job.cycle)
    evo.finish_cycle(state, wall_s=2.5, gpu_s=10.0)
    assert state.cycle == 0 and state.cycles[-1].gpu_s == 10.0 and not evo.is_planned(state)


def test_duplicate_children_are_redrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = SearchConfig(cycles=1)
    state = simulate_search(cfg)
    real_mutate = evo.mutate
    calls: list[int] = []

    def first_repeats(parent, rng, ops, mode):  # type: ignore[no-untyped-def]
        calls.append(1)
        return parent if len(calls) % 2 else real_mutate(parent, rng, ops, mode)

    monkeypatch.setattr(evo, "mutate", first_repeats)
    plan = evo.plan_cycle(state, cfg, np.random.default_rng(3))
    assert len(plan.children) == len(plan.mothers) == 11
    assert len(calls) == 22  # every mother needed one re-draw
    assert not {c[0] for c in plan.children} & set(state.networks)
    assert [c[1] for c in plan.children] == list(plan.mothers)


def test_exhausted_redraws_skip_the_child(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = SearchConfig(cycles=1, max_redraws=3)
    state = simulate_search(cfg)
    monkeypatch.setattr(evo, "mutate", lambda parent, rng, ops, mode: parent)
    plan = evo.plan_cycle(state, cfg, np.random.default_rng(3))
    assert plan.children == () and len(plan.mothers) == 11
    assert "3 mutations all repeat known networks" in caplog.text


def test_final_ranking_uses_segment_three_without_aging(paper_run: RunState) -> None:
    cfg = SearchConfig()
    ranking = evo.final_ranking(paper_run, cfg, 5)
    finished = [n for n in paper_run.networks.values() if n.segments_done == 3]
    best = max(n.scores[2] for n in finished)
    assert ranking[0][1] == best and len(ranking) == 5
    assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)
    in_pool = set(evo.pools(paper_run, cfg, paper_run.cycle)["P60"])
    assert len(finished) > len(in_pool)  # retired P60 networks still count


def test_pool_name_mapping() -> None:
    assert [pool_name(k, 3) for k in (1, 2, 3)] == ["P20", "P40", "P60"]
    assert pool_name(1, 1) == "P60"
