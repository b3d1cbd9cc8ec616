"""`econas-hpc report`: a run's series and figures, from its files alone, also mid-run.

This module owns reading what the figures of a run need and writing them: one snapshot of the
state file through `StateStore` (which reads only complete files: saves replace them
atomically, the previous one is kept), the parameter count and wall time of the segments in
the network folders' result files (read-only: unlike the driver, a report never moves a file
aside), and the per-segment interruption counters of `search.live.segment_faults`. It takes no
lock and writes nothing but the figures, so it runs beside a driver that keeps saving; files
newer than the snapshot are harmless (segments the snapshot does not know are ignored).
The series are `search.history`'s, the drawing `search.figures`'.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from econas_hpc.errors import ConfigError, EconasError
from econas_hpc.records import RunState
from econas_hpc.search import figures
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.history import RunHistory, SegmentFacts, SegmentKey, run_history
from econas_hpc.search.live import segment_faults
from econas_hpc.search.runfile import TrainOptions, read_run_file
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.scores import score_meaning
from econas_hpc.search.workitems import result_file
from econas_hpc.store.state import StateStore

__all__ = ["default_out_dir", "read_history", "run_report", "score_kind", "segment_facts"]


def default_out_dir(state_path: str | Path) -> Path:
    """`state/run1.h5` -> `state/run1.report/`."""
    path = Path(state_path)
    return path.with_name(f"{path.stem}.report")


def _facts_of(path: Path) -> SegmentFacts | None:
    """A final result file's parameter count and wall time; None while it is missing or not
    final (an interrupted segment's), or when it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("status") == "interrupted":
            return None
        params, wall_s = int(data.get("params") or 0), float(data.get("wall_s") or 0.0)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return SegmentFacts(params, wall_s if math.isfinite(wall_s) else 0.0)


def segment_facts(state: RunState, paths: RunPaths) -> dict[SegmentKey, SegmentFacts]:
    """Facts of each network's latest concluded segment and of every concluded segment of the
    cycle in progress (the ones the history needs), from their result files."""
    cfg = state.config
    keys = {(n.arch_id, n.segments_done) for n in state.networks.values() if n.segments_done}
    if state.cycles and state.cycles[-1].cycle == state.cycle:  # planned, not finished
        record = state.cycles[-1]
        keys.update(record.continued)
        keys.update((arch_id, 1) for arch_id in record.children)
    facts = {}
    for arch_id, segment in sorted(keys):
        job = state.jobs.get((arch_id, segment))
        if job is None or job.state not in ("done", "failed"):
            continue
        fact = _facts_of(result_file(paths, cfg, arch_id, segment))
        if fact is not None:
            facts[(arch_id, segment)] = fact
    return facts


def _snapshot(state_path: str | Path) -> tuple[RunState, RunHistory]:
    paths = RunPaths.of(state_path)
    state = StateStore(paths.state).load()
    by_name = {paths.job_name(a, s): (a, s) for a, s in state.jobs}
    faults = {
        by_name[name]: c for name, c in segment_faults(paths.state).items() if name in by_name
    }
    return state, run_history(state, segment_facts(state, paths), faults)


def read_history(state_path: str | Path) -> RunHistory:
    """The `RunHistory` of the run at `state_path`, from one snapshot of its state file.

    Raises:
        StateError: the state file is missing, unreadable or of a newer schema.
    """
    return _snapshot(state_path)[1]


def score_kind(state_path: str | Path, cfg: SearchConfig) -> str:
    """What the run's scores are (`scores.score_meaning`, as `status` says it)."""
    if cfg.dry_run:
        return "score: the dry run's pseudo-accuracy (%); nothing was trained"
    train: TrainOptions | None
    try:
        train = read_run_file(RunPaths.of(state_path))[0]
    except EconasError:
        train = None  # a state file copied without its run file: the recipe defaults
    return score_meaning(cfg, train)


def run_report(
    state_path: str | Path, out_dir: str | Path | None = None, draw: bool = True
) -> dict[str, Any]:
    """The run's series as a JSON-ready dict, its figures written (PNG + SVG) unless not `draw`.

    Returns:
        `RunHistory.to_dict()` plus score_kind (what the scores are), state, run, out_dir
        and figures (the written paths).

    Raises:
        StateError: the state file is missing, unreadable or of a newer schema.
        ConfigError: `out_dir` is a file.
        FileSystemFault: the figure folder cannot be written.
    """
    out = Path(out_dir) if out_dir is not None else default_out_dir(state_path)
    if draw and out.exists() and not out.is_dir():
        raise ConfigError(f"figure folder {out} is a file; give a folder (--out DIR)")
    state, history = _snapshot(state_path)
    kind = score_kind(state_path, state.config)
    written = figures.plot_run(history, out, kind) if draw else []
    return {
        **history.to_dict(),
        "score_kind": kind,
        "state": str(state_path),
        "run": RunPaths.of(state_path).run,
        "out_dir": str(out),
        "figures": [str(p) for p in written],
    }
