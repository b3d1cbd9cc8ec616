"""Rich lines for the cluster part of `status`: interruptions, GPU time lost, live job states.

This module owns how `search.live.cluster_status` data looks. It computes nothing and exits
never; `cli` prints it after the `search_view` status block of each run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

__all__ = ["faults_line", "live_line", "render_cluster"]

_FAULTS = (
    ("preemptions", "preemption"),
    ("timeouts", "time-limit requeue"),
    ("node_failures", "node failure"),
    ("cancellations", "cancellation"),
    ("crashes", "crash"),
)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "es" if word.endswith("sh") else "s")


def faults_line(faults: Mapping[str, Any]) -> str:
    """'3 of 40 segments: 2 preemptions (31 GPU-s lost), 1 time-limit requeue, ...'."""
    parts = [_plural(int(faults.get(key, 0)), word) for key, word in _FAULTS]
    parts[0] += f" ({float(faults.get('gpu_s_lost', 0.0)):.0f} GPU-s lost)"
    hit = f"{faults.get('interrupted', 0)} of {faults.get('segments', 0)} segments"
    return f"{hit}: {', '.join(parts)}"


def live_line(live: Mapping[str, Any]) -> str:
    """'slurm: 3 running, 2 pending (one query)' or why nothing was asked."""
    if "error" in live:
        return f"scheduler not reachable: {live['error']}"
    if not live.get("queried"):
        if live.get("executor") == "slurm":
            return "slurm: no open jobs to ask about"
        return f"no scheduler to ask ({live.get('executor') or 'unknown'} executor)"
    states = ", ".join(f"{n} {state}" for state, n in sorted(live["states"].items()))
    return f"{live['executor']}: {states or 'no jobs'} (one batched query)"


def render_cluster(console: Console, runs: Sequence[Mapping[str, Any]]) -> None:
    """Print the interruption line (and the live line, if asked) of each readable run."""
    for run in runs:
        if "faults" not in run:
            continue
        name = escape(str(run.get("run") or run["state"]))
        console.print(f"[bold]{name}[/bold] interruptions: {escape(faults_line(run['faults']))}")
        if "live" in run:
            console.print(f"[bold]{name}[/bold] live jobs: {escape(live_line(run['live']))}")
