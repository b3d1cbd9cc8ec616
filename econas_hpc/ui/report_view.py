"""Rich rendering of `econas-hpc report`: one row per cycle, the Pareto front, the figures.

Plain data in (the dict of `search.report.run_report`), text on a `rich.console.Console` out.
Rows are the cycles of the dict's `cost` series, with the pools at the start of the cycle and
the Spearman values stored when it finished looked up by cycle; nothing else is computed here,
nothing is read from files, nothing exits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["render_report"]

POOLS = ("P20", "P40", "P60")


def _num(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _by_cycle(rows: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    return {int(row["cycle"]): row for row in rows}


def _cycle_table(report: Mapping[str, Any]) -> Table:
    table = Table(
        title="per cycle: best of each pool at its start, Spearman at its end, cost",
        title_justify="left",
    )
    for name in ("cycle", *POOLS, "ρ20~40", "ρ40~60", "segments", "dev h", "intr."):
        table.add_column(name, justify="right", no_wrap=True)
    pools, ranks = _by_cycle(report["pools"]), _by_cycle(report["proxy_rank"])
    costs = _by_cycle(report["cost"])
    if any(not c["finished"] for c in report["cost"]):
        table.caption = "* in progress: the results so far"
    for cycle in sorted({*pools, *costs}):
        best = pools.get(cycle, {}).get("best") or [None] * len(POOLS)
        rank, cost = ranks.get(cycle, {}), costs.get(cycle)
        table.add_row(
            "init" if cycle < 0 else str(cycle),
            *(_num(b) for b in best),
            _num(rank.get("p20_p40")),
            _num(rank.get("p40_p60")),
            *(_cost_cells(cost) if cost else ("-", "-", "-")),
        )
    return table


def _cost_cells(cost: Mapping[str, Any]) -> tuple[str, str, str]:
    failed = f" ({cost['failed']} failed)" if cost["failed"] else ""
    hours = _num(cost["device_hours"], ".3f") + ("" if cost["finished"] else "*")
    return f"{cost['done']}/{cost['planned']}{failed}", hours, str(cost["interruptions"])


def _front_table(networks: Sequence[Mapping[str, Any]]) -> Table | None:
    front = sorted((n for n in networks if n["on_front"]), key=lambda n: n["params"] or 0)
    if not front:
        return None
    table = Table(title="Pareto front (fully trained)", title_justify="left")
    table.add_column("arch_id", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("params", justify="right")
    for net in front:
        table.add_row(net["arch_id"], _num(net["score"]), f"{net['params'] or 0:,}")
    return table


def render_report(console: Console, report: Mapping[str, Any]) -> None:
    """Print `search.report.run_report`'s dict: the cycle table, the front, the figure files."""
    state = "complete" if report["complete"] else "in progress"
    console.rule(escape(str(report["state"])), align="left")
    console.print(
        f"{report['cycle']} of {report['cycles_total']} cycles, {state}"
        + (", dry run" if report["dry_run"] else "")
    )
    if report.get("score_kind"):
        console.print(escape(str(report["score_kind"])))
    console.print(_cycle_table(report))
    front = _front_table(report["networks"])
    if front is not None:
        console.print(front)
    if report["figures"]:
        names = ", ".join(str(p).rsplit("/", 1)[-1] for p in report["figures"])
        console.print(escape(f"figures in {report['out_dir']}: {names}"))
