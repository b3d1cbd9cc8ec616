"""The `econas-hpc` command line: argument parsing, logging set-up, exit codes.

This is the only package that reads argv or decides exit codes (`main` returns them; the console
script and `python -m econas_hpc` pass them to `sys.exit`). Each `_cmd_*` parses nothing itself
and stays small: it calls library functions and hands plain data to `econas_hpc.ui`. One module
per command group: `_inspect`, `_search` (launch, resume, status, best), `_report`, `_zoo`,
`_train` (train, retrain), `_bench` and `_compare`; `_common` holds the exit codes and the shared
helpers.

Exit codes: 0 success; 2 for argparse usage errors and every `EconasError` (one line on stderr,
no traceback); 3 for a fault outside the network (`EnvironmentFault`, or an OSError such as a
full disk or a refused permission: one line naming the cause); 130 on Ctrl-C. Anything else
escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from econas_hpc import __version__
from econas_hpc.cli._bench import add_bench_command
from econas_hpc.cli._common import EXIT_INTERRUPTED, EXIT_USAGE, PROG, configure_logging
from econas_hpc.cli._compare import add_compare_command
from econas_hpc.cli._inspect import BASE_NAMES, add_inspect_command, inspect_info
from econas_hpc.cli._report import add_report_command
from econas_hpc.cli._search import DEFAULT_STATE, DEMO_STATE, add_search_commands
from econas_hpc.cli._train import add_train_commands
from econas_hpc.cli._zoo import ZOO_STATE, add_zoo_commands
from econas_hpc.errors import CAUSES, EXIT_ENVIRONMENT, EconasError, EnvironmentFault, cause_of

__all__ = [
    "BASE_NAMES",
    "DEFAULT_STATE",
    "DEMO_STATE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "PROG",
    "ZOO_STATE",
    "build_parser",
    "inspect_info",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: one sub-parser per command, each bound to its `_cmd_*` function."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Checkpointed, fault-tolerant EcoNAS search on SLURM GPU clusters."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_inspect_command(commands)
    add_search_commands(commands)
    add_report_command(commands)
    add_zoo_commands(commands)
    add_train_commands(commands)
    add_bench_command(commands)
    add_compare_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    configure_logging()
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --detach hands to the job
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EnvironmentFault as exc:
        message = " ".join(str(exc).split()) or CAUSES[exc.cause]
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return EXIT_ENVIRONMENT
    except EconasError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return EXIT_USAGE
    except OSError as exc:
        cause = cause_of(exc)
        if not cause:
            raise
        sys.stderr.write(f"{PROG}: error: {CAUSES[cause]}: {exc}\n")
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt as exc:  # a command may say what was kept (`stops_cleanly`)
        detail = f"; {exc}" if str(exc) else ""
        sys.stderr.write(f"{PROG}: interrupted{detail}\n")
        return EXIT_INTERRUPTED
