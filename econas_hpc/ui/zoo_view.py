"""Rich renderers of the model-zoo commands (`zoo create`, `zoo train`, `zoo report`).

Plain dicts in (from `study.zoo`, `study.zoo_runner.TrainSummary.to_dict` and
`study.report.zoo_report`), text on a `rich.console.Console` out. Nothing is computed here
besides formatting; nothing is read from files, nothing exits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["render_zoo_created", "render_zoo_report", "render_zoo_trained"]


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}×"


def render_zoo_created(console: Console, info: Mapping[str, Any]) -> None:
    """`zoo create`: info has path, size, nodes, ops, seed and arch_ids."""
    console.print(
        f"[bold]created zoo {escape(str(info['path']))}[/bold]: {info['size']} networks "
        f"({info['nodes']} nodes, op set {info['ops']}, seed {info['seed']}, clean concat)"
    )
    ids = list(info["arch_ids"])
    shown = ", ".join(ids[:8]) + (f", … (+{len(ids) - 8})" if len(ids) > 8 else "")
    console.print(f"arch_ids: {shown}")


def render_zoo_trained(console: Console, summary: Mapping[str, Any]) -> None:
    """`zoo train`: a `TrainSummary.to_dict()`."""
    added = ", ".join(summary["settings_added"]) or "none"
    console.print(
        f"[bold]zoo {escape(str(summary['zoo']))}[/bold]: {len(summary['settings'])} settings "
        f"(new: {escape(added)}), {summary['units_total']} units"
    )
    console.print(
        f"this run: {summary['planned']} to train, {summary['adopted']} adopted, "
        f"{summary['submitted']} submitted, {summary['ingested']} ingested, "
        f"{summary['failed']} failed"
    )
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(summary["statuses"].items()))
    console.print(f"results in the zoo: {statuses or 'none'}")


def _settings_table(report: Mapping[str, Any]) -> Table:
    band, good = report["band"], set(report["good"])
    table = Table(title="rank consistency with the reference", title_justify="left")
    for name, justify in (
        ("setting", "left"),
        ("ρ_sp", "right"),
        (f"tolerant ρ_sp (b={band:g})", "right"),
        ("accel. (MACs×img×ep)", "right"),
        ("accel. (measured)", "right"),
        ("n", "right"),
        ("excluded", "right"),
        ("pending", "right"),
        ("flips", "right"),
        ("mean acc %", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in report["settings"]:
        mark = " [green](adopted)[/green]" if row["setting"] == report["adopted"] else ""
        mark += " [yellow]★[/yellow]" if row["setting"] in good else ""
        excluded = str(row["excluded"])
        if row["excluded_statuses"]:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(row["excluded_statuses"].items()))
            excluded += f" ({detail})"
        measured = _ratio(row["acceleration_measured"])
        if row["acceleration_measured"] is not None and row["measured_basis"] != "gpu_s":
            measured += " wall"
        table.add_row(
            row["setting"] + mark,
            _fmt(row["rho_sp"]),
            _fmt(row["rho_sp_tolerant"]),
            _ratio(row["acceleration"]),
            measured,
            str(row["ranked"]),
            excluded,
            str(row["pending"]),
            str(row["flips"]),
            _fmt(row["mean_test_acc"], ".2f"),
        )
    return table


def _lines_table(lines: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(
        title="ρ_e along each factor line (settings by increasing subscript)", title_justify="left"
    )
    table.add_column("factor")
    table.add_column("settings")
    table.add_column("ρ_sp")
    table.add_column("ρ_e", justify="right")
    for line in lines:
        table.add_row(
            line["factor"],
            " → ".join(line["settings"]),
            ", ".join(f"{v:.3f}" for v in line["rho_sp"]),
            _fmt(line["rho_e"], "+.2f"),
        )
    return table


def render_zoo_report(console: Console, report: Mapping[str, Any]) -> None:
    """`zoo report`: the dict of `study.report.zoo_report`."""
    ref = report["reference"]
    console.print(
        f"[bold]zoo {escape(str(report.get('zoo', '')))}[/bold]: {report['networks']} networks"
    )
    for note in report["warnings"]:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    if ref is None:
        return
    devices = ", ".join(ref["devices"]) or "n/a"
    console.print(
        f"reference {ref['setting']} ({ref['recipe']} recipe): {ref['ranked']} networks ranked, "
        f"mean test accuracy {_fmt(ref['mean_test_acc'], '.2f')} %, devices: {escape(devices)}"
    )
    console.print(_settings_table(report))
    if report["factor_lines"]:
        console.print(_lines_table(report["factor_lines"]))
    good = ", ".join(report["good"]) or "none"
    console.print(
        f"good settings (★: Pareto front of ρ_sp and acceleration, or ρ_sp ≥ "
        f"{report['threshold']:g}): {good}"
    )
    if report.get("figures"):
        console.print(f"figures: {len(report['figures'])} files in {escape(report['out_dir'])}")
