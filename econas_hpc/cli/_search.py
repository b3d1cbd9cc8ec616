"""The search commands: `launch`, `resume`, `status` and `best`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from econas_hpc.cli._common import EXEC_FLAGS, add_exec_options, picked, stops_cleanly
from econas_hpc.recipes import PROFILES
from econas_hpc.search.config import STRATEGIES
from econas_hpc.search.runsummary import UnreadableRun
from econas_hpc.settings import DATASETS
from econas_hpc.ui.cluster_view import render_cluster
from econas_hpc.ui.search_view import SearchView, render_best, render_status

__all__ = ["DEFAULT_STATE", "DEMO_STATE", "add_search_commands"]

DEFAULT_STATE = "state/run1.h5"
DEMO_STATE = "state/demo.h5"
SEARCH_FLAGS = (
    "cycles",
    "seed",
    "dataset",
    "data_dir",
    "dry_run",
    "strategy",
    "profile",
    "allow_large",
)


def _cmd_launch(args: argparse.Namespace) -> int:
    from econas_hpc.search.driver import run_search
    from econas_hpc.search.launchfile import resolve_launch
    from econas_hpc.search.summary import summarize_all

    search = picked(args, SEARCH_FLAGS)
    spec = resolve_launch(args.config, search, picked(args, EXEC_FLAGS), demo=args.demo)
    state = args.state or (DEMO_STATE if args.demo else DEFAULT_STATE)
    if args.detach:
        from econas_hpc.search.detach import detach_launch

        return _detached(detach_launch(state, spec, args.argv))
    console = Console()
    with stops_cleanly(f"run {state}"), SearchView(console, state, spec.cfg.cycles) as view:
        run_search(state, spec.cfg, spec.execution, view, spec.train)
    render_status(console, summarize_all([state]))
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from econas_hpc.search.driver import resume_check, run_search
    from econas_hpc.search.launchfile import resolve_launch
    from econas_hpc.search.summary import summarize_all

    search = picked(args, SEARCH_FLAGS)
    if args.config:  # only to refuse a different search: resume never changes it
        search = {**resolve_launch(args.config, {}, {}).cfg.to_dict(), **search}
    if search:
        resume_check(args.state, search)
    if args.detach:
        from econas_hpc.search.detach import detach_resume

        return _detached(detach_resume(args.state, picked(args, EXEC_FLAGS), args.argv))
    console = Console()
    with stops_cleanly(f"run {args.state}"), SearchView(console, args.state) as view:
        run_search(args.state, None, picked(args, EXEC_FLAGS), view)
    render_status(console, summarize_all([args.state]))
    return 0


def _detached(job: Any) -> int:
    """One line: the driver job's id, the state file and the job's log (`--detach`)."""
    sys.stdout.write(f"driver job {job.job_id} submitted for {job.state} (log: {job.log})\n")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from econas_hpc.search.live import cluster_status
    from econas_hpc.search.summary import find_runs, summarize_all

    runs = summarize_all(args.paths or find_runs("state"), top=args.top)
    statuses = [cluster_status(run, live=args.live) for run in runs]  # --live: one sacct per run
    if args.json:
        sys.stdout.writelines(json.dumps(status, sort_keys=True) + "\n" for status in statuses)
    else:
        console = Console()
        render_status(console, runs)
        render_cluster(console, statuses)
    return 2 if any(isinstance(run, UnreadableRun) for run in runs) else 0


def _cmd_best(args: argparse.Namespace) -> int:
    from econas_hpc.search.summary import best_genotypes

    best = best_genotypes(args.state, top=args.top)
    if args.json:
        sys.stdout.write(json.dumps(best, sort_keys=True) + "\n")
    else:
        render_best(Console(), best)
    return 0


def _add_search_options(parser: argparse.ArgumentParser, title: str) -> None:
    group = parser.add_argument_group(title)
    group.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with [search], [train], [execution] and [slurm] tables (all optional)",
    )
    group.add_argument("--cycles", type=int, help="evolution cycles (default 100)")
    group.add_argument("--seed", type=int, help="seed of the search's generator (default 0)")
    group.add_argument("--dataset", choices=DATASETS, help="default cifar10")
    group.add_argument("--data", dest="data_dir", metavar="DIR", help="data directory (data)")
    group.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="score segments with a deterministic pseudo-accuracy; train nothing",
    )
    group.add_argument("--strategy", choices=STRATEGIES, help="hierarchical")
    group.add_argument("--profile", choices=PROFILES, help="supplement")
    group.add_argument(
        "--allow-large",
        action="store_true",
        default=None,
        help="accept sizes beyond the sanity bounds (e.g. more than 1e6 cycles)",
    )


def _add_detach(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach",
        action="store_true",
        help="run the driver as a Slurm job that requeues itself; print its id",
    )


def _add_launch_resume(commands: Any) -> None:
    """The parsers of launch and resume."""
    launch = commands.add_parser("launch", help="start a search (refuses an existing state)")
    launch.add_argument("--state", help=f"state file ({DEFAULT_STATE}; {DEMO_STATE} with --demo)")
    launch.add_argument(
        "--demo",
        action="store_true",
        help="the small real search on real digits that `make run` runs "
        "(econas_hpc/presets/demo.toml)",
    )
    _add_search_options(launch, "search options (fixed for the run)")
    add_exec_options(launch)
    _add_detach(launch)
    launch.set_defaults(handler=_cmd_launch)
    resume = commands.add_parser("resume", help="continue a search from its state file")
    resume.add_argument("state", metavar="STATE", help="the run's state file")
    _add_search_options(resume, "search options (refused when they differ from the run's)")
    add_exec_options(resume)
    _add_detach(resume)
    resume.set_defaults(handler=_cmd_resume)


def add_search_commands(commands: Any) -> None:
    """The parsers of launch, resume, status and best."""
    _add_launch_resume(commands)
    status = commands.add_parser("status", help="progress of runs, from their state files")
    status.add_argument("paths", nargs="*", metavar="PATH", help="state files (state/*.h5)")
    status.add_argument("--json", action="store_true", help="one JSON object per run")
    status.add_argument("--top", type=int, default=5, help="networks listed (5)")
    status.add_argument(
        "--live",
        action="store_true",
        help="also ask the scheduler (one batched query) for the open jobs",
    )
    status.set_defaults(handler=_cmd_status)
    best = commands.add_parser("best", help="export a run's final genotypes")
    best.add_argument("state", metavar="PATH", help="the run's state file")
    best.add_argument("--top", type=int, default=5, help="networks exported (5)")
    best.add_argument("--json", action="store_true", help="one JSON object (with literals)")
    best.set_defaults(handler=_cmd_best)
