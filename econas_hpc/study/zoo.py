"""The model zoo: creation by random sampling, its settings, and the training plan.

This module owns what a zoo is made of and what is left to train: `create_zoo` (supplement C:
random cells whose output concatenates all intermediate nodes, distinct arch_ids; `check_rules`
refuses a zoo file written under an older rule), the zoo's training options (`ZooTrainOptions`,
fixed at the first `zoo train` and recorded in the file, since they change the networks), the
settings it is trained in (`add_settings`: the reference with `make_recipe("original")`, every
other with `make_recipe("reduced")`), each network's parameters and MACs per setting
(`compute_costs`), the missing (network, setting) units (`plan_units`), their `SegmentSpec`s and
the conversion of worker results into zoo records. It never submits anything (`zoo_runner`
does) and imports torch only inside `compute_costs`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from econas_hpc.errors import ConfigError, StateError, UnsafeNameError
from econas_hpc.records import utc_now
from econas_hpc.search.runfile import TrainOptions
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.workitems import network_seed
from econas_hpc.settings import DATASETS, PROFILES, Base, Setting, check_notation, make_recipe
from econas_hpc.space.catalog import OP_SETS
from econas_hpc.space.genotype import Genotype, check_arch_id
from econas_hpc.space.sampling import sample_genotype
from econas_hpc.store.zoo_state import (
    NAN,
    ZOO_CELL_CONCAT,
    ZooCost,
    ZooNetwork,
    ZooResult,
    ZooSetting,
    ZooState,
    ZooStore,
)
from econas_hpc.study.grid import parse_grid, parse_settings_list
from econas_hpc.train import SegmentResult, SegmentSpec

log = logging.getLogger(__name__)

DEFAULT_REFERENCE = "c0r0s0e600"
ADOPTED = "c4r4s0e60"  # EcoNAS's proxy, marked in the figures
ZOO_KIND = "econas-zoo"
MAX_DRAWS_PER_NETWORK = 100  # a space too small for `size` distinct networks gives up


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


@dataclass(frozen=True, slots=True)
class Unit:
    """One network trained in one setting: one resumable segment of epochs [0, e)."""

    arch_id: str
    setting: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.arch_id, self.setting)


_SETTING_NAME = re.compile(r"c\d{1,4}r\d{1,4}s\d{1,4}e\d{1,5}")


def check_setting_name(value: object) -> str:
    """`value` when it is a `cXrYsZeW` name (a unit folder name), else refuse it.

    Raises:
        UnsafeNameError: one line naming the value (read from the zoo file) and the form allowed.
    """
    if not isinstance(value, str) or not _SETTING_NAME.fullmatch(value):
        raise UnsafeNameError(
            f"setting {value!r} is not a cXrYsZeW name; refusing to use it as a folder name "
            "(the zoo file holding it was edited or is corrupt)"
        )
    return value


@dataclass(frozen=True, slots=True)
class ZooPaths:
    """The zoo's files: `<zoo>.d/units/<arch_id>/<setting>/` per unit, `<zoo>.d/executor/`."""

    zoo: Path
    units: Path
    executor: Path
    name_prefix: str  # zoo-<name>-

    @classmethod
    def of(cls, zoo_path: str | Path) -> ZooPaths:
        run = RunPaths.of(zoo_path)  # the same <state>.d layout and name sanitising as a run
        return cls(run.state, run.root / "units", run.executor, f"zoo-{run.run}-")

    def unit_dir(self, unit: Unit) -> Path:
        """`units/<arch_id>/<setting>`; both names come from the zoo file and are checked."""
        return self.units / check_arch_id(unit.arch_id) / check_setting_name(unit.setting)

    def job_name(self, unit: Unit) -> str:
        """`zoo-<name>-<arch_id>-<setting>`: what `squeue` shows for the unit's job."""
        return f"{self.name_prefix}{check_arch_id(unit.arch_id)}-{check_setting_name(unit.setting)}"

    def report_dir(self) -> Path:
        """The default figure folder: `<zoo>.report/` beside the zoo file."""
        return self.zoo.with_suffix(".report")


