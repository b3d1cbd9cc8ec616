"""`inspect`: build a genotype's network in a setting and summarise it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

from econas_hpc.errors import InvalidSettingError
from econas_hpc.settings import CIFAR_BASE, IMAGENET_BASE
from econas_hpc.ui.console import render_inspect

__all__ = ["BASE_NAMES", "add_inspect_command", "inspect_info"]

if TYPE_CHECKING:  # torch-backed: imported at call time so that `--help` answers at once
    from torch import nn

    from econas_hpc.settings import Base, Setting
    from econas_hpc.space.genotype import Genotype

BASE_NAMES = (CIFAR_BASE.name, IMAGENET_BASE.name)  # the base networks `inspect` builds


def inspect_info(genotype_text: str, setting_text: str, dataset: str) -> dict[str, Any]:
    """Build the network for a genotype in a setting and summarise it as plain data.

    Args:
        genotype_text: a built-in name, JSON file path, JSON string or DARTS literal.
        setting_text: a reduced setting such as "c4r4s0e60".
        dataset: "cifar10" or "imagenet" (chooses the base network).

    Returns:
        The summary with arch_id, genotype, setting, dataset, channels, resolution,
        train_images (the base's training split reduced by s), epochs, notation, layers,
        params, params_with_aux (None where the auxiliary head cannot be built at this
        resolution; aux_note says why), macs, feature_size, normal/reduce concat lengths and
        widths.

    Raises:
        EconasError: bad genotype, bad setting, or a genotype that cannot be built.
    """
    # torch-backed imports stay local so that `--help` and argument errors answer at once.
    from econas_hpc.settings import Setting
    from econas_hpc.space.parse import parse_genotype

    base = IMAGENET_BASE if dataset == "imagenet" else CIFAR_BASE
    genotype = parse_genotype(genotype_text)
    setting = Setting.parse(setting_text, base)
    model, aux_note = _build_model(genotype, setting, base)
    return _summarize(genotype, setting, base, model, aux_note)


def _build_model(genotype: Genotype, setting: Setting, base: Base) -> tuple[nn.Module, str | None]:
    """The network with its auxiliary head where it fits, else without (and why not)."""
    from econas_hpc.nn.network import build_network

    try:
        return build_network(genotype, setting, base, auxiliary=True), None
    except InvalidSettingError as exc:
        # The DARTS auxiliary head only fits some resolutions (not the 8 px proxy). Building
        # again without it re-raises any error that is not about the head.
        return build_network(genotype, setting, base, auxiliary=False), str(exc)


def _summarize(
    genotype: Genotype, setting: Setting, base: Base, model: nn.Module, aux_note: str | None
) -> dict[str, Any]:
    """The plain-data summary that `inspect_info` returns."""
    from econas_hpc.nn.cost import count_macs, count_params, feature_size
    from econas_hpc.settings import NOTATION

    channels, resolution = setting.channels(base), setting.resolution(base)
    macs = count_macs(model, resolution)
    return {
        "arch_id": genotype.arch_id,
        "genotype": genotype.to_dict(),
        "setting": str(setting),
        "dataset": base.name,
        "channels": channels,
        "resolution": resolution,
        "train_images": setting.train_samples(base.train_size),
        "epochs": setting.e,
        "notation": NOTATION,
        "layers": base.layers,
        "params": count_params(model, include_aux=False),
        "params_with_aux": None if aux_note else count_params(model, include_aux=True),
        "aux_note": aux_note,
        "macs": macs,
        "macs_note": _macs_note(model, resolution, macs) if base.name == "imagenet" else None,
        "feature_size": feature_size(model, resolution),
        "normal_concat_len": len(genotype.normal_concat),
        "reduce_concat_len": len(genotype.reduce_concat),
        "normal_width": len(genotype.normal_concat) * channels,
        "reduce_width": len(genotype.reduce_concat) * 2 * channels,
    }


def _macs_note(model: nn.Module, resolution: int, macs: int) -> str:
    """Why the ImageNet count differs from the DARTS paper's 574 M (darts_v2)."""
    from econas_hpc.nn.cost import count_elementwise_ops

    extended = (macs + count_elementwise_ops(model, resolution)) / 1e6
    return (
        "MACs count convolutions and linear layers only (darts_v2: 529.9 M); the DARTS paper's "
        "574 M for darts_v2 came from a counting it never published: adding BN (2 per element), "
        f"ReLU (1 per element) and pooling (1 per input element) gives {extended:.1f} M here"
    )


def _cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_info(args.genotype, args.setting, args.dataset)
    if args.json:
        sys.stdout.write(json.dumps(info, sort_keys=True) + "\n")
        return 0
    render_inspect(Console(), info)
    return 0


def add_inspect_command(commands: Any) -> None:
    """The parser of `inspect`."""
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
    inspect.add_argument("--dataset", choices=BASE_NAMES, default="cifar10", help="base network")
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead")
    inspect.set_defaults(handler=_cmd_inspect)
