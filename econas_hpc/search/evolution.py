"""The pure EcoNAS search policy: pools, tournament and cycle plans (spec 7.2).

This module owns what the search decides, as a deterministic function of the `RunState`, the
`SearchConfig` and one numpy Generator owned by the caller (its state is saved with every plan,
`CyclePlan.rng_state`). It performs no I/O, trains nothing and never imports torch or h5py; the
driver executes plans and feeds results back through `apply_result`. How plans and results
are recorded in the state is `search.ledger`'s (re-exported here).

Choices the official code leaves open (documented here, tested in tests/test_evolution.py):
- Pools are sorted best first, ties in birth order, by `pool_score`: profile `supplement` ranks
  by the latest segment's score (the proxy at its current budget); profile `official` by the
  best score over the concluded segments, as the official main.py (its `score` is the max over
  a network's record entries).
- Failed, diverged and unbuildable networks keep their record with WORST_SCORE and their status.
  They are left out of the pools (never continued, never mothers) but always counted (networks,
  segments, history); the official code let them vanish.
- arch_ids are content hashes, so a child equal to an existing network (or to an earlier child
  of the same plan) is re-drawn by mutating the same mother again, up to `max_redraws` times;
  if every try repeats, that mother yields no child this cycle (logged). Initial genotypes are
  re-sampled the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from econas_hpc.errors import StateError
from econas_hpc.records import (
    INITIAL_CYCLE,
    NAN,
    POOL_NAMES,
    NetworkRecord,
    RunState,
    pool_name,
)
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.ledger import (
    RESULT_STATUSES,
    CyclePlan,
    apply_plan,
    apply_result,
    finish_cycle,
    is_planned,
    open_jobs,
    record_submission,
)
from econas_hpc.search.rankstats import (
    MIN_RANK_NETWORKS,
    average_ranks,
    proxy_rank_spearman,
    spearman,
)
from econas_hpc.search.rngstate import rng_from_json, rng_to_json
from econas_hpc.space.genotype import Genotype, genotype_from_json
from econas_hpc.space.sampling import mutate, sample_genotype

log = logging.getLogger(__name__)

# The plan ledger, the Generator's text form and the proxy-rank statistics live in their own
# modules; the policy is read as one namespace (`evo.apply_plan`, `evo.spearman`), so they are
# re-exported.
__all__ = [
    "MIN_RANK_NETWORKS",
    "RESULT_STATUSES",
    "CyclePlan",
    "apply_plan",
    "apply_result",
    "average_ranks",
    "current_pools",
    "final_ranking",
    "finish_cycle",
    "is_planned",
    "open_jobs",
    "plan_cycle",
    "plan_initial",
    "plan_next",
    "pool_score",
    "pools",
    "proxy_rank_spearman",
    "record_submission",
    "rng_from_json",
    "rng_to_json",
    "search_done",
    "spearman",
    "summary_counts",
    "tournament",
]

# --- pools and tournament ---------------------------------------------------------------------


def pool_score(net: NetworkRecord, cfg: SearchConfig) -> float:
    """The score a pool ranks `net` by: its best concluded segment's score under profile
    `official` (main.py's max over the record entries), else its latest segment's score."""
    if cfg.profile == "official" and net.segments_done:
        return max(net.scores[: net.segments_done])
    return net.latest_score


def current_pools(state: RunState) -> dict[str, list[str]]:
    """The pools of the run's own config at its current cycle (what the state file records)."""
    return pools(state, state.config, state.cycle)


def pools(state: RunState, cfg: SearchConfig, cycle: int) -> dict[str, list[str]]:
    """The P20/P40/P60 pools at `cycle`: arch_ids, best first.

    A pool holds the networks with status "ok" and exactly 1/2/3 segments done (with strategy
    "single": 1 segment, pool P60), minus those idle for `max_idle_cycles` or more
    (`cycle - last_cycle >= max_idle_cycles`). Order: `pool_score` descending, ties in birth
    order. Every name of POOL_NAMES is present (possibly empty).
    """
    segments = cfg.segments_per_network
    members: dict[str, list[NetworkRecord]] = {name: [] for name in POOL_NAMES}
    for net in state.networks.values():
        if net.status != "ok" or net.segments_done < 1:
            continue
        if cycle - net.last_cycle >= cfg.max_idle_cycles:
            continue
        members[pool_name(net.segments_done, segments)].append(net)
    # sorted() is stable, so equal scores keep the birth (insertion) order.
    return {
        name: [n.arch_id for n in sorted(nets, key=lambda n: -pool_score(n, cfg))]
        for name, nets in members.items()
    }


def tournament(pool_size: int, draws: int, rng: np.random.Generator) -> list[int]:
    """Tournament selection of spec 7.2: `draws` winners from a pool sorted best first.

    Each draw takes S = pool_size // 4 + 1 positions uniformly with replacement and keeps the
    smallest (best). An empty pool or zero draws gives [] and consumes no randomness.
    """
    if pool_size <= 0 or draws <= 0:
        return []
    size = pool_size // 4 + 1
    picks = rng.integers(0, pool_size, size=(draws, size))
    return [int(v) for v in picks.min(axis=1)]


# --- planning ---------------------------------------------------------------------------------


def plan_initial(cfg: SearchConfig, rng: np.random.Generator) -> CyclePlan:
    """The initial phase: `initial_population` distinct random genotypes (spec 3.1)."""
    taken: set[str] = set()
    children: list[tuple[str, str, str]] = []
    for _ in range(cfg.initial_population):
        for _try in range(cfg.max_redraws):
            genotype = sample_genotype(rng, cfg.nodes, cfg.ops, cfg.concat_mode)  # type: ignore[arg-type]
            if genotype.arch_id not in taken:
                break
        else:
            log.warning("initial population: %d samples all repeated; one fewer", cfg.max_redraws)
            continue
        taken.add(genotype.arch_id)
        children.append((genotype.arch_id, "", genotype.to_json()))
    empty = (0,) * len(POOL_NAMES)
    return CyclePlan(
        INITIAL_CYCLE, (), (), tuple(children), empty, (NAN,) * len(POOL_NAMES), rng_to_json(rng)
    )


def _pool_quotas(cfg: SearchConfig) -> tuple[dict[str, int], dict[str, int]]:
    """(continue count, mother draws) per pool name for the configured strategy."""
    if cfg.strategy == "single":
        return {}, {"P60": cfg.mothers_single}
    counts = {"P20": cfg.continue_p20, "P40": cfg.continue_p40}
    draws = {"P20": cfg.mothers_p20, "P40": cfg.mothers_p40, "P60": cfg.mothers_p60}
    return counts, draws


def plan_cycle(state: RunState, cfg: SearchConfig, rng: np.random.Generator) -> CyclePlan:
    """Plan cycle `state.cycle` (>= 0): continue the best, draw mothers, mutate (spec 7.2 3-5).

    Continued: the first `continue_p20` of P20 and `continue_p40` of P40 (fewer if smaller).
    Mothers: `mothers_p20/p40/p60` tournament draws from each filtered pool, in that order; an
    empty pool is skipped. Each mother yields one child by one mutation (re-drawn if taken).
    """
    cycle = state.cycle
    if cycle < 0:
        raise StateError(f"plan_cycle needs cycle >= 0, state is at {cycle}; use plan_initial")
    current = pools(state, cfg, cycle)
    counts, draws = _pool_quotas(cfg)
    continued: list[tuple[str, int]] = []
    for name, count in counts.items():
        continued.extend((a, state.networks[a].segments_done + 1) for a in current[name][:count])
    mothers: list[str] = []
    for name, count in draws.items():
        members = current[name]
        mothers.extend(members[i] for i in tournament(len(members), count, rng))
    taken = set(state.networks)
    children: list[tuple[str, str, str]] = []
    for mother_id in mothers:
        child = _fresh_child(state.networks[mother_id], cfg, rng, taken)
        if child is not None:
            taken.add(child.arch_id)
            children.append((child.arch_id, mother_id, child.to_json()))
    sizes = tuple(len(current[name]) for name in POOL_NAMES)
    best = tuple(
        pool_score(state.networks[current[name][0]], cfg) if current[name] else NAN
        for name in POOL_NAMES
    )
    return CyclePlan(
        cycle, tuple(continued), tuple(mothers), tuple(children), sizes, best, rng_to_json(rng)
    )


def _fresh_child(
    mother: NetworkRecord, cfg: SearchConfig, rng: np.random.Generator, taken: set[str]
) -> Genotype | None:
    parent = genotype_from_json(mother.genotype_json)
    for _ in range(cfg.max_redraws):
        child = mutate(parent, rng, cfg.ops, cfg.concat_mode)  # type: ignore[arg-type]
        if child.arch_id not in taken:
            return child
    log.warning(
        "mother %s: %d mutations all repeat known networks; no child from this draw",
        mother.arch_id,
        cfg.max_redraws,
    )
    return None


def plan_next(state: RunState, cfg: SearchConfig, rng: np.random.Generator) -> CyclePlan:
    """`plan_initial` in the initial phase, else `plan_cycle`."""
    if state.cycle == INITIAL_CYCLE:
        return plan_initial(cfg, rng)
    return plan_cycle(state, cfg, rng)


def search_done(state: RunState, cfg: SearchConfig) -> bool:
    """True once all `cfg.cycles` cycles have finished."""
    return state.cycle >= cfg.cycles


def final_ranking(state: RunState, cfg: SearchConfig, top: int) -> list[tuple[str, float]]:
    """The `top` (arch_id, score) of the search, best first, ties in birth order.

    Every "ok" network that finished all its segments (hierarchical: segment 3, ranked by its
    segment-3 score; single: its one score), with no aging filter (spec 7.2 final selection).
    """
    last = cfg.segments_per_network
    done = [n for n in state.networks.values() if n.status == "ok" and n.segments_done == last]
    ranked = sorted(done, key=lambda n: -n.scores[last - 1])
    return [(n.arch_id, n.scores[last - 1]) for n in ranked[:top]]


def summary_counts(state: RunState) -> dict[str, Any]:
    """Totals for reports: networks, concluded segments, networks per status."""
    statuses: dict[str, int] = {}
    for net in state.networks.values():
        statuses[net.status] = statuses.get(net.status, 0) + 1
    segments = sum(n.segments_done for n in state.networks.values())
    return {"networks": len(state.networks), "segments_done": segments, "statuses": statuses}
