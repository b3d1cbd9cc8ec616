"""EcoNAS against its alternatives at an equal training budget, in-process (`econas-hpc compare`).

This module owns the comparison: its configuration (`CompareConfig`, read from a TOML preset),
the three search strategies run on the real trainer, the budget they share, and the retraining
of each strategy's top networks. The figures and the summary statistics live in
`compare_report.py`; nothing here draws or prints.

Strategies (the same `[search]` table, seed, genotype space and proxy setting cXrYsZeW):
- `econas`: the hierarchical search of `search.evolution` (P20/P40/P60 pools, each network's
  schedule of e epochs split into `segments` segments that the best networks continue).
- `single`: the single-proxy variant, strategy "single" of `search.evolution`: every network
  trains the whole e-epoch schedule in one go (one pool, no P40/P60 continuation); children of
  `mothers_single` tournament winners per cycle.
- `random`: random sampling: distinct random genotypes, each trained the whole schedule.

The budget is counted in epochs of proxy training (one epoch of one network at the proxy
setting; a hierarchical segment of k epochs costs k). Each strategy trains jobs in its own
order until the next job would exceed `budget_epochs`; with a budget that is a multiple of e
(checked) every strategy spends exactly the same epochs. Device-seconds (the trainer's wall
time per segment) are reported beside it, not equalised: architectures differ in cost.
A network counts as found once it completed the whole schedule (e epochs), and strategies rank
those by their final selection score; `top` of them are retrained in the longer
`retrain_setting` on the same data and scored by their final test accuracy.
Searches of different (strategy, seed) run in `workers` processes; each search is sequential.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from econas_hpc.errors import ConfigError
from econas_hpc.recipes import make_recipe
from econas_hpc.records import JobRecord, cycle_tag
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.dryrun import new_state
from econas_hpc.search.runfile import TrainOptions
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.workitems import segment_spec
from econas_hpc.settings import Setting
from econas_hpc.space.sampling import sample_genotype
from econas_hpc.tomlfile import read_toml
from econas_hpc.train import SegmentResult, SegmentSpec

__all__ = ["STRATEGIES", "CompareConfig", "SearchRun", "load_compare_config", "run_compare"]

STRATEGIES: tuple[str, ...] = ("econas", "single", "random")
PRESETS = Path(__file__).resolve().parents[1] / "presets"
TABLES = ("compare", "search", "train")
FIXED_NOW = "1970-01-01T00:00:00+00:00"  # the in-memory states carry no real time


@dataclass(frozen=True, slots=True)
class CompareConfig:
    """What `run_compare` runs: `search` is the hierarchical EcoNAS config (the others derive
    from it), `train` the network/recipe options, `retrain_recipe` overrides of the "original"
    recipe for the retraining in `retrain_setting`."""

    search: SearchConfig
    train: TrainOptions
    budget_epochs: int
    seeds: tuple[int, ...] = (0, 1, 2)
    strategies: tuple[str, ...] = STRATEGIES
    top: int = 2
    retrain_setting: str = "c0r0s0e600"
    retrain_recipe: tuple[tuple[str, Any], ...] = ()
    device: str = "auto"
    workers: int = 1
    work_dir: str = ""  # where networks train ("" = `<out>/work`)

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise ConfigError(f"compare strategies {unknown}: allowed {', '.join(STRATEGIES)}")
        if self.search.strategy != "hierarchical":
            raise ConfigError("compare [search] strategy must be 'hierarchical' (EcoNAS's own)")
        e = Setting.parse(self.search.setting).e
        if self.budget_epochs < e or self.budget_epochs % e:
            raise ConfigError(
                f"compare budget_epochs={self.budget_epochs} must be a positive multiple of the "
                f"proxy's {e} epochs, so every strategy can spend it exactly"
            )
        if not self.seeds or self.top < 1 or self.workers < 1:
            raise ConfigError("compare needs seeds (a non-empty list), top >= 1 and workers >= 1")
        self.retrain_recipe_full()  # validates the setting and the overrides

    def retrain_recipe_full(self) -> Any:
        """The retraining recipe: "original" in `retrain_setting` with the overrides."""
        setting = Setting.parse(self.retrain_setting, self.train.base())
        overrides = {"cell_output": self.search.concat_mode, **dict(self.retrain_recipe)}
        return make_recipe("original", setting, self.search.profile, overrides)

    def to_dict(self) -> dict[str, Any]:
        return {
            "search": self.search.to_dict(),
            "train": self.train.to_dict(),
            **{
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(self)
                if f.name not in ("search", "train")
            },
            "retrain_recipe": dict(self.retrain_recipe),
        }


def load_compare_config(
    name_or_path: str, overrides: Mapping[str, Any] | None = None
) -> CompareConfig:
    """A preset name ("cpu" -> presets/compare-cpu.toml) or a TOML file, with `[compare]`
    overrides (None values ignored).

    Raises:
        ConfigError: unreadable file, unknown table or key, bad value.
    """
    preset = PRESETS / f"compare-{name_or_path}.toml"
    path = preset if preset.is_file() else Path(name_or_path)
    tables = read_toml(path)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {unknown}; valid: {', '.join(TABLES)}")
    table = {
        **tables.get("compare", {}),
        **{k: v for k, v in (overrides or {}).items() if v is not None},
    }
    valid = {f.name for f in dataclasses.fields(CompareConfig)} - {"search", "train"}
    bad = sorted(set(table) - valid)
    if bad:
        raise ConfigError(
            f"{path} [compare]: unknown key(s) {bad}; valid: {', '.join(sorted(valid))}"
        )
    search = SearchConfig.from_dict({**tables.get("search", {}), "cycles": 10**6})
    for key in ("seeds", "strategies"):
        if key in table:
            table[key] = tuple(table[key])
    if "retrain_recipe" in table:
        table["retrain_recipe"] = tuple(sorted(dict(table["retrain_recipe"]).items()))
    try:
        return CompareConfig(search, TrainOptions.from_dict(tables.get("train", {})), **table)
    except TypeError as exc:
        raise ConfigError(f"{path} [compare]: {exc}") from None


# --- one search --------------------------------------------------------------------------------


@dataclass(slots=True)
class SearchRun:
    """One (strategy, seed): budget spent, networks trained, the anytime curve and the ranking.

    `curve` rows: (epochs spent, device-seconds spent, best final selection score so far, test
    accuracy of that incumbent at the end of its schedule); one row per trained job. `found`:
    (arch_id, genotype_json, selection score, test accuracy, params) of every network that
    completed the whole schedule, in completion order.
    """

    strategy: str
    seed: int
    budget: int
    epochs: int = 0
    device_s: float = 0.0
    segments: int = 0
    networks: set[str] = field(default_factory=set)
    curve: list[tuple[int, float, float, float]] = field(default_factory=list)
    found: list[tuple[str, str, float, float, int]] = field(default_factory=list)

    def affords(self, cost: int) -> bool:
        return self.epochs + cost <= self.budget

    def charge(self, cost: int, result: SegmentResult, genotype_json: str, final: bool) -> None:
        self.epochs += cost
        self.device_s += result.wall_s
        self.segments += 1
        self.networks.add(result.arch_id)
        if final and result.status == "ok":
            test = result.test_acc[-1] if result.test_acc else float("nan")
            self.found.append((result.arch_id, genotype_json, result.score, test, result.params))
        best = max(self.found, key=lambda f: f[2], default=None)
        self.curve.append(
            (
                self.epochs,
                self.device_s,
                best[2] if best else float("nan"),
                best[3] if best else float("nan"),
            )
        )

    def ranking(self, top: int) -> list[tuple[str, str, float, float, int]]:
        """The `top` found networks by selection score, best first (ties: found first)."""
        return sorted(self.found, key=lambda f: -f[2])[:top]


Trainer = Callable[[SegmentSpec], SegmentResult]


def _trainer() -> Trainer:
    from econas_hpc.train.segment import run_segment  # deferred: torch

    return run_segment


def _evolve(cfg: SearchConfig, opts: CompareConfig, paths: RunPaths, run: SearchRun) -> None:
    """Hierarchical or single: plan, train, apply until the budget is spent."""
    train = _trainer()
    state = new_state(cfg, FIXED_NOW)
    rng = evo.rng_from_json(state.rng_state)
    cost, last = cfg.epochs_per_segment, cfg.segments_per_network
    while True:
        evo.apply_plan(state, evo.plan_next(state, cfg, rng))
        jobs = evo.open_jobs(state)
        if not jobs:
            return  # nothing left to train (every mutation repeats known networks)
        for job in jobs:
            if not run.affords(cost):
                return
            genotype_json = state.networks[job.arch_id].genotype_json
            spec = segment_spec(cfg, opts.train, paths, genotype_json, job, opts.device)
            result = train(spec)
            evo.apply_result(
                state, job.arch_id, job.segment, result.score, result.status, job.cycle
            )
            run.charge(cost, result, genotype_json, job.segment == last)
        evo.finish_cycle(state)


def _random(cfg: SearchConfig, opts: CompareConfig, paths: RunPaths, run: SearchRun) -> None:
    """Distinct random genotypes, each trained the whole schedule, until the budget is spent."""
    train = _trainer()
    rng = np.random.default_rng(cfg.seed)
    cost = cfg.epochs_per_segment
    taken: set[str] = set()
    while run.affords(cost):
        for _ in range(cfg.max_redraws):
            genotype = sample_genotype(rng, cfg.nodes, cfg.ops, cfg.concat_mode)  # type: ignore[arg-type]
            if genotype.arch_id not in taken:
                break
        else:
            return
        taken.add(genotype.arch_id)
        job = JobRecord(genotype.arch_id, 1, cycle_tag(len(taken)))
        result = train(segment_spec(cfg, opts.train, paths, genotype.to_json(), job, opts.device))
        run.charge(cost, result, genotype.to_json(), True)


def run_search(opts: CompareConfig, strategy: str, seed: int, work: Path) -> SearchRun:
    """One (strategy, seed) search; networks train under `work/<folder>-seed<seed>.d/nets/`.

    Single and random train every network with the same spec (whole schedule, network seed from
    (seed, arch_id)), so they share one folder ("full"): a network both draw (their first draws
    come from the same seeded generator) trains once, and the second search reads its result
    file and is charged its epochs and recorded device-seconds all the same.
    """
    run = SearchRun(strategy, seed, opts.budget_epochs)
    hierarchical = opts.search.replace(seed=seed)
    cfg = hierarchical if strategy == "econas" else hierarchical.replace(strategy="single")
    folder = "econas" if strategy == "econas" else "full"
    paths = RunPaths.of(work / f"{folder}-seed{seed}.h5")  # the state itself stays in memory
    (_random if strategy == "random" else _evolve)(cfg, opts, paths, run)
    return run


# --- retraining and the whole comparison --------------------------------------------------------


def retrain_spec(opts: CompareConfig, arch_id: str, genotype_json: str, work: Path) -> SegmentSpec:
    """The longer training of one found network (seed 0; shared by strategies that found it)."""
    recipe = opts.retrain_recipe_full()
    base = opts.train.base()
    cfg = opts.search
    return SegmentSpec(
        arch_id=arch_id,
        genotype_json=genotype_json,
        setting=str(Setting.parse(opts.retrain_setting, base)),
        recipe=recipe,
        epoch_start=0,
        epoch_end=recipe.epochs,
        run_dir=str(work / "retrain" / arch_id),
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        seed=0,
        device=opts.device,
        base=base,
        synthetic_train=cfg.synthetic_train,
        synthetic_test=cfg.synthetic_test,
    )


def _share_cores(workers: int) -> None:
    """Worker initialiser: each process gets its share of the cores."""
    import torch  # deferred: torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _search_task(args: tuple[CompareConfig, tuple[str, ...], int, Path]) -> list[SearchRun]:
    """The searches of one seed that share a folder, one after the other (never concurrently)."""
    opts, strategies, seed, work = args
    return [run_search(opts, strategy, seed, work) for strategy in strategies]


def _retrain_task(spec: SegmentSpec) -> SegmentResult:
    return _trainer()(spec)


def _map(fn: Callable[[Any], Any], tasks: list[Any], workers: int) -> list[Any]:
    if workers == 1 or len(tasks) <= 1:
        return [fn(task) for task in tasks]
    with ProcessPoolExecutor(workers, initializer=_share_cores, initargs=(workers,)) as pool:
        return list(pool.map(fn, tasks))


def run_compare(opts: CompareConfig, out_dir: Path) -> dict[str, Any]:
    """Every (strategy, seed) search, then the retraining of each one's top networks.

    Returns {"config", "runs": [per search: strategy, seed, epochs, device_s, segments,
    networks, curve, top: [{arch_id, score, proxy_test_acc, params, final_test_acc,
    retrain_device_s}]], "wall_s"}; `compare_report.summarize` adds the statistics.
    """
    started = time.perf_counter()
    work = Path(opts.work_dir) if opts.work_dir else Path(out_dir) / "work"
    full = tuple(s for s in opts.strategies if s != "econas")
    groups = [(s,) for s in opts.strategies if s == "econas"] + ([full] if full else [])
    tasks = [(opts, group, seed, work) for seed in opts.seeds for group in groups]
    runs: list[SearchRun] = [r for runs in _map(_search_task, tasks, opts.workers) for r in runs]
    wanted: dict[str, str] = {}
    for run in runs:
        wanted.update((f[0], f[1]) for f in run.ranking(opts.top))
    specs = [retrain_spec(opts, a, g, work) for a, g in wanted.items()]
    retrained = dict(zip(wanted, _map(_retrain_task, specs, opts.workers), strict=True))
    return {
        "config": opts.to_dict(),
        "runs": [_run_dict(run, opts.top, retrained) for run in runs],
        "wall_s": time.perf_counter() - started,
    }


def _run_dict(run: SearchRun, top: int, retrained: Mapping[str, SegmentResult]) -> dict[str, Any]:
    rows = []
    for arch_id, _, score, test, params in run.ranking(top):
        result = retrained[arch_id]
        final = result.test_acc[-1] if result.status == "ok" and result.test_acc else None
        rows.append(
            {
                "arch_id": arch_id,
                "score": score,
                "proxy_test_acc": test,
                "params": params,
                "final_test_acc": final,
                "retrain_status": result.status,
                "retrain_device_s": result.wall_s,
            }
        )
    return {
        "strategy": run.strategy,
        "seed": run.seed,
        "epochs": run.epochs,
        "device_s": run.device_s,
        "segments": run.segments,
        "networks": len(run.networks),
        "found": len(run.found),
        "curve": [list(row) for row in run.curve],
        "top": rows,
    }
