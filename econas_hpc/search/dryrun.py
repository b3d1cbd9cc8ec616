"""A whole search simulated in memory with the dry-run evaluator of `space.pseudo`.

This module owns `new_state` (a fresh run) and `simulate_search` (the full policy of
`search.evolution` run with `space.pseudo.dry_result` as the evaluator, no I/O). It trains
nothing and imports neither torch nor h5py; tests, benchmarks and `--dry-run` use it to
exercise the search in seconds.
"""

from __future__ import annotations

import numpy as np

from econas_hpc.records import RunState, utc_now
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.space.pseudo import dry_result


def new_state(cfg: SearchConfig, now: str = "") -> RunState:
    """A fresh run at the initial phase, its Generator seeded with `cfg.seed`."""
    stamp = now or utc_now()
    rng = np.random.default_rng(cfg.seed)
    return RunState(cfg, cfg.seed, evo.rng_to_json(rng), created=stamp, updated=stamp)


def run_cycle_dry(state: RunState, cfg: SearchConfig, rng: np.random.Generator) -> evo.CyclePlan:
    """Plan, apply, score every planned job with the dry-run evaluator, and finish the cycle."""
    plan = evo.plan_next(state, cfg, rng)
    evo.apply_plan(state, plan)
    segments = cfg.segments_per_network
    for job in evo.open_jobs(state):
        genotype_json = state.networks[job.arch_id].genotype_json
        status, score = dry_result(genotype_json, job.segment, cfg.seed, segments)
        evo.apply_result(state, job.arch_id, job.segment, score, status, job.cycle)
    evo.finish_cycle(state)
    return plan


def simulate_search(cfg: SearchConfig, now: str = "1970-01-01T00:00:00+00:00") -> RunState:
    """The whole search (initial phase + `cfg.cycles` cycles) with the dry-run evaluator.

    In memory, no I/O; timestamps are fixed to `now` so equal configs give equal states.
    """
    state = new_state(cfg, now)
    rng = evo.rng_from_json(state.rng_state)
    while not evo.search_done(state, cfg):
        run_cycle_dry(state, cfg, rng)
    return state