def sample_zoo(size: int, nodes: int, ops: str, seed: int) -> list[Genotype]:
    """`size` random genotypes with distinct arch_ids (supplement C: every cell outputs the
    concatenation of all its intermediate nodes, concat mode `all`).

    Raises:
        ConfigError: size < 1, an unknown op set, or a space too small for `size` networks.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"zoo size {size!r} must be an integer >= 1")
    if ops not in OP_SETS:
        raise ConfigError(f"op set {ops!r} is unknown; allowed: {', '.join(OP_SETS)}")
    rng = np.random.default_rng(seed)
    found: dict[str, Genotype] = {}
    for _ in range(size * MAX_DRAWS_PER_NETWORK):
        genotype = sample_genotype(rng, nodes=nodes, ops=OP_SETS[ops], concat_mode="all")
        found.setdefault(genotype.arch_id, genotype)
        if len(found) == size:
            return list(found.values())
    raise ConfigError(
        f"only {len(found)} distinct networks in {size * MAX_DRAWS_PER_NETWORK} draws with "
        f"nodes={nodes}, ops={ops}; ask for fewer"
    )


MAX_ZOO_SIZE, MAX_ZOO_NODES = 100_000, 64  # beyond these: a typo, not a study


def create_zoo(
    path: str | Path,
    size: int,
    nodes: int = 5,
    ops: str = "zoo13",
    seed: int = 0,
    *,
    allow_large: bool = False,
) -> ZooState:
    """Sample a zoo and write it to `path`; an existing zoo (or its `.prev`) is never replaced.

    Raises:
        StateError: `path` already holds a zoo. ConfigError: see `sample_zoo`; a size beyond
            MAX_ZOO_SIZE without `allow_large`; nodes outside 1..MAX_ZOO_NODES.
    """
    if isinstance(size, int) and size > MAX_ZOO_SIZE and not allow_large:
        raise ConfigError(f"zoo size {size} exceeds {MAX_ZOO_SIZE}; pass --allow-large if meant")
    if isinstance(nodes, int) and not 1 <= nodes <= MAX_ZOO_NODES:
        raise ConfigError(f"zoo nodes={nodes} must be 1..{MAX_ZOO_NODES}")
    store = ZooStore(path)
    if store.exists():
        raise StateError(
            f"zoo file {store.path} already exists; refusing to overwrite it "
            "(choose another --state, or delete the file and its .prev first)"
        )
    genotypes = sample_zoo(size, nodes, ops, seed)
    config = {
        "kind": ZOO_KIND,
        "size": size,
        "nodes": nodes,
        "ops": ops,
        "seed": seed,
        "concat_mode": ZOO_CELL_CONCAT,
        "reference": None,
        "train": None,
    }
    zoo = ZooState(config=config)
    zoo.networks = {g.arch_id: ZooNetwork(g.arch_id, g.to_json()) for g in genotypes}
    store.save(zoo)
    return zoo


def check_rules(zoo: ZooState, path: str | Path) -> None:
    """Refuse a zoo file written under an older rule than this version trains and reports.

    Raises:
        StateError: the cells' concat rule is not supplement C's (all intermediate nodes), or
            a setting written under the old notation whose meaning changed.
    """
    if zoo.cell_concat != ZOO_CELL_CONCAT:
        rule = zoo.cell_concat or str(zoo.config.get("concat_mode", "unknown"))
        raise StateError(
            f"zoo file {path} was created with the {rule!r} cell rule (only unused nodes form a "
            "cell's output), not supplement C's (all 5 intermediate nodes); recreate it with "
            f"`econas-hpc zoo create --state NEW.h5 --size {zoo.config.get('size', 50)}`"
        )
    check_notation(zoo.notation, list(zoo.settings), f"zoo file {path}")


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


def accuracies(zoo: ZooState, setting: str) -> dict[str, float]:
    """arch_id -> final test accuracy of the networks that ended "ok" in `setting`."""
    return {
        a: r.test_acc
        for (a, s), r in zoo.results.items()
        if s == setting and r.status == "ok" and math.isfinite(r.test_acc)
    }
