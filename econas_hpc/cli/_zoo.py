"""The model-zoo commands: `zoo create`, `zoo train` and `zoo report`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from econas_hpc.cli._common import EXEC_FLAGS, add_exec_options, emit, picked
from econas_hpc.recipes import PROFILES
from econas_hpc.settings import DATASETS
from econas_hpc.ui.zoo_view import render_zoo_created, render_zoo_report, render_zoo_trained

__all__ = ["ZOO_STATE", "add_zoo_commands"]

ZOO_STATE = "state/zoo1.h5"
# `zoo train` offers the two sets its training-set size knows (`ZooTrainOptions.train_size`).
ZOO_DATASETS = tuple(d for d in DATASETS if d != "digits")
ZOO_TRAIN_FLAGS = ("layers", "dataset", "data_dir", "synthetic_train", "synthetic_test", "profile")


def _cmd_zoo_create(args: argparse.Namespace) -> int:
    from econas_hpc.study.zoo import create_zoo

    zoo = create_zoo(
        args.state, args.size, args.nodes, args.ops, args.seed, allow_large=args.allow_large
    )
    info = {
        "path": args.state,
        "size": args.size,
        "nodes": args.nodes,
        "ops": args.ops,
        "seed": args.seed,
        "arch_ids": list(zoo.networks),
    }
    return emit(args, info, render_zoo_created)


def _cmd_zoo_train(args: argparse.Namespace) -> int:
    from econas_hpc.study.zoo_runner import ZooTrainRequest, execution_options, train_zoo

    execution = execution_options(args.config, picked(args, EXEC_FLAGS))
    train = picked(args, ZOO_TRAIN_FLAGS)
    request = ZooTrainRequest(
        args.zoo, args.settings, args.grid, args.reference, train, execution, args.max_attempts
    )
    return emit(args, train_zoo(request).to_dict(), render_zoo_trained)


def _cmd_zoo_report(args: argparse.Namespace) -> int:
    from econas_hpc.study.report import ReportOptions, zoo_report

    options = ReportOptions(args.band, args.threshold, args.adopted, args.out, not args.no_figures)
    return emit(args, zoo_report(args.zoo, options), render_zoo_report)


def _add_zoo_train(zoo: Any) -> None:
    train = zoo.add_parser("train", help="train every zoo network in the given settings")
    train.add_argument("zoo", metavar="ZOO", help="the zoo file")
    train.add_argument("--settings", help="comma-separated settings, e.g. c0r0s0e600,c4r4s0e60")
    train.add_argument("--grid", help='one token per factor, e.g. "c=0,2,4 r=0,2,4 s=0,2 e=30,60"')
    train.add_argument("--reference", help="setting the others are ranked against (c0r0s0e600)")
    group = train.add_argument_group("training options (fixed by the zoo's first `zoo train`)")
    group.add_argument("--dataset", choices=ZOO_DATASETS, help="default cifar10")
    group.add_argument("--data", dest="data_dir", metavar="DIR", help="data directory (data)")
    layers_help = "cells per network (0 = 20; others build smaller networks, for tests)"
    group.add_argument("--layers", type=int, metavar="N", help=layers_help)
    group.add_argument("--synthetic-train", type=int, metavar="N", help="synthetic images (5000)")
    group.add_argument("--synthetic-test", type=int, metavar="N", help="synthetic tests (1000)")
    group.add_argument("--profile", choices=PROFILES, help="supplement")
    add_exec_options(train)
    train.add_argument("--config", metavar="FILE", help="site file with a [slurm] table")
    train.add_argument("--max-attempts", type=int, default=2, help="submissions per unit (2)")
    train.add_argument("--json", action="store_true", help="print one JSON summary instead")
    train.set_defaults(handler=_cmd_zoo_train)


def add_zoo_commands(commands: Any) -> None:
    """The parsers of `zoo create`, `zoo train` and `zoo report`."""
    parser = commands.add_parser("zoo", help="the proxy-reliability study on a model zoo")
    zoo = parser.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    create = zoo.add_parser("create", help="sample a zoo of random networks (never overwrites)")
    create.add_argument("--size", type=int, default=50, help="networks (50)")
    create.add_argument(
        "--allow-large", action="store_true", help="accept --size beyond 100000 networks"
    )
    create.add_argument("--nodes", type=int, default=5, help="nodes per cell (5)")
    create.add_argument("--ops", choices=("zoo13", "search8"), default="zoo13", help="op set")
    create.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    create.add_argument("--state", default=ZOO_STATE, help=f"zoo file to write ({ZOO_STATE})")
    create.add_argument("--json", action="store_true", help="print one JSON object instead")
    create.set_defaults(handler=_cmd_zoo_create)
    _add_zoo_train(zoo)
    report = zoo.add_parser("report", help="rank consistency per setting, and the figures")
    report.add_argument("zoo", metavar="ZOO", help="the zoo file")
    report.add_argument("--out", type=Path, help="figure folder (default <zoo>.report/)")
    report.add_argument("--band", type=float, default=0.15, help="tolerant band, points (0.15)")
    report.add_argument("--threshold", type=float, default=0.6, help="good rho_sp (0.6)")
    report.add_argument("--adopted", default="c4r4s0e60", help="setting marked as adopted")
    report.add_argument("--no-figures", action="store_true", help="write no figures")
    report.add_argument("--json", action="store_true", help="print one JSON object instead")
    report.set_defaults(handler=_cmd_zoo_report)
