"""The `report` command: a run's figures (PNG + SVG) and its series, from the state file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from econas_hpc.cli._common import json_line
from econas_hpc.ui.report_view import render_report

__all__ = ["add_report_command"]


def _cmd_report(args: argparse.Namespace) -> int:
    from econas_hpc.search.report import run_report

    report = run_report(args.state, args.out, draw=not args.no_figures)
    if args.json:
        sys.stdout.write(json_line(report))
    else:
        render_report(Console(), report)
    return 0


def add_report_command(commands: Any) -> None:
    """The parser of `report STATE [--out DIR] [--json] [--no-figures]`."""
    report = commands.add_parser(
        "report",
        help="figures of a run: best per pool, proxy rank, score vs params, cost per cycle",
    )
    report.add_argument("state", metavar="STATE", help="the run's state file (state/run1.h5)")
    report.add_argument(
        "--out", type=Path, help="figure folder (default <state>.report/ beside it)"
    )
    report.add_argument("--json", action="store_true", help="print the series as one JSON object")
    report.add_argument("--no-figures", action="store_true", help="write no figures")
    report.set_defaults(handler=_cmd_report)
