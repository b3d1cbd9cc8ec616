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
from typing import Any

from rich.console import Console

from econas_hpc import __version__
from econas_hpc.errors import EconasError, InvalidSettingError
from econas_hpc.ui.console import render_inspect

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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _configure_logging()
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
