"""The dry-run evaluator: deterministic, structured pseudo-accuracies and in-memory searches."""

from __future__ import annotations

import math

import numpy as np

from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.dryrun import simulate_search
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.pseudo import dry_result, pseudo_accuracy
from econas_hpc.space.sampling import sample_genotype


def _genotype(op: str) -> str:
    normal = tuple((op, i % 2) for i in range(8))
    return Genotype(normal, (2, 3, 4, 5), normal, (2, 3, 4, 5)).to_json()


def test_pseudo_accuracy_is_deterministic_and_bounded() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        text = sample_genotype(rng).to_json()
        for segment in (1, 2, 3):
            value = pseudo_accuracy(text, segment, seed=7)
            assert value == pseudo_accuracy(text, segment, seed=7)
            assert 0.0 <= value <= 100.0 and not math.isnan(value)
    text = sample_genotype(rng).to_json()
    assert pseudo_accuracy(text, 1, seed=0) != pseudo_accuracy(text, 1, seed=1)


def test_pseudo_accuracy_ignores_json_spelling() -> None:
    text = _genotype("sep_conv_3x3")
    spaced = text.replace(",", ", ")
    assert pseudo_accuracy(text, 2, 0) == pseudo_accuracy(spaced, 2, 0)


def test_pseudo_accuracy_has_structure() -> None:
    convs = pseudo_accuracy(_genotype("sep_conv_3x3"), 1, 0)
    pools = pseudo_accuracy(_genotype("max_pool_3x3"), 1, 0)
    empty = pseudo_accuracy(_genotype("none"), 1, 0)
    assert convs > pools > empty
    rng = np.random.default_rng(1)
    texts = [sample_genotype(rng).to_json() for _ in range(200)]
    means = [np.mean([pseudo_accuracy(t, s, 0) for t in texts]) for s in (1, 2, 3)]
    assert means[0] + 1.0 < means[1] and means[1] + 1.0 < means[2]


def test_unbuildable_genotypes_fail_in_faithful_mode() -> None:
    edges = (("sep_conv_3x3", 1),) * 8  # no edge reads input 0: faithful concat keeps it
    bad = Genotype(edges, (0, 2, 3, 4, 5), edges, (0, 2, 3, 4, 5)).to_json()
    assert dry_result(bad, 1, 0) == ("unbuildable", 0.0)
    status, score = dry_result(_genotype("sep_conv_3x3"), 1, 0)
    assert status == "ok" and score > 0


def test_faithful_search_records_unbuildable_networks() -> None:
    cfg = SearchConfig(profile="official", cycles=20)
    state = simulate_search(cfg)
    counts = evo.summary_counts(state)
    assert counts["statuses"].get("unbuildable", 0) > 0  # about 8 % of random samples
    assert counts["networks"] == 16 + 6 + 11 + 16 * 18
    pools = evo.pools(state, cfg, state.cycle)
    members = {a for pool in pools.values() for a in pool}
    assert all(state.networks[a].status == "ok" for a in members)


def test_evolution_improves_on_random() -> None:
    state = simulate_search(SearchConfig(cycles=40))
    first = [n.scores[0] for n in list(state.networks.values())[:16]]
    last = [n.scores[0] for n in list(state.networks.values())[-64:]]
    assert np.mean(last) > np.mean(first) + 2.0
