"""The `econas-hpc` command line: argument parsing, logging set-up, exit codes.

This is the only module that reads argv or decides exit codes (`main` returns them; the console
script and `python -m econas_hpc` pass them to `sys.exit`). Each `_cmd_*` parses nothing itself
and stays small: it calls library functions and hands plain data to `econas_hpc.ui.console`.

Exit codes: 0 success; 2 for argparse usage errors and every `EconasError` (one line on stderr,
no traceback); 130 on Ctrl-C. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from econas_hpc import __version__
from econas_hpc.errors import EconasError, InvalidSettingError
from econas_hpc.ui.cluster_view import render_cluster
from econas_hpc.ui.console import render_inspect
from econas_hpc.ui.search_view import SearchView, render_best, render_status
from econas_hpc.ui.zoo_view import render_zoo_created, render_zoo_report, render_zoo_trained

PROG = "econas-hpc"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DATASETS = ("cifar10", "imagenet")

log = logging.getLogger(__name__)


def _configure_logging() -> None:
    """Plain INFO logging to stderr, configured once for the whole process."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )


def inspect_info(genotype_text: str, setting_text: str, dataset: str) -> dict[str, Any]:
    """Build the network for a genotype in a setting and summarise it as plain data.

    Args:
        genotype_text: a built-in name, JSON file path, JSON string or DARTS literal.
        setting_text: a reduced setting such as "c4r4s0e60".
        dataset: "cifar10" or "imagenet" (chooses the base network).

    Returns:
        The summary with arch_id, genotype, setting, dataset, channels, resolution, layers,
        params, params_with_aux (None where the auxiliary head cannot be built at this
        resolution; aux_note says why), macs, feature_size, normal/reduce concat lengths and
        widths.

    Raises:
        EconasError: bad genotype, bad setting, or a genotype that cannot be built.
    """
    # torch-backed imports stay local so that `--help` and argument errors answer at once.
    from econas_hpc.nn.cost import count_macs, count_params, feature_size
    from econas_hpc.nn.network import build_network
    from econas_hpc.settings import CIFAR_BASE, IMAGENET_BASE, Setting
    from econas_hpc.space.genotype import parse_genotype

    base = IMAGENET_BASE if dataset == "imagenet" else CIFAR_BASE
    genotype = parse_genotype(genotype_text)
    setting = Setting.parse(setting_text, base)
    channels, resolution = setting.channels(base), setting.resolution(base)
    try:
        model = build_network(genotype, setting, base, auxiliary=True)
        aux_note = None
    except InvalidSettingError as exc:
        # The DARTS auxiliary head only fits some resolutions (not the 8 px proxy). Building
        # again without it re-raises any error that is not about the head.
        model = build_network(genotype, setting, base, auxiliary=False)
        aux_note = str(exc)
    return {
        "arch_id": genotype.arch_id,
        "genotype": genotype.to_dict(),
        "setting": str(setting),
        "dataset": base.name,
        "channels": channels,
        "resolution": resolution,
        "layers": base.layers,
        "params": count_params(model, include_aux=False),
        "params_with_aux": None if aux_note else count_params(model, include_aux=True),
        "aux_note": aux_note,
        "macs": count_macs(model, resolution),
        "feature_size": feature_size(model, resolution),
        "normal_concat_len": len(genotype.normal_concat),
        "reduce_concat_len": len(genotype.reduce_concat),
        "normal_width": len(genotype.normal_concat) * channels,
        "reduce_width": len(genotype.reduce_concat) * 2 * channels,
    }


def _cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_info(args.genotype, args.setting, args.dataset)
    if args.json:
        sys.stdout.write(json.dumps(info, sort_keys=True) + "\n")
        return 0
    render_inspect(Console(), info)
    return 0


# --- search commands (launch, resume, status, best) --------------------------------------------

DEFAULT_STATE = "state/run1.h5"
DEMO_STATE = "state/demo.h5"
SEARCH_FLAGS = ("cycles", "seed", "dataset", "data_dir", "dry_run", "strategy", "profile")
EXEC_FLAGS = (
    "executor",
    "partition",
    "max_concurrent",
    "poll_interval_s",
    "device",
    "account",
    "qos",
    "timeout_min",
    "gpus_per_node",
    "signal_delay_s",
)


