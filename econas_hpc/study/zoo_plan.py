"""The zoo's training plan: its options, the settings it is trained in, and what is left to train.

This module owns how a created zoo (`study.zoo`) is trained: its training options
(`ZooTrainOptions`, fixed at the first `zoo train` and recorded in the file, since they change
the networks), the settings it is trained in (`add_settings`: the reference with
`make_recipe("original")`, every other with `make_recipe("reduced")`), each network's parameters
and MACs per setting (`compute_costs`), the missing (network, setting) units (`plan_units`), their
`SegmentSpec`s and the conversion of worker results into zoo records. It never submits anything
(`zoo_runner` does) and imports torch only inside `compute_costs`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from econas_hpc.errors import ConfigError
from econas_hpc.recipes import PROFILES, make_recipe
from econas_hpc.records import utc_now
from econas_hpc.search.runfile import TrainOptions
from econas_hpc.search.workitems import network_seed
from econas_hpc.settings import DATASETS, Base, Setting
from econas_hpc.space.genotype import Genotype
from econas_hpc.store.zoo_state import NAN, ZooCost, ZooResult, ZooSetting, ZooState
from econas_hpc.study.grid import parse_grid, parse_settings_list
from econas_hpc.study.zoo import DEFAULT_REFERENCE, Unit, ZooPaths
from econas_hpc.train import SegmentResult, SegmentSpec


@dataclass(frozen=True, slots=True)
class ZooTrainOptions:
    """How the zoo's networks are trained; fixed at the first `zoo train` (recorded in the file).

    `layers`: cells per network (0 = the base's 20); anything else builds other networks than
    the EcoNAS zoo (tests, demos) and the report says so. `synthetic_train`/`synthetic_test`
    size the synthetic dataset.
    """

    layers: int = 0
    dataset: str = "cifar10"
    data_dir: str = "data"
    synthetic_train: int = 5000
    synthetic_test: int = 1000
    profile: str = "supplement"

    def __post_init__(self) -> None:
        TrainOptions(layers=self.layers)  # validates layers
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset {self.dataset!r} is unknown; allowed: {DATASETS}")
        if self.profile not in PROFILES:
            raise ConfigError(f"profile {self.profile!r} is unknown; allowed: {PROFILES}")
        for name in ("synthetic_train", "synthetic_test"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")

    def base(self) -> Base:
        """The CIFAR-10 base network with `layers` cells."""
        return TrainOptions(layers=self.layers).base()

    def train_size(self) -> int:
        """Training images before the s level (the reduced/original recipes hold none out)."""
        return self.synthetic_train if self.dataset == "synthetic" else self.base().train_size


def requested_settings(settings: str | None, grid: str | None, base: Base) -> list[str]:
    """The canonical settings of `--settings` or `--grid` (at most one; none: [])."""
    if settings is not None and grid is not None:
        raise ConfigError("give either --settings or --grid, not both")
    if settings is not None:
        return parse_settings_list(settings, base)
    return parse_grid(grid, base) if grid is not None else []


def resolve_train_options(zoo: ZooState, requested: Mapping[str, Any]) -> ZooTrainOptions:
    """The zoo's training options: recorded ones, else `requested` (None = default); recorded.

    Raises:
        ConfigError: a requested value that differs from the one the zoo was trained with.
    """
    given = {k: v for k, v in requested.items() if v is not None}
    if "data_dir" in given:  # workers may start elsewhere: keep it absolute
        given["data_dir"] = str(Path(given["data_dir"]).expanduser().absolute())
    stored = zoo.config.get("train")
    if stored is None:
        options = ZooTrainOptions(**given)
        zoo.config["train"] = dataclasses.asdict(options)
        return options
    options = ZooTrainOptions(**stored)
    for key, value in given.items():
        if getattr(options, key) != value:
            raise ConfigError(
                f"this zoo was trained with {key}={getattr(options, key)!r}, not {value!r}; "
                f"leave --{key.replace('_', '-')} out or use a new zoo"
            )
    return options


def add_settings(
    zoo: ZooState, names: Sequence[str], reference: str | None, options: ZooTrainOptions
) -> list[str]:
    """Add the reference and `names` to the zoo's settings; return the ones that were new.

    The reference is fixed by the first `zoo train` (default `DEFAULT_REFERENCE`).

    Raises:
        ConfigError: a reference other than the zoo's, or a setting invalid for its base.
    """
    base = options.base()
    current = zoo.config.get("reference")
    wanted = str(Setting.parse(reference or current or DEFAULT_REFERENCE, base))
    if current is not None and wanted != current:
        raise ConfigError(
            f"this zoo is ranked against the reference {current}, not {wanted}; "
            "leave --reference out or use a new zoo"
        )
    zoo.config["reference"] = wanted
    added = []
    for name in [wanted, *names]:
        if name in zoo.settings:
            continue
        setting = Setting.parse(name, base)
        zoo.settings[name] = ZooSetting(
            name,
            setting.c,
            setting.r,
            setting.s,
            setting.e,
            "original" if name == wanted else "reduced",
            name == wanted,
            setting.train_samples(options.train_size()),
            utc_now(),
        )
        added.append(name)
    return added


def compute_costs(zoo: ZooState, options: ZooTrainOptions) -> int:
    """Fill in parameters and MACs of every (network, setting) lacking them; return the count.

    A network's size depends on c and r only, so each (network, c, r) is built once. A network
    that cannot be built gets no cost (NaN in the file, tried again next time; clean-concat
    zoos have none).
    """
    from econas_hpc.errors import UnbuildableGenotypeError
    from econas_hpc.nn.cost import count_macs, count_params
    from econas_hpc.nn.network import build_network

    base, done, filled = options.base(), dict[tuple[str, int, int], ZooCost | None](), 0
    for arch_id, network in zoo.networks.items():
        genotype = Genotype.from_json(network.genotype_json)
        for name in zoo.settings:
            setting = Setting.parse(name, base)
            key = (arch_id, setting.c, setting.r)
            if (arch_id, name) in zoo.costs:
                continue
            if key not in done:
                try:
                    model = build_network(genotype, setting, base)
                except UnbuildableGenotypeError:
                    done[key] = None
                else:
                    macs = count_macs(model, setting.resolution(base))
                    done[key] = ZooCost(count_params(model), macs)
            cost = done[key]
            if cost is not None:
                zoo.costs[(arch_id, name)] = cost
                filled += 1
    return filled


def plan_units(zoo: ZooState) -> list[Unit]:
    """Units without a final result (or whose job failed), reference first, in zoo order.

    "failed" means the job died without training to the end (not a diverged network), so a
    later `zoo train` retries it.
    """
    order = sorted(zoo.settings.values(), key=lambda s: not s.reference)
    return [
        Unit(arch_id, setting.name)
        for setting in order
        for arch_id in zoo.networks
        if (arch_id, setting.name) not in zoo.results
        or zoo.results[(arch_id, setting.name)].status == "failed"
    ]


def unit_spec(
    zoo: ZooState, unit: Unit, options: ZooTrainOptions, paths: ZooPaths, device: str = "auto"
) -> SegmentSpec:
    """The segment of `unit`: epochs [0, e) of its setting's recipe, in the unit's own dir."""
    base = options.base()
    setting = Setting.parse(unit.setting, base)
    kind = zoo.settings[unit.setting].recipe
    return SegmentSpec(
        arch_id=unit.arch_id,
        genotype_json=zoo.networks[unit.arch_id].genotype_json,
        setting=unit.setting,
        recipe=make_recipe(kind, setting, options.profile),
        epoch_start=0,
        epoch_end=setting.e,
        run_dir=str(paths.unit_dir(unit)),
        dataset=options.dataset,
        data_dir=options.data_dir,
        seed=network_seed(int(zoo.config["seed"]), unit.arch_id),
        device=device,
        base=base,
        synthetic_train=options.synthetic_train,
        synthetic_test=options.synthetic_test,
    )


def result_record(unit: Unit, result: SegmentResult) -> ZooResult:
    """The zoo record of a worker's final result (accuracies only for "ok")."""
    ok = result.status == "ok" and bool(result.test_acc)
    status = result.status if result.status in ("ok", "diverged", "unbuildable") else "failed"
    on_gpu = result.device.startswith("cuda")
    return ZooResult(
        unit.arch_id,
        unit.setting,
        status if ok or status != "ok" else "failed",
        result.test_acc[-1] if ok else NAN,
        result.score if ok else NAN,
        len(result.test_acc),
        result.wall_s if on_gpu else NAN,
        result.wall_s,
        result.device,
        result.detail,
        utc_now(),
    )


def failed_record(unit: Unit, detail: str) -> ZooResult:
    """The record of a unit whose job ended without a result, attempts exhausted."""
    return ZooResult(
        unit.arch_id, unit.setting, "failed", NAN, NAN, 0, NAN, NAN, "", detail, utc_now()
    )
