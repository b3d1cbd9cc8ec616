"""A run's options besides its `SearchConfig`, and the run file that keeps them for resume.

This module owns `TrainOptions` (what a segment needs besides the config; fixed for the run),
`ExecOptions` (how the run executes: executor, cluster options, device, limits; may change on
resume), the dry-run faults of rehearsals (`DryrunFault`) and `<run>.d/run.json`
(`write_run_file` / `read_run_file`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from econas_hpc.cluster.options import EXECUTOR_KINDS, ClusterOptions, load_cluster_options
from econas_hpc.errors import ConfigError, StateError
from econas_hpc.fsio import check_private, make_private_dir, write_json_atomic
from econas_hpc.recipes import make_recipe
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.settings import CIFAR_BASE, Base, Setting

DEVICES_HELP = "auto, cpu, cuda or cuda:N"
FAULT_KINDS: tuple[str, ...] = ("crash", "hang", "diverge")
RUN_FILE_FORMAT = 1
LOCAL_POLL_S = 0.5  # no scheduler to spare: executors without one are polled often


def check_device(device: object) -> None:
    """Refuse a training device name the trainer does not know."""
    if not isinstance(device, str) or not (device in ("auto", "cpu") or device.startswith("cuda")):
        raise ConfigError(f"device {device!r} is unknown; allowed: {DEVICES_HELP}")


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """What a training segment needs besides the `SearchConfig`; fixed for the whole run.

    `layers`: cells of the network (0 = the base's, 20 for CIFAR-10); a smaller value gives the
    tiny networks of demos and tests. `recipe`: (field, value) overrides of the search recipe
    (`recipes.make_recipe`), e.g. a smaller `batch_size` for tiny datasets. Where segments
    train (the device) is an execution option, `ExecOptions.device`.
    """

    layers: int = 0
    recipe: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.layers, bool) or not isinstance(self.layers, int) or self.layers < 0:
            raise ConfigError(f"train layers={self.layers!r} must be an integer >= 0 (0 = base)")
        if isinstance(self.recipe, Mapping):
            object.__setattr__(self, "recipe", tuple(sorted(self.recipe.items())))
        make_recipe("search", Setting(4, 4, 0, 60), "supplement", dict(self.recipe))  # validates

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "recipe": dict(self.recipe)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainOptions:
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in data if k not in valid)
        if unknown:
            raise ConfigError(f"unknown [train] key(s) {unknown}; valid keys: {valid}")
        recipe = data.get("recipe", {})
        if not isinstance(recipe, Mapping):
            raise ConfigError(f"[train] recipe must be a table of recipe fields, got {recipe!r}")
        return cls(data.get("layers", 0), tuple(sorted(recipe.items())))

    def base(self) -> Base:
        """The CIFAR-10 base network with `layers` cells (unchanged for 0)."""
        return dataclasses.replace(CIFAR_BASE, layers=self.layers) if self.layers else CIFAR_BASE


@dataclass(frozen=True, slots=True)
class DryrunFault:
    """A failure injected into a dry-run job: the `index`-th job planned in `cycle` (plan order:
    continued networks, then children) fails as `kind` on its first `attempts` submissions
    (0 = every submission). For tests and rehearsals of failure handling; never in real runs."""

    kind: str
    cycle: int
    index: int
    attempts: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"dry-run fault kind {self.kind!r}; allowed: {FAULT_KINDS}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- execution options ----------------------------------------------------------------------


def default_executor() -> str:
    """`slurm` when `sbatch` is on the PATH, else `local`."""
    return "slurm" if shutil.which("sbatch") else "local"


@dataclass(frozen=True, slots=True)
class ExecOptions:
    """How (not what) a run executes; every field may change on resume.

    The scheduler is polled every `cluster.poll_interval_s` (60 s by default); executors
    without a scheduler at most every `LOCAL_POLL_S`.
    `job_timeout_s` 0: the cluster's `timeout_min` for the local executor, which (unlike Slurm)
    enforces no limit itself; the debug executor runs jobs inside `submit` and cannot.
    `dryrun_sleep_s`/`faults` shape dry-run jobs (rehearsals and tests).
    """

    executor: str = ""
    cluster: ClusterOptions = ClusterOptions()
    device: str = "auto"
    job_timeout_s: float = 0.0
    dryrun_sleep_s: float = 0.0
    faults: tuple[DryrunFault, ...] = ()

    def __post_init__(self) -> None:
        kind = self.executor or default_executor()
        object.__setattr__(self, "executor", kind)  # frozen: resolve once, store resolved
        if kind not in EXECUTOR_KINDS:
            raise ConfigError(f"executor {kind!r} is unknown; allowed: {', '.join(EXECUTOR_KINDS)}")
        check_device(self.device)
        for name in ("job_timeout_s", "dryrun_sleep_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"execution {name}={value!r} must be a number >= 0")

    @property
    def poll_s(self) -> float:
        poll = float(self.cluster.poll_interval_s)
        return poll if self.executor == "slurm" else min(poll, LOCAL_POLL_S)

    @property
    def timeout_s(self) -> float:
        if self.executor != "local":
            return 0.0
        return float(self.job_timeout_s or self.cluster.timeout_min * 60)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["cluster"] = dataclasses.asdict(self.cluster)
        return data

    def updated(self, overrides: Mapping[str, Any]) -> ExecOptions:
        """A copy with `overrides` (execution fields or cluster option names; None ignored)."""
        own = {f.name for f in dataclasses.fields(self)} - {"cluster"}
        cluster_keys = {f.name for f in dataclasses.fields(ClusterOptions)}
        values = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(values) - own - cluster_keys)
        if unknown:
            raise ConfigError(
                f"unknown execution option(s) {unknown}; valid: "
                f"{sorted(own)} and the cluster options {sorted(cluster_keys)}"
            )
        mine = {k: v for k, v in values.items() if k in own}
        if "faults" in mine:
            mine["faults"] = tuple(
                f if isinstance(f, DryrunFault) else DryrunFault(**f) for f in mine["faults"]
            )
        cluster = self.cluster.with_updates({k: v for k, v in values.items() if k in cluster_keys})
        return dataclasses.replace(self, cluster=cluster, **mine)


# --- the run file -----------------------------------------------------------------------------


def write_run_file(paths: RunPaths, train: TrainOptions, execution: ExecOptions) -> None:
    """`<run>.d/run.json` atomically: the options `resume` needs besides the state file."""
    make_private_dir(paths.root)
    data = {"format": RUN_FILE_FORMAT, "train": train.to_dict(), "execution": execution.to_dict()}
    write_json_atomic(paths.run_file, data)


def read_run_file(paths: RunPaths) -> tuple[TrainOptions, ExecOptions]:
    """The run's train and execution options.

    Raises:
        StateError: the run file is missing or unreadable.
        UnsafePathError: the run folder is another user's, a link, or group/world-writable.
    """
    if paths.root.is_dir() or paths.root.is_symlink():
        check_private(paths.root)
    try:
        data = json.loads(paths.run_file.read_text(encoding="utf-8"))
        train = TrainOptions.from_dict(data["train"])
        execution = dict(data["execution"])
        cluster = load_cluster_options(None, execution.pop("cluster"))
        return train, ExecOptions(cluster=cluster).updated(execution)
    except FileNotFoundError:
        raise StateError(
            f"run file {paths.run_file} is missing; it holds the run's train and "
            "execution options and must stay beside the state file"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise StateError(f"run file {paths.run_file} is unreadable: {exc}") from None
