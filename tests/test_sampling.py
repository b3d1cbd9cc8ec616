"""Random sampling (spec 3.1), the concat rule (spec 2.2) and mutation (spec 3.2)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from econas_hpc.errors import ConfigError
from econas_hpc.space.catalog import SEARCH_OPS, ZOO_OPS, get_builtin
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.sampling import (
    describe_edit,
    is_buildable,
    mutate,
    reconcat,
    sample_genotype,
)


def test_reconcat_modes() -> None:
    edges = (("none", 1), ("none", 1), ("none", 2), ("none", 1), ("none", 3), ("none", 2))
    assert reconcat(edges, "clean") == (4,)
    assert reconcat(edges, "faithful") == (0, 4)
    with pytest.raises(ConfigError, match="'tidy'.*clean, faithful"):
        reconcat(edges, "tidy")  # type: ignore[arg-type]


@pytest.mark.parametrize(("nodes", "ops"), [(4, SEARCH_OPS), (5, ZOO_OPS)])
def test_random_genotypes_valid(nodes: int, ops: tuple[str, ...]) -> None:
    rng = np.random.default_rng(123)
    for mode in ("clean", "faithful"):
        for _ in range(500):
            g = sample_genotype(rng, nodes, ops, mode)
            assert g.nodes == nodes
            assert {op for op, _ in g.normal + g.reduce} <= set(ops)
            assert g.normal_concat == reconcat(g.normal, mode)
            assert g.reduce_concat == reconcat(g.reduce, mode)
            assert Genotype.from_json(g.to_json()) == g
            assert mode == "faithful" or is_buildable(g)


def test_sampling_is_uniform() -> None:
    rng = np.random.default_rng(9)
    samples = [sample_genotype(rng) for _ in range(2000)]
    last_inputs = np.bincount([g.reduce[7][1] for g in samples], minlength=5)
    ops = np.bincount([SEARCH_OPS.index(g.normal[0][0]) for g in samples], minlength=8)
    assert np.all(np.abs(last_inputs / 2000 - 1 / 5) < 0.04)  # node 3 reads 0..4
    assert np.all(np.abs(ops / 2000 - 1 / 8) < 0.04)
    assert {g.normal[0][1] for g in samples} == {0, 1}


def test_sampling_is_deterministic_per_seed() -> None:
    a = [sample_genotype(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert sample_genotype(np.random.default_rng(8)) != a[0]


def test_faithful_unbuildable_rate() -> None:
    rng = np.random.default_rng(2020)
    n = 20000
    bad = sum(not is_buildable(sample_genotype(rng, concat_mode="faithful")) for _ in range(n))
    # 1 - (1 - 1/25)^2 = 0.0784 (spec 2.2)
    assert abs(bad / n - 0.0784) < 0.01


def test_sampling_rejects_bad_arguments(rng: np.random.Generator) -> None:
    with pytest.raises(ConfigError, match="nodes"):
        sample_genotype(rng, nodes=0)
    with pytest.raises(ConfigError, match="conv_9x9"):
        sample_genotype(rng, ops=("conv_9x9",))


def _diff(parent: Genotype, child: Genotype) -> list[tuple[str, int, int]]:
    """(cell, edge, field) triples that differ; field 0 = op, 1 = input."""
    out = []
    for cell in ("normal", "reduce"):
        for k, (a, b) in enumerate(zip(getattr(parent, cell), getattr(child, cell), strict=True)):
            out += [(cell, k, f) for f in (0, 1) if a[f] != b[f]]
    return out


@pytest.mark.parametrize("mode", ["clean", "faithful"])
def test_mutation_properties(mode: str) -> None:
    rng = np.random.default_rng(5)
    kinds = {0: 0, 1: 0}
    for _ in range(300):
        parent = sample_genotype(rng, concat_mode=mode)  # type: ignore[arg-type]
        snapshot = copy.deepcopy(parent)
        child = mutate(parent, rng, concat_mode=mode)  # type: ignore[arg-type]
        assert parent == snapshot
        diffs = _diff(parent, child)
        assert len(diffs) == 1
        cell, k, field = diffs[0]
        kinds[field] += 1
        old, new = getattr(parent, cell)[k], getattr(child, cell)[k]
        if field == 0:
            assert new[0] in SEARCH_OPS and new[0] != old[0]
            assert child.normal_concat == parent.normal_concat
            assert child.reduce_concat == parent.reduce_concat
        else:
            assert 0 <= new[1] <= k // 2 + 1 and new[1] != old[1]
            assert child.normal_concat == reconcat(child.normal, mode)  # type: ignore[arg-type]
            assert child.reduce_concat == reconcat(child.reduce, mode)  # type: ignore[arg-type]
        assert describe_edit(parent, child).startswith(f"{cell}[{k}]")
    assert min(kinds.values()) > 100  # both kinds at p = 1/2


def test_connection_mutation_recomputes_published_concat() -> None:
    parent = get_builtin("darts_v2")  # concat [2, 3, 4, 5] is not the loose-end rule
    for seed in range(40):
        child = mutate(parent, np.random.default_rng(seed))
        if _diff(parent, child)[0][2] == 1:
            assert child.normal_concat == reconcat(child.normal, "clean")
            assert child.reduce_concat == reconcat(child.reduce, "clean")
            return
    pytest.fail("no connection mutation in 40 seeds")


def test_mutation_same_seed_same_child() -> None:
    parent = get_builtin("econas")
    children = [mutate(parent, np.random.default_rng(11)) for _ in range(2)]
    assert children[0] == children[1] != parent
    assert describe_edit(parent, parent) == "no change"


def test_mutation_of_zoo_genotype_with_zoo_ops() -> None:
    rng = np.random.default_rng(3)
    parent = sample_genotype(rng, 5, ZOO_OPS)
    for _ in range(50):
        child = mutate(parent, rng, ZOO_OPS)
        assert len(_diff(parent, child)) == 1 and child.nodes == 5
        parent = child


def test_mutation_with_single_op_set_errors(rng: np.random.Generator) -> None:
    parent = sample_genotype(rng, ops=("skip_connect",))
    with pytest.raises(ConfigError, match="no op other than 'skip_connect'"):
        for _ in range(20):  # until an op mutation is drawn
            mutate(parent, rng, ops=("skip_connect",))


def test_is_buildable() -> None:
    g = get_builtin("darts_v2")
    assert is_buildable(g)
    faithful = Genotype(g.normal, g.normal_concat, g.reduce, (1, 2, 3, 4, 5))
    assert not is_buildable(faithful)
    assert is_buildable(Genotype(g.normal, (0, 2), g.reduce, g.reduce_concat))
