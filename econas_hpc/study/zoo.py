"""The model zoo: what it is made of, its files, and its creation by random sampling.

This module owns what a zoo is: `create_zoo` (supplement C: random cells whose output
concatenates all intermediate nodes, distinct arch_ids; `check_rules` refuses a zoo file written
under an older rule), its (network, setting) units and their folders (`Unit`, `ZooPaths`,
`check_setting_name`), the settings the report marks (`DEFAULT_REFERENCE`, `ADOPTED`) and the
final accuracies of one setting (`accuracies`). How it is trained lives in `zoo_plan` (what is
left to train) and `zoo_runner` (the jobs). It never imports torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from econas_hpc.errors import ConfigError, StateError, UnsafeNameError
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.settings import check_notation
from econas_hpc.space.catalog import OP_SETS
from econas_hpc.space.genotype import Genotype, check_arch_id
from econas_hpc.space.sampling import sample_genotype
from econas_hpc.store.zoo_state import ZOO_CELL_CONCAT, ZooNetwork, ZooState, ZooStore

DEFAULT_REFERENCE = "c0r0s0e600"
ADOPTED = "c4r4s0e60"  # EcoNAS's proxy, marked in the figures
ZOO_KIND = "econas-zoo"
MAX_DRAWS_PER_NETWORK = 100  # a space too small for `size` distinct networks gives up


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


def accuracies(zoo: ZooState, setting: str) -> dict[str, float]:
    """arch_id -> final test accuracy of the networks that ended "ok" in `setting`."""
    return {
        a: r.test_acc
        for (a, s), r in zoo.results.items()
        if s == setting and r.status == "ok" and math.isfinite(r.test_acc)
    }
