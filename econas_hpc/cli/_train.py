"""Training outside a search: `train` (one genotype) and `retrain` (a run's top networks)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from econas_hpc.cli._common import EXIT_INTERRUPTED, add_time_limit, json_line, picked
from econas_hpc.cluster.options import EXECUTOR_KINDS, SUBMIT_KINDS
from econas_hpc.settings import DATASETS, IMAGENET_BASE
from econas_hpc.ui.search_view import render_retrain

__all__ = ["add_train_commands"]

SUBMIT_FLAGS = ("partition", "timeout_min", "account", "qos")
RETRAIN_FLAGS = (
    "executor",
    "partition",
    "gpus_per_node",
    "timeout_min",
    "device",
    "poll_interval_s",
)


def _cmd_train(args: argparse.Namespace) -> int:
    from econas_hpc.search.standalone import TrainRequest, train_genotype

    submit = args.executor or ("slurm" if args.partition or args.nodes > 1 else "")
    request = TrainRequest(
        genotype=args.genotype,
        setting=args.setting,
        epochs=args.epochs,
        run_dir=args.run_dir,
        dataset=args.dataset,
        data_dir=args.data_dir,
        seed=args.seed,
        device=args.device,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        global_batch=args.batch_size,
        accumulate=args.accumulate,
        executor=submit,
        execution=tuple(picked(args, SUBMIT_FLAGS).items()),
    )
    result = train_genotype(request)
    if args.json:
        sys.stdout.write(json_line(result))
    else:
        Console().print_json(json_line(result))
    status = result.get("status", "ok")  # a submission has no status yet
    return 0 if status == "ok" else EXIT_INTERRUPTED if status == "interrupted" else 1


def _cmd_retrain(args: argparse.Namespace) -> int:
    from econas_hpc.search.retrain import RetrainOptions, retrain, summarize_retrain

    options = RetrainOptions(
        top=args.top,
        setting=args.setting,
        seeds=args.seeds,
        wait=not args.no_wait,
        execution=tuple(picked(args, RETRAIN_FLAGS).items()),
    )
    rows = summarize_retrain(retrain(args.state, options))
    if args.json:
        sys.stdout.writelines(json_line(row) for row in rows)
    else:
        title = f"retraining of {args.state} at {args.setting} (test error, mean ± std)"
        render_retrain(Console(), rows, title)
    return 0


def _add_train_parser(commands: Any) -> None:
    """The parser of `train`."""
    train = commands.add_parser(
        "train",
        help="train one genotype (CIFAR-10 or ImageNet, here or submitted)",
        description="Train a genotype: here in the foreground (resumable; SIGUSR2/SIGTERM stop "
        "it at a step boundary with a checkpoint), on several local GPUs, or as a submitted "
        "job. Exit 0 when finished or submitted, 130 when stopped, 1 when training failed.",
    )
    train.add_argument("genotype", metavar="GENOTYPE", help="built-in name, JSON or literal")
    train.add_argument("--setting", default="c0r0s0e600", help="cXrYsZeW (c0r0s0e600)")
    train.add_argument("--epochs", default="", metavar="A:B", help="epochs [A, B) (all)")
    train.add_argument("--run-dir", default="runs/train", help="checkpoints and result")
    train.add_argument("--dataset", choices=(*DATASETS, IMAGENET_BASE.name), default="cifar10")
    train.add_argument(
        "--data",
        dest="data_dir",
        default="data",
        metavar="DIR",
        help="dataset folder (ImageNet: DIR/train and DIR/val)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    _add_train_distribution(train)
    train.add_argument("--json", action="store_true", help="print one JSON object")
    train.set_defaults(handler=_cmd_train)


def _add_train_distribution(train: argparse.ArgumentParser) -> None:
    """`train`'s multi-GPU and submission options."""
    dist = train.add_argument_group("ImageNet: several GPUs (global batch B, lr 0.8 x B / 2048)")
    dist.add_argument("--nodes", type=int, default=1, help="nodes of the job (1)")
    dist.add_argument("--gpus-per-node", type=int, default=1, help="processes per node (1)")
    dist.add_argument(
        "--batch-size",
        type=int,
        default=0,
        metavar="B",
        help="global batch (default 64 per GPU: 2048 on 32 GPUs)",
    )
    dist.add_argument(
        "--accumulate",
        type=int,
        default=1,
        metavar="K",
        help="micro-batches per GPU and step (gradient accumulation)",
    )
    sub = train.add_argument_group("submission (--partition or --nodes > 1 submit to Slurm)")
    sub.add_argument("--executor", choices=SUBMIT_KINDS, help="submit instead of running")
    sub.add_argument("--partition", help="Slurm partition")
    add_time_limit(sub)
    sub.add_argument("--account")
    sub.add_argument("--qos")


def _add_retrain_parser(commands: Any) -> None:
    """The parser of `retrain`."""
    retrain = commands.add_parser(
        "retrain",
        help="retrain a run's top networks in the original setting",
        description="Retrain the search's top networks from scratch (600 epochs at c0r0s0e600 "
        "with cutout, path dropout, auxiliary head, cosine), one preemptible job per network "
        "and seed; results go to the run's state file (/retrain). Run it again to adopt the "
        "jobs still running and collect finished ones.",
    )
    retrain.add_argument("state", metavar="STATE", help="the run's state file")
    retrain.add_argument("--top", type=int, default=5, help="networks retrained (5)")
    retrain.add_argument("--setting", default="c0r0s0e600", help="cXrYsZeW (c0r0s0e600)")
    retrain.add_argument("--seeds", type=int, default=1, help="seeds per network (1)")
    retrain.add_argument("--no-wait", action="store_true", help="submit, record and return")
    retrain.add_argument("--executor", choices=EXECUTOR_KINDS, help="default: the run's")
    retrain.add_argument("--partition", help="Slurm partition")
    retrain.add_argument("--gpus-per-node", type=int, help="GPUs per job (default: the run's)")
    add_time_limit(retrain)
    retrain.add_argument("--device", help="training device: auto, cpu, cuda, cuda:N")
    retrain.add_argument("--poll-interval", dest="poll_interval_s", type=float, metavar="S")
    retrain.add_argument("--json", action="store_true", help="one JSON object per network")
    retrain.set_defaults(handler=_cmd_retrain)


def add_train_commands(commands: Any) -> None:
    """The parsers of train and retrain."""
    _add_train_parser(commands)
    _add_retrain_parser(commands)
