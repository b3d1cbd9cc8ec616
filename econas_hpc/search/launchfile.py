"""Launch files: `--config FILE` (or the demo preset) plus command-line overrides -> `LaunchSpec`.

This module owns the launch file's tables ([search], [train], [execution], [slurm]; all
optional), where the presets live, and how command-line values override the file's. It
writes nothing and starts nothing (`search.driver` launches).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from econas_hpc.cluster.options import load_cluster_options
from econas_hpc.errors import ConfigError
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.runfile import ExecOptions, TrainOptions
from econas_hpc.tomlfile import read_toml

__all__ = ["LAUNCH_TABLES", "PRESETS", "LaunchSpec", "resolve_launch"]

LAUNCH_TABLES: tuple[str, ...] = ("search", "train", "execution", "slurm")
PRESETS = Path(__file__).resolve().parents[1] / "presets"


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """A launch resolved from a config file and command-line overrides."""

    cfg: SearchConfig
    train: TrainOptions
    execution: ExecOptions


def resolve_launch(
    config_path: str | Path | None,
    search: Mapping[str, Any],
    execution: Mapping[str, Any],
    demo: bool = False,
) -> LaunchSpec:
    """Read `config_path` ([search], [train], [execution], [slurm] tables; all optional) or the
    demo preset, then apply the command-line `search` and `execution` overrides (None ignored).

    Raises:
        ConfigError: unreadable file, unknown table or key (listing the valid ones), bad value.
    """
    path = PRESETS / "demo.toml" if demo and config_path is None else config_path
    tables: dict[str, Any] = {}
    if path is not None:
        tables = read_toml(path)
        unknown = sorted(set(tables) - set(LAUNCH_TABLES))
        if unknown:
            raise ConfigError(
                f"config file {path}: unknown table(s) {unknown}; valid tables: "
                f"{', '.join(LAUNCH_TABLES)}"
            )
        flat = sorted(k for k, v in tables.items() if not isinstance(v, dict))
        if flat:  # e.g. `search = 5`: a value where a table belongs
            raise ConfigError(
                f"config file {path}: {flat[0]} = {tables[flat[0]]!r} must be a table "
                f"([{flat[0]}] followed by key = value lines)"
            )
    try:
        values = {**tables.get("search", {}), **{k: v for k, v in search.items() if v is not None}}
        cfg = SearchConfig.from_dict(values)
        train = TrainOptions.from_dict(tables.get("train", {}))
    except ConfigError as exc:
        raise ConfigError(f"{path or 'command line'}: {exc}") from None
    cluster = load_cluster_options(Path(path) if path and "slurm" in tables else None, {})
    options = ExecOptions(cluster=cluster).updated({**tables.get("execution", {}), **execution})
    return LaunchSpec(cfg, train, options)
