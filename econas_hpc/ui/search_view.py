"""Rich views of a search: the live view of `launch`/`resume`, the `status` and `best` tables.

This module owns how search progress looks: `SearchView` turns driver events into a live panel
in a terminal, or into one plain, timestamped line per event when output is not a terminal (a
batch job's log); `render_status` and `render_best` print the summaries of
`econas_hpc.search.summary` (`search.runsummary.RunSummary` for `status`). Renderers compute
nothing and never exit.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from econas_hpc.search.runsummary import RunSummary, UnreadableRun

__all__ = ["SearchView", "format_duration", "render_best", "render_status"]

RECENT_EVENTS = 8
POOLS = ("P20", "P40", "P60")


class _Event(Protocol):
    """What the view reads of a `search.reconcile.SearchEvent`."""

    @property
    def kind(self) -> str: ...
    @property
    def cycle(self) -> int: ...
    @property
    def message(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


def format_duration(seconds: float | None) -> str:
    """12 s, 3.5 min, 2.4 h, 1.3 d; "-" for unknown."""
    if seconds is None or math.isnan(seconds):
        return "-"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _score(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _cycle_name(cycle: int) -> str:
    return "initial population" if cycle < 0 else f"cycle {cycle}"


class SearchView:
    """The event callback of a running search (a context manager around the live display).

    Args:
        console: where to draw; its `is_terminal` chooses live view or plain lines.
        title: shown in the live panel (the state file).
        cycles_total: N of "cycle k of N" (0 if unknown).
    """

    def __init__(self, console: Console, title: str, cycles_total: int = 0) -> None:
        self.console, self.title, self.cycles_total = console, title, cycles_total
        self.live = console.is_terminal
        self.recent: deque[str] = deque(maxlen=RECENT_EVENTS)
        self.cycle, self.planned, self.done, self.failed, self.retries = -1, 0, 0, 0, 0
        self._live: Live | None = None
        self._handlers: list[logging.Handler] = []

    def __enter__(self) -> SearchView:
        if self.live:
            # Log records print above the live panel, warnings and worse only: plain stream
            # handlers would write through it, and job start-up INFO lines are noise here.
            root = logging.getLogger()
            self._handlers = root.handlers[:]
            root.handlers = [RichHandler(logging.WARNING, console=self.console, show_path=False)]
            self._live = Live(self._panel(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self._panel())
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
            logging.getLogger().handlers = self._handlers

    def __call__(self, event: _Event) -> None:
        self._count(event)
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        if not self.live:
            line = f"{dt.datetime.now().isoformat(timespec='seconds')} {event.kind:<13} "
            self.console.file.write(f"{line}{_cycle_name(event.cycle)}: {event.message}\n")
            self.console.file.flush()
            return
        self.recent.append(f"{stamp} {event.kind:<13} {event.message}")
        if self._live is not None:
            self._live.update(self._panel())

    def _count(self, event: _Event) -> None:
        if event.kind == "cycle_started":
            self.cycle, self.done, self.failed, self.retries = event.cycle, 0, 0, 0
            self.planned = int(event.data.get("continued", 0)) + int(event.data.get("children", 0))
        elif event.kind in ("started", "resumed") and event.cycle != self.cycle:
            self.cycle = event.cycle
        elif event.kind == "segment_done":
            self.done += 1
        elif event.kind == "failed":
            self.done, self.failed = self.done + 1, self.failed + 1
        elif event.kind == "retry":
            self.retries += 1
        elif event.kind == "cycle_done":
            self.done = self.planned

    def _panel(self) -> Panel:
        of = f" of {self.cycles_total}" if self.cycles_total else ""
        head = Text(
            f"{_cycle_name(self.cycle)}{of}: {self.done}/{self.planned} segments, "
            f"{self.failed} failed, {self.retries} retries"
        )
        bar = ProgressBar(total=max(self.planned, 1), completed=self.done, width=50)
        lines = Text("\n".join(self.recent) or "waiting for the first event...", style="dim")
        return Panel(Group(head, bar, lines), title=escape(self.title), title_align="left")


# --- status and best --------------------------------------------------------------------------


def _overview(run: RunSummary) -> Table:
    table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    pools, best, segs, driver = run.pools, run.pool_best, run.segments, run.driver
    table.add_row(
        "progress",
        f"cycle {run.cycle} of {run.cycles_total} done ({run.phase}), {run.networks} networks",
    )
    table.add_row("pools", ", ".join(f"{p} {pools[p]} (best {_score(best[p])})" for p in POOLS))
    table.add_row(
        "segments",
        f"{segs['done']} done, {segs['running']} running, "
        f"{segs['pending']} pending, {segs['failed']} failed; {run.retries} retries",
    )
    if run.failures:
        own = ", ".join(f"{n} {k}" for k, n in sorted(run.failures.items()))
        table.add_row("failed networks", f"{own} (their own: never the environment's)")
    for line in _waiting_lines(run.waiting):
        table.add_row("[red]waiting[/red]", escape(f"{line}; fix it, then `resume`"))
    table.add_row("proxy rank", _proxy_rank(run))
    table.add_row("device time", f"{run.gpu_hours:.3f} h")
    table.add_row(
        "time left",
        f"about {format_duration(run.time_left_s)}"
        if run.phase != "done"
        else "none: the search is done",
    )
    who = (
        "none"
        if not driver
        else f"pid {driver['pid']} on {driver['host']}"
        + (f", job {driver['job_id']}" if driver.get("job_id") else "")
    )
    table.add_row(
        "driver",
        escape(f"{who}; executor {run.executor or '?'}" + ("; dry run" if run.dry_run else "")),
    )
    if run.recovered_from_prev or (run.loaded_from and run.loaded_from != run.state):
        why = run.recovery or f"main file unreadable; read {run.loaded_from}"
        table.add_row("[red]recovered[/red]", escape(f"from the previous snapshot: {why}"))
    return table


def _proxy_rank(run: RunSummary) -> Text:
    """Spearman P20~P40 and P40~P60 of the latest cycle, each below the run's threshold in red
    with a warning."""
    warn = run.proxy_rank_warn
    text = Text("Spearman ")
    low = []
    for index, (key, value) in enumerate(run.proxy_rank.items()):
        name = key.replace("_", "~")
        below = value is not None and value < warn
        text.append(", " if index else "")
        text.append(f"{name} {_score(value)}", style="bold red" if below else "")
        if below:
            low.append(name)
    if low:
        text.append(
            f"  WARNING: {' and '.join(low)} below {warn:.2f}: the cheap proxy ranks "
            "networks inconsistently; its pools may keep the wrong ones",
            style="bold red",
        )
    return text


def _mean_std(row: Mapping[str, Any] | None) -> str:
    """Retrained test error as "2.71 ± 0.08 % (2/2 seeds)" (finished/all); "-" if none."""
    if not row:
        return "-"
    if row.get("test_error_mean") is None:
        return f"- (0/{row['seeds']} seeds)"
    std = row.get("test_error_std")
    spread = f" ± {std:.2f}" if std is not None else ""
    return f"{row['test_error_mean']:.2f}{spread} % ({row['finished']}/{row['seeds']} seeds)"


def render_retrain(console: Console, rows: Sequence[Mapping[str, Any]], title: str = "") -> None:
    """The retraining rows of `search.summary.summarize_retrain` (as `retrain` prints them)."""
    console.print(_retrain_table(rows, title))


def _retrain_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> Table:
    table = Table(
        title=title or "final retraining (test error, mean ± std over finished seeds)",
        title_justify="left",
    )
    right = ("rank", "proxy", "params", "GPU h", "preempt")
    for name in (
        "rank",
        "arch_id",
        "setting",
        "test error",
        "proxy",
        "params",
        "GPU h",
        "preempt",
        "status",
    ):
        # arch_id never wraps: it is what users copy into `train`/`inspect`.
        table.add_column(
            name, justify="right" if name in right else "left", no_wrap=name == "arch_id"
        )
    for row in rows:
        params = row.get("params") or 0
        table.add_row(
            str(row["rank"]),
            row["arch_id"],
            row["setting"],
            _mean_std(row),
            _score(row.get("proxy_score")),
            f"{params / 1e6:.2f} M" if params else "-",
            f"{row.get('gpu_hours') or 0.0:.2f}",
            str(row.get("preemptions", 0)),
            ", ".join(row.get("statuses", ())),
        )
    return table


def _leaders(best: Sequence[Mapping[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    right = ("#", "score", "test acc", "segments", "born")
    retrained = any(net.get("retrain") for net in best)  # `best` rows of retrained runs
    for name in ("#", "arch_id", "score", "test acc", "segments", "parent", "born"):
        table.add_column(name, justify="right" if name in right else "left")
    if retrained:
        table.add_column("retrained test error")
    for rank, net in enumerate(best, start=1):
        cells = [
            str(rank),
            net["arch_id"],
            _score(net["score"]),
            _score(net.get("test_acc")),
            str(net["segments"]),
            net.get("parent_id") or "-",
            str(net.get("born_cycle", "")),
        ]
        table.add_row(*cells, *((_mean_std(net.get("retrain")),) if retrained else ()))
    return table


def _waiting_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """`summary.waiting` rows as lines: "3 segment(s) waiting: data folder unreadable (...)"."""
    return [f"{r['segments']} segment(s) waiting: {r['label']}" for r in rows]


def render_status(console: Console, runs: Sequence[RunSummary | UnreadableRun]) -> None:
    """Print one block per run: overview (cycle k of N, pools, proxy-rank Spearman with a
    warning below the threshold, segments, retries, device hours, time left, driver), the five
    best networks and, once retrained, their test errors. `runs`: `summary.summarize_all`."""
    if not runs:
        console.print("no runs found (state files are state/*.h5; give a path)")
    for run in runs:
        console.rule(escape(str(run.state)), align="left")
        if isinstance(run, UnreadableRun):
            console.print(f"[red]cannot read:[/red] {escape(run.error)}")
            continue
        console.print(_overview(run))
        if run.best:
            console.print(_leaders(run.best, "best networks (furthest trained first)"))
            if run.score_kind:
                console.print(escape(run.score_kind))
        if run.retrain:
            console.print(_retrain_table(run.retrain))


def render_best(console: Console, best: Mapping[str, Any]) -> None:
    """Print a run's final genotypes (`summary.best_genotypes`): a table (with the retrained
    test error, mean ± std over seeds, once the run was retrained) and each literal."""
    state = (
        "complete"
        if best["complete"]
        else (f"incomplete: {best['cycle']} of {best['cycles_total']} cycles done")
    )
    console.print(escape(f"{best['state']}: {state}"))
    if best.get("recovered_from_prev"):
        console.print(
            f"[red]recovered from the previous snapshot:[/red] {escape(best['recovery'])}"
        )
    for line in _waiting_lines(best.get("waiting") or []):
        console.print(f"[red]{escape(line)}[/red]; fix it, then `resume`")
    if not best["networks"]:
        console.print("no network has finished all its segments yet")
        return
    console.print(_leaders(best["networks"], "final ranking"))
    if best.get("score_kind"):
        console.print(escape(best["score_kind"]))
    for net in best["networks"]:
        console.print(f"[bold]{net['rank']}. {net['arch_id']}[/bold] ({_score(net['score'])})")
        console.print(escape(net["literal"]), soft_wrap=True)
