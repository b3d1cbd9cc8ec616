"""`compare`: EcoNAS against the single-proxy variant and random sampling at an equal budget."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from econas_hpc.cli._common import json_line

__all__ = ["add_compare_command"]

COMPARE_FLAGS = ("budget_epochs", "top", "workers", "device", "work_dir")


def _cmd_compare(args: argparse.Namespace) -> int:
    from econas_hpc.bench.compare import load_compare_config, run_compare
    from econas_hpc.bench.compare_report import format_table, summarize
    from econas_hpc.fsio import make_private_dir, write_bytes_atomic
    from econas_hpc.settings import Setting

    overrides = {name: getattr(args, name) for name in COMPARE_FLAGS}
    if args.seeds is not None:
        overrides["seeds"] = tuple(range(args.seeds))
    opts = load_compare_config(args.preset, overrides)
    out = Path(args.out) if args.out else None
    if out is not None:
        make_private_dir(out, "comparison folder")
    raw = run_compare(opts, out or Path(".bench/compare"))
    summary = summarize(raw, Setting.parse(opts.search.setting).e)
    text = json_line(summary)
    if out is not None:
        from econas_hpc.study.compare_figures import write_compare_figures

        write_bytes_atomic(out / "compare.json", json.dumps(json.loads(text), indent=1).encode())
        write_compare_figures(summary, out)
    sys.stdout.write(text if args.json else format_table(summary) + "\n")
    return 0


def add_compare_command(commands: Any) -> None:
    """The parser of `compare`."""
    compare = commands.add_parser(
        "compare",
        help="EcoNAS vs single proxy vs random sampling at an equal training budget",
        description="Run hierarchical EcoNAS, the single-proxy variant (every network trains the "
        "whole schedule at once) and random sampling on the same data, with the same budget of "
        "proxy epochs, over several seeds; retrain each one's top networks in a longer setting; "
        "report mean ± std of their final test accuracy and best-so-far against budget.",
    )
    compare.add_argument(
        "preset",
        nargs="?",
        default="cpu",
        help="cpu (digits, <= 30 min on 2 cores), gpu (CIFAR-10 at the paper's scale) or a "
        "TOML file with [compare], [search] and [train] tables (default cpu)",
    )
    compare.add_argument("--out", metavar="DIR", help="write compare.json, .png and .svg here")
    compare.add_argument("--json", action="store_true", help="print the result as JSON")
    compare.add_argument("--seeds", type=int, help="search seeds 0..N-1 (preset's)")
    compare.add_argument("--budget", dest="budget_epochs", type=int, help="proxy epochs each")
    compare.add_argument("--top", type=int, help="networks retrained per search (preset's)")
    compare.add_argument("--workers", type=int, help="processes training at once (preset's)")
    compare.add_argument("--device", help="auto, cpu, cuda or cuda:N (preset's)")
    compare.add_argument("--work-dir", dest="work_dir", help="where networks train (OUT/work)")
    compare.set_defaults(handler=_cmd_compare)
