"""`SearchConfig`: every number and choice of the EcoNAS search, with the paper's defaults.

This module owns the search's configuration: its fields (spec 7.2, issue 4), validation with
messages that name the bad value and what is allowed, and the dict round trip stored in the
state file. It sits below `store` and `search` (standard library, `settings`, `space.catalog`,
`errors`) so that `RunState` can hold a typed config and the store can decode it without
importing the search; `search.config` adds the TOML reader. No I/O, no policy; execution
options (executor, partition, concurrency) live elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from econas_hpc.errors import ConfigError, EconasError
from econas_hpc.recipes import CELL_OUTPUTS, PROFILES
from econas_hpc.settings import DATASETS, NOTATION, Setting
from econas_hpc.space.catalog import OP_SETS

STRATEGIES: tuple[str, ...] = ("hierarchical", "single")
CONCAT_MODES: tuple[str, ...] = CELL_OUTPUTS  # the search cells' rules (the zoo adds "all")
MAX_SEGMENTS = 3  # the hierarchy has three pools, P20/P40/P60

# field -> smallest allowed value, for the integer fields
_INT_MINIMUM: dict[str, int] = {
    "cycles": 0,
    "initial_population": 1,
    "continue_p20": 0,
    "continue_p40": 0,
    "mothers_p20": 0,
    "mothers_p40": 0,
    "mothers_p60": 0,
    "mothers_single": 0,
    "max_idle_cycles": 1,
    "segments": 1,
    "segment_epochs": 1,
    "final_top": 1,
    "nodes": 1,
    "seed": 0,
    "synthetic_train": 1,
    "synthetic_test": 1,
    "max_attempts": 1,
    "max_redraws": 1,
}


SEED_MAX = 2**63 - 1  # seeds are stored as HDF5 int64
# field -> largest value accepted without `allow_large = true`: far beyond any real search,
# small enough that a typo (an extra few zeros) cannot plan a run that never ends or exhausts
# the machine. `seed` and `nodes` have hard limits (HDF5 int64; cells the builder handles).
_INT_MAXIMUM: dict[str, int] = {
    "cycles": 1_000_000,
    "initial_population": 100_000,
    "continue_p20": 100_000,
    "continue_p40": 100_000,
    "mothers_p20": 100_000,
    "mothers_p40": 100_000,
    "mothers_p60": 100_000,
    "mothers_single": 100_000,
    "max_idle_cycles": 1_000_000,
    "segment_epochs": 100_000,
    "final_top": 100_000,
    "synthetic_train": 1_000_000,
    "synthetic_test": 1_000_000,
    "max_attempts": 1_000,
    "max_redraws": 1_000_000,
}
_HARD_MAXIMUM: dict[str, int] = {"seed": SEED_MAX, "nodes": 64}


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """The resolved configuration of one search run (stored in the state file; fixed on resume).

    `concat_mode` "" follows the profile (supplement -> clean, official -> faithful, as
    `recipes.make_recipe` does) and is stored resolved. With strategy "single" every network
    trains once over the whole setting (`segments_per_network` 1, `epochs_per_segment` e) and
    `segments`, `segment_epochs`, `continue_*` and `mothers_p*` are unused.
    """

    strategy: str = "hierarchical"
    cycles: int = 100
    initial_population: int = 16
    continue_p20: int = 8  # top of P20 trained to P40 each cycle
    continue_p40: int = 4  # top of P40 trained to P60 each cycle
    mothers_p20: int = 6  # tournament draws per pool per cycle
    mothers_p40: int = 5
    mothers_p60: int = 5
    mothers_single: int = 16  # draws from the one pool of strategy "single"
    max_idle_cycles: int = 10  # a network untrained for this many cycles leaves the pools
    segments: int = 3
    segment_epochs: int = 20
    final_top: int = 5
    nodes: int = 4
    op_set: str = "search8"
    concat_mode: str = ""
    seed: int = 0
    setting: str = "c4r4s0e60"
    profile: str = "supplement"
    dataset: str = "cifar10"
    data_dir: str = "data"
    synthetic_train: int = 5000  # images of the synthetic dataset (dataset "synthetic")
    synthetic_test: int = 1000
    max_attempts: int = 3  # submissions per segment before the network is marked failed
    max_redraws: int = 100  # mutations of one mother tried to find a child not seen before
    dry_run: bool = False  # score segments with search.dryrun instead of training
    proxy_rank_warn: float = 0.5  # `status` warns when a proxy-rank Spearman falls below this
    allow_large: bool = False  # accept sizes beyond _INT_MAXIMUM (a deliberate, huge search)
    # The cXrYsZeW rule `setting` is read with, stored so a state file never changes meaning
    # (a state file without it is checked by `settings.check_notation` when loaded).
    notation: str = NOTATION

    def __post_init__(self) -> None:
        _check_types(self)
        # TOML and the CLI may give an integer threshold (1, 0): store it as the float it means.
        object.__setattr__(self, "proxy_rank_warn", float(self.proxy_rank_warn))
        _check_values(self)
        if not self.concat_mode:
            mode = "clean" if self.profile == "supplement" else "faithful"
            object.__setattr__(self, "concat_mode", mode)  # frozen: resolve once, store resolved

    @property
    def segments_per_network(self) -> int:
        """Segments a network trains at most: `segments`, or 1 for strategy "single"."""
        return 1 if self.strategy == "single" else self.segments

    @property
    def epochs_per_segment(self) -> int:
        """Epochs of one segment: `segment_epochs`, or the setting's e for "single"."""
        if self.strategy == "single":
            return Setting.parse(self.setting).e
        return self.segment_epochs

    @property
    def ops(self) -> tuple[str, ...]:
        """The op names of `op_set`."""
        return OP_SETS[self.op_set]

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (str/int/bool values) in field order."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        """Build from a (possibly partial) dict; missing keys take the defaults.

        Raises:
            ConfigError: an unknown key (the message lists the valid ones) or a bad value.
        """
        valid = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in valid)
        if unknown:
            raise ConfigError(
                f"unknown search config key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}"
            )
        return cls(**dict(data))

    def replace(self, **changes: Any) -> SearchConfig:
        """A validated copy with `changes` applied (unknown keys raise ConfigError)."""
        return SearchConfig.from_dict({**self.to_dict(), **changes})


def _check_types(cfg: SearchConfig) -> None:
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        kind = type(f.default)
        # bool is an int subclass: reject it for int fields and accept only bool for bools.
        ok = type(value) is bool if kind is bool else isinstance(value, kind)
        if kind is float:  # an integer is a fine float; a bool is not a number here
            ok = isinstance(value, float | int)
        if kind in (int, float) and isinstance(value, bool):
            ok = False
        if not ok:
            raise ConfigError(f"search config {f.name}={value!r} must be of type {kind.__name__}")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"search config {name}={value!r} is unknown; allowed: {', '.join(allowed)}"
        )


def _check_values(cfg: SearchConfig) -> None:
    for name, minimum in _INT_MINIMUM.items():
        value = getattr(cfg, name)
        if value < minimum:
            raise ConfigError(f"search config {name}={value} must be >= {minimum}")
    for name, maximum in _HARD_MAXIMUM.items():
        if getattr(cfg, name) > maximum:
            raise ConfigError(f"search config {name}={getattr(cfg, name)} must be <= {maximum}")
    for name, maximum in _INT_MAXIMUM.items():
        if getattr(cfg, name) > maximum and not cfg.allow_large:
            raise ConfigError(
                f"search config {name}={getattr(cfg, name)} is larger than {maximum}; set "
                "allow_large = true in [search] (or pass --allow-large) if you mean it"
            )
    _check_choice("strategy", cfg.strategy, STRATEGIES)
    _check_choice("op_set", cfg.op_set, tuple(OP_SETS))
    _check_choice("profile", cfg.profile, PROFILES)
    _check_choice("dataset", cfg.dataset, DATASETS)
    _check_choice("notation", cfg.notation, (NOTATION,))
    if cfg.concat_mode:
        _check_choice("concat_mode", cfg.concat_mode, CONCAT_MODES)
    if not -1.0 <= cfg.proxy_rank_warn <= 1.0:  # also rejects NaN
        raise ConfigError(
            f"search config proxy_rank_warn={cfg.proxy_rank_warn} must be a Spearman "
            "coefficient in [-1, 1]"
        )
    if not cfg.data_dir:
        raise ConfigError("search config data_dir is empty; give a directory path")
    if cfg.segments > MAX_SEGMENTS:
        raise ConfigError(
            f"search config segments={cfg.segments} must be 1..{MAX_SEGMENTS} "
            "(one pool per segment: P20, P40, P60)"
        )
    try:
        setting = Setting.parse(cfg.setting)
    except EconasError as err:
        raise ConfigError(f"search config setting: {err}") from None
    total = cfg.segments * cfg.segment_epochs
    if cfg.strategy == "hierarchical" and total != setting.e:
        raise ConfigError(
            f"search config segments={cfg.segments} x segment_epochs={cfg.segment_epochs} = "
            f"{total} epochs must equal the epochs of setting {cfg.setting} ({setting.e}): the "
            "segments split one schedule"
        )
