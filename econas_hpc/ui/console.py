"""Rich renderers for the CLI: plain data in, text on a `rich.console.Console` out.

This module (with `econas_hpc.cli`) is the only place that imports rich. Renderers take plain data
(dicts, dataclasses) and a console; they never compute anything, read argv, or exit. Later issues
add the live search view and the status tables here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["format_count", "render_inspect"]


def format_count(value: float) -> str:
    """Format a count in millions, the unit the NAS papers use: 3349342 -> '3.349 M'."""
    return f"{value / 1e6:.3f} M"


def _input_name(index: int) -> str:
    """DARTS state index -> readable input: 0/1 are the two previous cells, j >= 2 is node j-2."""
    if index == 0:
        return "c[k-2]"
    if index == 1:
        return "c[k-1]"
    return f"node {index - 2}"


def _cell_table(title: str, edges: Sequence[Sequence[Any]], concat: Sequence[int]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("node", justify="right")
    table.add_column("input A")
    table.add_column("input B")
    for node, start in enumerate(range(0, len(edges), 2)):
        cells = [escape(f"{op} ({_input_name(int(idx))})") for op, idx in edges[start : start + 2]]
        table.add_row(str(node), *cells)
    outputs = ", ".join(_input_name(int(i)) for i in concat)
    table.caption = escape(f"output = concat({outputs})")
    table.caption_justify = "left"
    return table


def _width_text(count: int, channels: int, where: str) -> str:
    return f"{count} × {channels} = {count * channels} channels {where}"


def render_inspect(console: Console, info: Mapping[str, Any]) -> None:
    """Print the `econas-hpc inspect` report.

    Args:
        console: where to print.
        info: the summary from `econas_hpc.cli.inspect_info`: arch_id, genotype (JSON dict
            form), setting, dataset, channels, resolution, layers, params, params_with_aux
            (None when the auxiliary head cannot be built; aux_note says why), macs, macs_note
            (ImageNet only, else None),
            feature_size (side in px of the map entering global pooling), normal_concat_len,
            reduce_concat_len, normal_width and reduce_width.
    """
    genotype = info["genotype"]
    console.print(f"[bold]arch_id {info['arch_id']}[/bold]  {info['setting']} on {info['dataset']}")
    console.print(
        f"{info['channels']} channels, {info['resolution']} px input, {info['layers']} cells"
    )
    console.print(_cell_table("normal cell", genotype["normal"], genotype["normal_concat"]))
    console.print(_cell_table("reduction cell", genotype["reduce"], genotype["reduce_concat"]))
    channels = int(info["channels"])
    summary = Table(show_header=False, show_edge=False, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row(
        "normal output",
        _width_text(int(info["normal_concat_len"]), channels, "at the first stage"),
    )
    summary.add_row(
        "reduce output",
        _width_text(int(info["reduce_concat_len"]), 2 * channels, "at the first reduction"),
    )
    summary.add_row("parameters", f"{format_count(info['params'])} (without the auxiliary head)")
    with_aux = info.get("params_with_aux")
    summary.add_row(
        "with aux head",
        format_count(with_aux) if with_aux is not None else escape(f"n/a: {info.get('aux_note')}"),
    )
    summary.add_row("MACs / image", format_count(info["macs"]))
    if info.get("macs_note"):
        summary.add_row("", escape(str(info["macs_note"])))
    side = int(info["feature_size"])
    summary.add_row("before pooling", f"{side} × {side} px feature map")
    console.print(summary)