def _picked(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options among `names` given on the command line (argparse defaults are None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _cmd_launch(args: argparse.Namespace) -> int:
    from econas_hpc.search.driver import resolve_launch, run_search
    from econas_hpc.search.summary import summarize_all

    search = _picked(args, SEARCH_FLAGS)
    spec = resolve_launch(args.config, search, _picked(args, EXEC_FLAGS), demo=args.demo)
    state = args.state or (DEMO_STATE if args.demo else DEFAULT_STATE)
    if args.detach:
        from econas_hpc.search.detach import detach_launch

        return _detached(detach_launch(state, spec, args.argv))
    console = Console()
    with SearchView(console, state, spec.cfg.cycles) as view:
        run_search(state, spec.cfg, spec.execution, view, spec.train)
    render_status(console, summarize_all([state]))
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from econas_hpc.search.driver import resolve_launch, resume_check, run_search
    from econas_hpc.search.summary import summarize_all

    search = _picked(args, SEARCH_FLAGS)
    if args.config:  # only to refuse a different search: resume never changes it
        search = {**resolve_launch(args.config, {}, {}).cfg.to_dict(), **search}
    if search:
        resume_check(args.state, search)
    if args.detach:
        from econas_hpc.search.detach import detach_resume

        return _detached(detach_resume(args.state, _picked(args, EXEC_FLAGS), args.argv))
    console = Console()
    with SearchView(console, args.state) as view:
        run_search(args.state, None, _picked(args, EXEC_FLAGS), view)
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
    runs = [cluster_status(run, live=args.live) for run in runs]  # --live: one sacct per run
    if args.json:
        sys.stdout.writelines(json.dumps(run, sort_keys=True) + "\n" for run in runs)
    else:
        console = Console()
        render_status(console, runs)
        render_cluster(console, runs)
    return 2 if any("error" in run for run in runs) else 0


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
    group.add_argument("--config", metavar="FILE", help="TOML file with [search], [train], "
                       "[execution] and [slurm] tables (all optional)")  # fmt: skip
    group.add_argument("--cycles", type=int, help="evolution cycles (default 100)")
    group.add_argument("--seed", type=int, help="seed of the search's generator (default 0)")
    group.add_argument("--dataset", choices=("cifar10", "synthetic"), help="default cifar10")
    group.add_argument("--data", dest="data_dir", metavar="DIR", help="data directory (data)")
    group.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="score segments with a deterministic pseudo-accuracy; train nothing",
    )
    group.add_argument("--strategy", choices=("hierarchical", "single"), help="hierarchical")
    group.add_argument("--profile", choices=("supplement", "official"), help="supplement")


def _add_exec_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution options (may change on resume)")
    group.add_argument(
        "--executor",
        choices=("local", "debug", "slurm"),
        help="where segments run (default: slurm if sbatch is on PATH, else local)",
    )
    group.add_argument("--partition", help="Slurm partition")
    group.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        help="local executor: jobs at once (default: one per GPU, or 1)",
    )
    group.add_argument(
        "--poll-interval",
        dest="poll_interval_s",
        type=float,
        metavar="S",
        help="seconds between scheduler polls (default 60; local at most 0.5)",
    )
    group.add_argument("--device", help="training device: auto, cpu, cuda, cuda:N (auto)")
    group.add_argument("--account", help="Slurm account")
    group.add_argument("--qos", help="Slurm QOS")
    group.add_argument(
        "--time-limit",
        dest="timeout_min",
        type=int,
        metavar="MIN",
        help="Slurm time limit per job, minutes (60); longer segments requeue",
    )
    group.add_argument("--gpus-per-node", type=int, metavar="N", help="GPUs per segment job")
    group.add_argument(
        "--signal-delay",
        dest="signal_delay_s",
        type=int,
        metavar="S",
        help="seconds before the time limit that USR2 asks for a checkpoint (90)",
    )


