"""Read-only summaries of runs for `status` and `best`, from the state file alone.

This module owns what `econas-hpc status` and `best` report: progress (cycle k of N), pools and
their best scores, segment and job counts, retries, device hours, an estimate of the time left,
the proxy's rank consistency, the leading networks, the final retraining's test errors, and the
exported final genotypes. It reads the state file (its `/retrain` table too) and the run's lock
and run files (for who drives it) and nothing else: no scheduler traffic, no writes, so it
works while a driver saves (snapshots are replaced atomically).
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from econas_hpc.errors import CAUSES, EconasError
from econas_hpc.records import FAILED_STATUSES, INITIAL_CYCLE, JOB_STATES, POOL_NAMES, RunState
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.runfile import TrainOptions, read_run_file
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.runsummary import RunSummary, UnreadableRun
from econas_hpc.search.scores import final_test_accuracy, score_meaning
from econas_hpc.space.genotype import Genotype
from econas_hpc.store.lock import lock_path_for
from econas_hpc.store.retrain_table import RetrainRecord, read_retrain_table
from econas_hpc.store.state import StateStore

RECENT_CYCLES = 5  # cycles averaged for the estimate of the time left
TOP_DEFAULT = 5


def find_runs(root: str | Path = "state") -> list[Path]:
    """Every state file (`*.h5`) directly under `root`, sorted by name."""
    folder = Path(root)
    return sorted(p for p in folder.glob("*.h5") if p.is_file()) if folder.is_dir() else []


def _number(value: float) -> float | None:
    """JSON-safe: NaN (not yet / empty pool) becomes None."""
    return None if isinstance(value, float) and math.isnan(value) else value


def leaders(state: RunState, top: int) -> list[dict[str, Any]]:
    """The `top` "ok" networks trained furthest, best latest score first (the final ranking
    once networks finished all segments)."""
    nets = [n for n in state.networks.values() if n.status == "ok" and n.segments_done]
    nets.sort(key=lambda n: (-n.segments_done, -n.latest_score))
    return [
        {
            "arch_id": n.arch_id,
            "score": n.latest_score,
            "segments": n.segments_done,
            "parent_id": n.parent_id,
            "born_cycle": n.born_cycle,
        }
        for n in nets[:top]
    ]


def _pools(state: RunState, cfg: SearchConfig) -> tuple[dict[str, int], dict[str, float | None]]:
    current = evo.pools(state, cfg, max(state.cycle, 0))
    sizes = {name: len(current[name]) for name in POOL_NAMES}
    best = {
        name: _number(evo.pool_score(state.networks[current[name][0]], cfg))
        if current[name]
        else None
        for name in POOL_NAMES
    }
    return sizes, best


def _time_left_s(state: RunState, cfg: SearchConfig) -> float | None:
    """Mean wall time of the latest finished cycles times the cycles still to run."""
    walls = [c.wall_s for c in state.cycles if c.cycle >= 0 and c.cycle < state.cycle]
    if not walls:
        return None
    recent = walls[-RECENT_CYCLES:]
    remaining = max(0, cfg.cycles - max(state.cycle, 0))
    return sum(recent) / len(recent) * remaining


def _proxy_rank(state: RunState) -> dict[str, float | None]:
    """The proxy-rank Spearman values of the latest finished cycle (None: not yet known)."""
    finished = [c for c in state.cycles if c.cycle < state.cycle]
    values = finished[-1].proxy_rank_spearman if finished else (math.nan, math.nan)
    return {"P20_P40": _number(values[0]), "P40_P60": _number(values[1])}


def summarize_retrain(records: Sequence[RetrainRecord]) -> list[dict[str, Any]]:
    """Per network, in rank order: seeds finished, test error mean and standard deviation (%).

    The deviation is the sample one (n - 1) over finished seeds, 0.0 for one seed, NaN for none.
    """
    by_arch: dict[str, list[RetrainRecord]] = {}
    for record in sorted(records, key=lambda r: (r.rank, r.seed)):
        by_arch.setdefault(record.arch_id, []).append(record)
    rows = []
    for arch_id, group in by_arch.items():
        errors = [r.test_error for r in group if r.status == "ok"]
        rows.append(
            {
                "arch_id": arch_id,
                "rank": group[0].rank,
                "proxy_score": group[0].proxy_score,
                "setting": group[0].setting,
                "seeds": len(group),
                "finished": len(errors),
                "test_error_mean": statistics.fmean(errors) if errors else math.nan,
                "test_error_std": statistics.stdev(errors)
                if len(errors) > 1
                else (0.0 if errors else math.nan),
                "params": max(r.params for r in group),
                "gpu_hours": sum(r.gpu_hours for r in group),
                "preemptions": sum(r.preemptions for r in group),
                "statuses": sorted({r.status for r in group}),
            }
        )
    return rows


def _retrain_rows(path: Path) -> list[dict[str, Any]]:
    """`summarize_retrain` of the run's `/retrain` table, JSON-safe (NaN -> None)."""
    return [
        {k: _number(v) for k, v in row.items()}
        for row in summarize_retrain(read_retrain_table(path))
    ]


