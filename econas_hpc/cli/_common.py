"""Shared pieces of the command line: exit codes, logging set-up, output helpers, exec options."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console

from econas_hpc import interrupts
from econas_hpc.cluster.options import EXECUTOR_KINDS

__all__ = [
    "EXEC_FLAGS",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "PROG",
    "add_exec_options",
    "add_time_limit",
    "configure_logging",
    "emit",
    "json_line",
    "picked",
    "stops_cleanly",
]

PROG = "econas-hpc"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
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
    "segments_per_job",
)


def configure_logging() -> None:
    """Plain INFO logging to stderr, configured once for the whole process."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )


KEPT = (
    "nothing was charged to any network; jobs already submitted keep running and `resume` "
    "re-attaches them"
)


@contextlib.contextmanager
def stops_cleanly(what: str) -> Iterator[None]:
    """Ctrl-C and SIGTERM (a person's `kill`, the scheduler ending a driver job) stop `what`
    cleanly: the with-blocks unwind (the driver lock is released), nothing is charged, and the
    one line says so (Ctrl-C: exit 130; SIGTERM: an `InterruptedRun`, exit 3)."""
    from econas_hpc.errors import InterruptedRun

    def stop(signum: int, frame: object) -> None:
        exc = InterruptedRun(f"{what} stopped by SIGTERM; {KEPT}")
        interrupts.record(exc)  # raised again by the loop if a __del__ swallows it
        raise exc

    def ctrl_c(signum: int, frame: object) -> None:
        exc = KeyboardInterrupt(KEPT)
        interrupts.record(exc)
        raise exc

    def unraisable(info: Any) -> None:
        # A stop raised inside a finalizer is dropped by Python and printed as a traceback; it
        # was recorded, the job loop raises it again, so say nothing here.
        if not isinstance(info.exc_value, KeyboardInterrupt | InterruptedRun):
            previous_hook(info)

    installed, previous, previous_int = True, None, None
    previous_hook = sys.unraisablehook
    try:
        previous = signal.signal(signal.SIGTERM, stop)
        previous_int = signal.signal(signal.SIGINT, ctrl_c)
        sys.unraisablehook = unraisable
    except ValueError:  # not the main thread: leave signals alone
        installed = False
    try:
        yield
    except KeyboardInterrupt:
        raise KeyboardInterrupt(KEPT) from None
    finally:
        interrupts.clear()
        if installed:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
            sys.unraisablehook = previous_hook


def picked(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options among `names` given on the command line (argparse defaults are None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def emit(args: argparse.Namespace, data: dict[str, Any], render: Callable[..., None]) -> int:
    """One JSON line with --json, else the rich rendering; exit code 0."""
    if args.json:
        sys.stdout.write(json.dumps(data, sort_keys=True) + "\n")
    else:
        render(Console(), data)
    return 0


def json_line(data: Any) -> str:
    """Strict JSON (NaN -> null): results carry NaN for what is not measured yet."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return [clean(v) for v in value] if isinstance(value, list | tuple) else value

    return json.dumps(clean(data), sort_keys=True) + "\n"


def add_time_limit(group: Any) -> None:
    """`--time-limit MIN` (dest `timeout_min`), the one spelling of launch, resume, train,
    retrain and zoo train. `--timeout-min`, the old spelling of train and retrain, still works
    but is not shown."""
    group.add_argument(
        "--time-limit",
        dest="timeout_min",
        type=int,
        metavar="MIN",
        help="time limit per job, minutes (default: the site file's, else 60); a job that "
        "reaches it saves a checkpoint and is requeued",
    )
    group.add_argument("--timeout-min", dest="timeout_min", type=int, help=argparse.SUPPRESS)


def add_exec_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution options (may change on resume)")
    group.add_argument(
        "--executor",
        choices=EXECUTOR_KINDS,
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
    add_time_limit(group)
    group.add_argument("--gpus-per-node", type=int, metavar="N", help="GPUs per segment job")
    group.add_argument(
        "--signal-delay",
        dest="signal_delay_s",
        type=int,
        metavar="S",
        help="seconds before the time limit that USR2 asks for a checkpoint (90)",
    )
    group.add_argument(
        "--segments-per-job",
        type=int,
        metavar="K",
        help="segments packed into one job and trained concurrently (1)",
    )