def _add_search_commands(commands: Any) -> None:
    """The parsers of launch, resume, status and best."""
    launch = commands.add_parser("launch", help="start a search (refuses an existing state)")
    launch.add_argument("--state", help=f"state file ({DEFAULT_STATE}; {DEMO_STATE} with --demo)")
    launch.add_argument(
        "--demo",
        action="store_true",
        help="the small real search on synthetic data that `make run` runs "
        "(econas_hpc/presets/demo.toml)",
    )
    _add_search_options(launch, "search options (fixed for the run)")
    _add_exec_options(launch)
    launch.add_argument(
        "--detach",
        action="store_true",
        help="run the driver as a Slurm job that requeues itself; print its id",
    )
    launch.set_defaults(handler=_cmd_launch)
    resume = commands.add_parser("resume", help="continue a search from its state file")
    resume.add_argument("state", metavar="STATE", help="the run's state file")
    _add_search_options(resume, "search options (refused when they differ from the run's)")
    _add_exec_options(resume)
    resume.add_argument(
        "--detach",
        action="store_true",
        help="run the driver as a Slurm job that requeues itself; print its id",
    )
    resume.set_defaults(handler=_cmd_resume)
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


ZOO_STATE = "state/zoo1.h5"
ZOO_TRAIN_FLAGS = ("layers", "dataset", "data_dir", "synthetic_train", "synthetic_test", "profile")


def _emit(args: argparse.Namespace, data: dict[str, Any], render: Callable[..., None]) -> int:
    """One JSON line with --json, else the rich rendering; exit code 0."""
    if args.json:
        sys.stdout.write(json.dumps(data, sort_keys=True) + "\n")
    else:
        render(Console(), data)
    return 0


def _cmd_zoo_create(args: argparse.Namespace) -> int:
    from econas_hpc.study.zoo import create_zoo

    zoo = create_zoo(args.state, args.size, args.nodes, args.ops, args.seed)
    info = {"path": args.state, "size": args.size, "nodes": args.nodes, "ops": args.ops,
            "seed": args.seed, "arch_ids": list(zoo.networks)}  # fmt: skip
    return _emit(args, info, render_zoo_created)


def _cmd_zoo_train(args: argparse.Namespace) -> int:
    from econas_hpc.study.zoo_runner import ZooTrainRequest, execution_options, train_zoo

    execution = execution_options(args.config, _picked(args, (*EXEC_FLAGS, "segments_per_job")))
    train = _picked(args, ZOO_TRAIN_FLAGS)
    request = ZooTrainRequest(
        args.zoo, args.settings, args.grid, args.reference, train, execution, args.max_attempts
    )
    return _emit(args, train_zoo(request).to_dict(), render_zoo_trained)


def _cmd_zoo_report(args: argparse.Namespace) -> int:
    from econas_hpc.study.report import ReportOptions, zoo_report

    options = ReportOptions(args.band, args.threshold, args.adopted, args.out, not args.no_figures)
    return _emit(args, zoo_report(args.zoo, options), render_zoo_report)


def _add_zoo_train(zoo: Any) -> None:
    train = zoo.add_parser("train", help="train every zoo network in the given settings")
    train.add_argument("zoo", metavar="ZOO", help="the zoo file")
    train.add_argument("--settings", help="comma-separated settings, e.g. c0r0s0e600,c4r4s0e60")
    train.add_argument("--grid", help='one token per factor, e.g. "c=0,2,4 r=0,2,4 s=0,2 e=30,60"')
    train.add_argument("--reference", help="setting the others are ranked against (c0r0s0e600)")
    group = train.add_argument_group("training options (fixed by the zoo's first `zoo train`)")
    group.add_argument("--dataset", choices=("cifar10", "synthetic"), help="default cifar10")
    group.add_argument("--data", dest="data_dir", metavar="DIR", help="data directory (data)")
    layers_help = "cells per network (0 = 20; others build smaller networks, for tests)"
    group.add_argument("--layers", type=int, metavar="N", help=layers_help)
    group.add_argument("--synthetic-train", type=int, metavar="N", help="synthetic images (5000)")
    group.add_argument("--synthetic-test", type=int, metavar="N", help="synthetic tests (1000)")
    group.add_argument("--profile", choices=("supplement", "official"), help="supplement")
    _add_exec_options(train)
    train.add_argument("--config", metavar="FILE", help="site file with a [slurm] table")
    train.add_argument("--segments-per-job", type=int, metavar="K", help="units per job (1)")
    train.add_argument("--max-attempts", type=int, default=2, help="submissions per unit (2)")
    train.add_argument("--json", action="store_true", help="print one JSON summary instead")
    train.set_defaults(handler=_cmd_zoo_train)