def _driver(path: Path) -> dict[str, Any] | None:
    """Who holds the driver lock, as written in it; None when no driver runs (no lock, or the
    lock of a process on this host that is gone)."""
    try:
        data = json.loads(lock_path_for(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    if data.get("host") == socket.gethostname() and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # a driver killed without releasing its lock
        except PermissionError:
            pass  # alive, another user's
    return {k: data.get(k) for k in ("host", "pid", "job_id", "started")}


def _train_options(path: Path) -> TrainOptions | None:
    try:
        return read_run_file(RunPaths.of(path))[0]
    except EconasError:
        return None  # a state file copied without its run file: the recipe defaults


def _with_test_acc(path: Path, state: RunState, cfg: SearchConfig, rows: list[Any]) -> list[Any]:
    """`rows` (dicts with an arch_id) with each network's latest test accuracy added."""
    paths = RunPaths.of(path)
    for row in rows:
        row["test_acc"] = final_test_accuracy(paths, cfg, state.networks[row["arch_id"]])
    return rows


def _executor(path: Path) -> str:
    try:
        data = json.loads(RunPaths.of(path).run_file.read_text(encoding="utf-8"))
        return str(data["execution"]["executor"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def waiting(state: RunState) -> list[dict[str, Any]]:
    """Pending segments that wait for a fault outside the network to be fixed, by cause:
    [{"cause", "label", "segments"}] (the driver stopped for them; `resume` continues)."""
    counts = Counter(j.cause for j in state.jobs.values() if j.cause and j.state == "planned")
    return [
        {"cause": c, "label": CAUSES.get(c, c), "segments": n} for c, n in sorted(counts.items())
    ]


def _recovery(store: StateStore) -> dict[str, Any]:
    """`recovered_from_prev` (the main file was corrupt or missing and `.prev` was read) and
    `recovery` (why; "" when the main file was good), after a load."""
    return {"recovered_from_prev": bool(store.recovery), "recovery": store.recovery}


def summarize(state_path: str | Path, top: int = TOP_DEFAULT) -> RunSummary:
    """The status of one run (`runsummary.RunSummary`; `to_dict()` is its JSON form).

    `recovered_from_prev` and `recovery` say whether (and why) `.prev` was read instead of
    the main file (`_recovery`).

    `best` holds the `top` leaders, each with test_acc (the test accuracy after its latest
    segment, None if unknown); `retrain` is [] when the run was never retrained; `waiting`
    lists the segments held back by a fault outside the network, by cause (`waiting`);
    `failures` counts the networks failed by their own cause (diverged, unbuildable, failed =
    repeated crashes).

    Raises:
        StateError: the state file is missing, unreadable or of a newer schema.
    """
    path = Path(state_path)
    store = StateStore(path)
    state, source = store.load_with_source()
    cfg = state.config
    counts = evo.summary_counts(state)
    jobs = dict.fromkeys(JOB_STATES, 0)
    for job in state.jobs.values():
        jobs[job.state] += 1
    sizes, best = _pools(state, cfg)
    done = state.cycle >= cfg.cycles and not evo.is_planned(state)
    return RunSummary(
        run=RunPaths.of(path).run,
        state=str(path),
        loaded_from=str(source),
        **_recovery(store),
        updated=state.updated,
        phase="done" if done else ("initial" if state.cycle == INITIAL_CYCLE else "running"),
        cycle=max(state.cycle, 0),
        cycles_total=cfg.cycles,
        networks=counts["networks"],
        statuses=counts["statuses"],
        segments_done=counts["segments_done"],
        segments={
            "done": jobs["done"],
            "running": jobs["running"],
            "pending": jobs["planned"] + jobs["submitted"],
            "failed": jobs["failed"],
        },
        jobs=jobs,
        retries=sum(max(0, j.attempt - 1) for j in state.jobs.values()),
        pools=sizes,
        pool_best=best,
        gpu_hours=sum(c.gpu_s for c in state.cycles) / 3600.0,
        time_left_s=_time_left_s(state, cfg),
        proxy_rank=_proxy_rank(state),
        proxy_rank_warn=cfg.proxy_rank_warn,
        best=_with_test_acc(path, state, cfg, leaders(state, top)),
        score_kind=score_meaning(cfg, _train_options(path)),
        retrain=_retrain_rows(path),
        driver=_driver(path),
        executor=_executor(path),
        dry_run=cfg.dry_run,
        strategy=cfg.strategy,
        waiting=waiting(state),
        failures={k: v for k, v in counts["statuses"].items() if k in FAILED_STATUSES},
    )


def summarize_all(
    paths: Iterable[str | Path], top: int = TOP_DEFAULT
) -> list[RunSummary | UnreadableRun]:
    """`summarize` for each path; an unreadable run gives an `UnreadableRun` with the reason."""
    out: list[RunSummary | UnreadableRun] = []
    for path in paths:
        try:
            out.append(summarize(path, top))
        except EconasError as exc:
            out.append(UnreadableRun(str(path), " ".join(str(exc).split())))
    return out


def best_genotypes(state_path: str | Path, top: int = TOP_DEFAULT) -> dict[str, Any]:
    """The final answer of a run: its `top` networks by the final ranking (spec 7.2), with
    their genotypes as JSON and as DARTS literals.

    Returns:
        {run, state, complete (all cycles done), cycle, cycles_total, recovered_from_prev and
        recovery (`_recovery`), score_kind, networks:
        [{rank, arch_id, score, test_acc, segments, parent_id, born_cycle, genotype, literal,
        retrain}]}, where `score_kind` says what score and test_acc are (`summarize`), and
        `retrain` is the network's `summarize_retrain` row (NaN as None) or None when it was
        not retrained.

    Raises:
        StateError: the state file is missing, unreadable or of a newer schema.
    """
    store = StateStore(state_path)
    state = store.load()
    cfg = state.config
    ranked = evo.final_ranking(state, cfg, top)
    retrained = {row["arch_id"]: row for row in _retrain_rows(Path(state_path))}
    networks = []
    for rank, (arch_id, score) in enumerate(ranked, start=1):
        net = state.networks[arch_id]
        genotype = Genotype.from_json(net.genotype_json)
        networks.append(
            {
                "rank": rank,
                "arch_id": arch_id,
                "score": score,
                "segments": net.segments_done,
                "parent_id": net.parent_id,
                "born_cycle": net.born_cycle,
                "genotype": genotype.to_dict(),
                "literal": genotype.to_literal(),
                "retrain": retrained.get(arch_id),
            }
        )
    return {
        "run": RunPaths.of(state_path).run,
        "state": str(state_path),
        "complete": evo.search_done(state, cfg) and not evo.is_planned(state),
        "cycle": max(state.cycle, 0),
        "cycles_total": cfg.cycles,
        **_recovery(store),
        "score_kind": score_meaning(cfg, _train_options(Path(state_path))),
        "networks": _with_test_acc(Path(state_path), state, cfg, networks),
        "waiting": waiting(state),
    }