def _add_zoo_commands(commands: Any) -> None:
    """The parsers of `zoo create`, `zoo train` and `zoo report`."""
    parser = commands.add_parser("zoo", help="the proxy-reliability study on a model zoo")
    zoo = parser.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    create = zoo.add_parser("create", help="sample a zoo of random networks (never overwrites)")
    create.add_argument("--size", type=int, default=50, help="networks (50)")
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


# --- training outside a search (train, retrain) ------------------------------------------------

SUBMIT_FLAGS = ("partition", "timeout_min", "account", "qos")


def _json_line(data: Any) -> str:
    """Strict JSON (NaN -> null): results carry NaN for what is not measured yet."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return [clean(v) for v in value] if isinstance(value, list | tuple) else value

    return json.dumps(clean(data), sort_keys=True) + "\n"


def _cmd_train(args: argparse.Namespace) -> int:
    from econas_hpc.search.standalone import TrainRequest, train_genotype

    submit = args.executor or ("slurm" if args.partition or args.nodes > 1 else "")
    request = TrainRequest(
        genotype=args.genotype, setting=args.setting, epochs=args.epochs, run_dir=args.run_dir,
        dataset=args.dataset, data_dir=args.data_dir, seed=args.seed, device=args.device,
        nodes=args.nodes, gpus_per_node=args.gpus_per_node, global_batch=args.batch_size,
        accumulate=args.accumulate, executor=submit,
        execution=tuple(_picked(args, SUBMIT_FLAGS).items()),
    )  # fmt: skip
    result = train_genotype(request)
    if args.json:
        sys.stdout.write(_json_line(result))
    else:
        Console().print_json(_json_line(result))
    status = result.get("status", "ok")  # a submission has no status yet
    return 0 if status == "ok" else EXIT_INTERRUPTED if status == "interrupted" else 1


def _cmd_retrain(args: argparse.Namespace) -> int:
    from econas_hpc.search.retrain import RetrainOptions, retrain, summarize_retrain

    flags = ("executor", "partition", "gpus_per_node", "timeout_min", "device", "poll_interval_s")
    options = RetrainOptions(
        top=args.top, setting=args.setting, seeds=args.seeds, wait=not args.no_wait,
        execution=tuple(_picked(args, flags).items()),
    )  # fmt: skip
    rows = summarize_retrain(retrain(args.state, options))
    if args.json:
        sys.stdout.writelines(_json_line(row) for row in rows)
        return 0
    from rich.table import Table

    table = Table(title=f"retraining of {args.state} ({args.setting}): test error %")
    columns = {"rank": "#", "arch_id": "arch_id", "proxy_score": "proxy %", "finished": "done",
               "seeds": "seeds", "test_error_mean": "error %", "test_error_std": "std",
               "params": "params", "gpu_hours": "GPU-h", "preemptions": "preempted"}  # fmt: skip
    for name, header in columns.items():
        table.add_column(header, no_wrap=name == "arch_id")
    for row in rows:
        table.add_row(*(f"{row[n]:.3g}" if isinstance(row[n], float) else str(row[n])
                        for n in columns))  # fmt: skip
    Console().print(table)
    return 0


def _add_train_commands(commands: Any) -> None:
    """The parsers of train and retrain."""
    train = commands.add_parser(
        "train", help="train one genotype (CIFAR-10 or ImageNet, here or submitted)",
        description="Train a genotype: here in the foreground (resumable; SIGUSR2/SIGTERM stop "
        "it at a step boundary with a checkpoint), on several local GPUs, or as a submitted "
        "job. Exit 0 when finished or submitted, 130 when stopped, 1 when training failed.",
    )  # fmt: skip
    train.add_argument("genotype", metavar="GENOTYPE", help="built-in name, JSON or literal")
    train.add_argument("--setting", default="c0r0s0e600", help="cXrYsZeW (c0r0s0e600)")
    train.add_argument("--epochs", default="", metavar="A:B", help="epochs [A, B) (all)")
    train.add_argument("--run-dir", default="runs/train", help="checkpoints and result")
    train.add_argument("--dataset", choices=("cifar10", "synthetic", "imagenet"),
                       default="cifar10")  # fmt: skip
    train.add_argument("--data", dest="data_dir", default="data", metavar="DIR",
                       help="dataset folder (ImageNet: DIR/train and DIR/val)")  # fmt: skip
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    dist = train.add_argument_group("ImageNet: several GPUs (global batch B, lr 0.8 x B / 2048)")
    dist.add_argument("--nodes", type=int, default=1, help="nodes of the job (1)")
    dist.add_argument("--gpus-per-node", type=int, default=1, help="processes per node (1)")
    dist.add_argument("--batch-size", type=int, default=0, metavar="B",
                      help="global batch (default 64 per GPU: 2048 on 32 GPUs)")  # fmt: skip
    dist.add_argument("--accumulate", type=int, default=1, metavar="K",
                      help="micro-batches per GPU and step (gradient accumulation)")  # fmt: skip
    sub = train.add_argument_group("submission (--partition or --nodes > 1 submit to Slurm)")
    sub.add_argument("--executor", choices=("slurm", "local"), help="submit instead of running")
    sub.add_argument("--partition", help="Slurm partition")
    sub.add_argument("--timeout-min", type=int, help="job time limit; requeued beyond it")
    sub.add_argument("--account")
    sub.add_argument("--qos")
    train.add_argument("--json", action="store_true", help="print one JSON object")
    train.set_defaults(handler=_cmd_train)
    retrain = commands.add_parser(
        "retrain", help="retrain a run's top networks in the original setting",
        description="Retrain the search's top networks from scratch (600 epochs at c0r0s0e600 "
        "with cutout, path dropout, auxiliary head, cosine), one preemptible job per network "
        "and seed; results go to the run's state file (/retrain). Run it again to adopt the "
        "jobs still running and collect finished ones.",
    )  # fmt: skip
    retrain.add_argument("state", metavar="STATE", help="the run's state file")
    retrain.add_argument("--top", type=int, default=5, help="networks retrained (5)")
    retrain.add_argument("--setting", default="c0r0s0e600", help="cXrYsZeW (c0r0s0e600)")
    retrain.add_argument("--seeds", type=int, default=1, help="seeds per network (1)")
    retrain.add_argument("--no-wait", action="store_true", help="submit, record and return")
    retrain.add_argument("--executor", choices=("local", "debug", "slurm"),
                         help="default: the run's")  # fmt: skip
    retrain.add_argument("--partition", help="Slurm partition")
    retrain.add_argument("--gpus-per-node", type=int, help="GPUs per job (default: the run's)")
    retrain.add_argument("--timeout-min", type=int, help="job time limit; requeued beyond it")
    retrain.add_argument("--device", help="training device: auto, cpu, cuda, cuda:N")
    retrain.add_argument("--poll-interval", dest="poll_interval_s", type=float, metavar="S")
    retrain.add_argument("--json", action="store_true", help="one JSON object per network")
    retrain.set_defaults(handler=_cmd_retrain)


def _add_bench_command(commands: Any) -> None:
    """`bench`: proxy training (ours vs. the official-code pipeline) or the driver's overhead."""
    from econas_hpc.bench.__main__ import add_arguments, run

    bench = commands.add_parser(
        "bench", help="benchmark proxy training against the official pipeline, or the driver",
        description="Train random c4r4 genotypes with the official-code pipeline and with ours on "
        "the same device in the same run and report both (proxy epochs per second, device-seconds "
        "per proxy epoch, their ratio); --mode driver times a 100-cycle dry-run search.",
    )  # fmt: skip
    add_arguments(bench).set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: one sub-parser per command, each bound to its `_cmd_*` function."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Checkpointed, fault-tolerant EcoNAS search on SLURM GPU clusters."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser(
        "inspect",
        help="build a genotype's network and print its cells, parameters and MACs",
        description="Build a genotype's network in a setting and print its cells, output widths, "
        "parameters (without and with the auxiliary head), MACs per image and the feature-map "
        "size before pooling.",
    )
    inspect.add_argument(
        "genotype",
        metavar="GENOTYPE",
        help="built-in name (darts_v1, darts_v2, nasnet, amoebanet, econas), a JSON file, "
        "a JSON string or a DARTS literal Genotype(normal=[...], ...)",
    )
    inspect.add_argument(
        "--setting",
        default="c0r0s0e600",
        help="reduced setting cXrYsZeW (default: c0r0s0e600, the original setting)",
    )
    inspect.add_argument("--dataset", choices=DATASETS, default="cifar10", help="base network")
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead")
    inspect.set_defaults(handler=_cmd_inspect)
    _add_search_commands(commands)
    _add_zoo_commands(commands)
    _add_train_commands(commands)
    _add_bench_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _configure_logging()
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --detach hands to the job
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EconasError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
