"""From a planned cycle to `WorkItem`s: the run's files, job names, segment specs and results.

This module owns where a run keeps its files beside the state file (`RunPaths`: `<run>.d/` with
`nets/<arch_id>/` per network, the executor's folder, the orphan token and the run file), the
job names (`econas-<run>-<arch_id>-s<segment>`), the `TrainOptions` a segment needs besides the
`SearchConfig`, the construction of each job's `WorkItem` (a `SegmentSpec` for training, a
pseudo-accuracy item for `--dry-run`) and the reading of the result files workers write. It
never imports torch or h5py, never submits anything and never changes a `RunState`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from econas_hpc.cluster.options import ClusterOptions, load_cluster_options
from econas_hpc.cluster.tasks import WorkItem
from econas_hpc.errors import ConfigError, StateError
from econas_hpc.fsio import (
    UnsafePathError,
    check_private,
    check_within,
    make_private_dir,
    write_json_atomic,
)
from econas_hpc.records import JobRecord, RunState
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.evolution import RESULT_STATUSES
from econas_hpc.settings import CIFAR_BASE, Base, Setting, make_recipe
from econas_hpc.space.genotype import check_arch_id
from econas_hpc.train import SegmentSpec

log = logging.getLogger(__name__)

DEVICES_HELP = "auto, cpu, cuda or cuda:N"
FAULT_KINDS: tuple[str, ...] = ("crash", "hang", "diverge")
EXECUTORS: tuple[str, ...] = ("debug", "local", "slurm")
RUN_FILE_FORMAT = 1
LOCAL_POLL_S = 0.5  # no scheduler to spare: executors without one are polled often
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class RunPaths:
    """Every file of a run, derived from its state file path alone (so resume needs only that)."""

    state: Path  # state/run1.h5
    root: Path  # state/run1.d: everything beside the state file
    nets: Path  # state/run1.d/nets: one directory per network (checkpoints, results, events)
    executor: Path  # state/run1.d/executor: the executor's own files (job tables, logs)
    token: Path  # state/run1.d/submitting.json: the orphan token while a submission is open
    run_file: Path  # state/run1.d/run.json: train and execution options of the run
    run: str  # "run1": the run's name in job names

    @classmethod
    def of(cls, state_path: str | Path) -> RunPaths:
        """The paths of the run whose state file is `state_path` (made absolute).

        Raises:
            ConfigError: a state path ending in `.d` (the run folder's own suffix) or a folder.
        """
        state = Path(state_path).expanduser().absolute()
        if state.suffix == ".d" or state.is_dir():
            raise ConfigError(
                f"state file {state_path} is a folder or ends in .d (the suffix of a run's "
                "folder); name a file such as state/run1.h5"
            )
        root = state.with_suffix(".d")
        run = _NAME_UNSAFE.sub("_", state.stem) or "run"
        return cls(
            state,
            root,
            root / "nets",
            root / "executor",
            root / "submitting.json",
            root / "run.json",
            run,
        )

    @property
    def name_prefix(self) -> str:
        """What every job name of this run starts with: `econas-<run>-`."""
        return f"econas-{self.run}-"

    def job_name(self, arch_id: str, segment: int) -> str:
        """`econas-<run>-<arch_id>-s<segment>`: what `squeue` shows for the segment's job."""
        return f"{self.name_prefix}{check_arch_id(arch_id)}-s{segment}"

    def net_dir(self, arch_id: str) -> Path:
        """`nets/<arch_id>`; the id (read from the state file) must be an arch_id."""
        return self.nets / check_arch_id(arch_id)


def check_device(device: object) -> None:
    """Refuse a training device name the trainer does not know."""
    if not isinstance(device, str) or not (device in ("auto", "cpu") or device.startswith("cuda")):
        raise ConfigError(f"device {device!r} is unknown; allowed: {DEVICES_HELP}")


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """What a training segment needs besides the `SearchConfig`; fixed for the whole run.

    `layers`: cells of the network (0 = the base's, 20 for CIFAR-10); a smaller value gives the
    tiny networks of demos and tests. `recipe`: (field, value) overrides of the search recipe
    (`settings.make_recipe`), e.g. a smaller `batch_size` for tiny datasets. Where segments
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


# --- execution options and the run file ------------------------------------------------------


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
        if kind not in EXECUTORS:
            raise ConfigError(f"executor {kind!r} is unknown; allowed: {', '.join(EXECUTORS)}")
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
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"run file {paths.run_file} is unreadable: {exc}") from None


@dataclass(frozen=True, slots=True)
class SegmentOutcome:
    """What the driver takes from a result file: enough to apply it and to account for it."""

    status: str  # one of evolution.RESULT_STATUSES
    score: float
    wall_s: float
    device: str
    checkpoint: str  # relative to the network's directory; "" when none
    checkpoint_sha256: str


def segment_epochs(cfg: SearchConfig, segment: int) -> tuple[int, int]:
    """Epochs [start, end) of `segment` (1-based) in the one schedule the segments split."""
    per = cfg.epochs_per_segment
    return (segment - 1) * per, segment * per


def result_file(paths: RunPaths, cfg: SearchConfig, arch_id: str, segment: int) -> Path:
    """Where the worker writes the result of (arch_id, segment), as `train.result_path` does."""
    start, end = segment_epochs(cfg, segment)
    return paths.net_dir(arch_id) / f"result-e{start:03d}-{end:03d}.json"


def network_seed(run_seed: int, arch_id: str) -> int:
    """A training seed from (run seed, arch_id), equal for all segments of a network."""
    digest = hashlib.sha256(f"{run_seed}:{arch_id}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def segment_spec(
    cfg: SearchConfig,
    train: TrainOptions,
    paths: RunPaths,
    genotype_json: str,
    job: JobRecord,
    device: str = "auto",
) -> SegmentSpec:
    """The `SegmentSpec` of a training job: recipe `make_recipe("search", setting, profile)`
    with the cell output of the config (and the run's recipe overrides), epochs of its segment,
    the network's own directory."""
    base = train.base()
    setting = Setting.parse(cfg.setting, base)
    overrides = {**dict(train.recipe), "cell_output": cfg.concat_mode}
    recipe = make_recipe("search", setting, cfg.profile, overrides)
    start, end = segment_epochs(cfg, job.segment)
    return SegmentSpec(
        arch_id=job.arch_id,
        genotype_json=genotype_json,
        setting=str(setting),
        recipe=recipe,
        epoch_start=start,
        epoch_end=end,
        run_dir=str(paths.net_dir(job.arch_id)),
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        seed=network_seed(cfg.seed, job.arch_id),
        device=device,
        base=base,
        synthetic_train=cfg.synthetic_train,
        synthetic_test=cfg.synthetic_test,
    )


def _dryrun_spec(
    cfg: SearchConfig,
    paths: RunPaths,
    genotype_json: str,
    job: JobRecord,
    sleep_s: float,
    fail: str,
) -> dict[str, Any]:
    start, end = segment_epochs(cfg, job.segment)
    # The seed is the run's: search.dryrun.pseudo_accuracy scores (genotype, segment, run seed).
    return {
        "arch_id": job.arch_id,
        "genotype_json": genotype_json,
        "segment": job.segment,
        "segments": cfg.segments_per_network,
        "seed": cfg.seed,
        "setting": cfg.setting,
        "run_dir": str(paths.net_dir(job.arch_id)),
        "epoch_start": start,
        "epoch_end": end,
        "sleep_s": sleep_s,
        "fail": fail,
    }


def job_index(state: RunState, job: JobRecord) -> tuple[int, int]:
    """(planning cycle, position in that cycle's plan) of a job of the cycle being run."""
    record = state.cycles[-1]
    planned = [*record.continued, *((a, 1) for a in record.children)]
    try:
        return record.cycle, planned.index(job.key)
    except ValueError:
        return record.cycle, -1


def fault_for(faults: tuple[DryrunFault, ...], state: RunState, job: JobRecord) -> str:
    """The failure to inject into this submission of `job` ("" for none)."""
    if not faults or not state.cycles:
        return ""
    cycle, index = job_index(state, job)
    attempt = job.attempt + 1  # the submission being prepared
    for fault in faults:
        if (fault.cycle, fault.index) == (cycle, index) and (
            fault.attempts == 0 or attempt <= fault.attempts
        ):
            return fault.kind
    return ""


@dataclass(frozen=True, slots=True)
class ItemFactory:
    """Builds the `WorkItem` of a job from the run's configuration."""

    cfg: SearchConfig
    train: TrainOptions
    paths: RunPaths
    execution: ExecOptions

    def item(self, state: RunState, job: JobRecord) -> WorkItem:
        """The item that trains (or, for a dry run, scores) `job`'s segment."""
        genotype_json = state.networks[job.arch_id].genotype_json
        name = self.paths.job_name(job.arch_id, job.segment)
        path = str(result_file(self.paths, self.cfg, job.arch_id, job.segment))
        if self.cfg.dry_run:
            fail = fault_for(self.execution.faults, state, job)
            sleep_s = self.execution.dryrun_sleep_s
            spec = _dryrun_spec(self.cfg, self.paths, genotype_json, job, sleep_s, fail)
            return WorkItem(name, "dryrun", spec, path)
        device = self.execution.device
        spec_obj = segment_spec(self.cfg, self.train, self.paths, genotype_json, job, device)
        return WorkItem(name, "train", spec_obj.to_dict(), path)


def read_outcome(path: Path, arch_id: str, epochs: tuple[int, int]) -> SegmentOutcome | None:
    """The result at `path` if it is a complete, final result of (arch_id, epochs), else None.

    A file that exists but is unreadable or belongs to another segment is moved aside to
    `<path>.bad-<pid>` (logged) so that a retry recomputes it: workers skip items whose result
    file exists. "interrupted" results are never final. A result that is a link leading out of
    the network's folder is never read (moved aside too), nor one naming a checkpoint outside it.
    """
    try:
        check_within(path, path.parent, "result")
    except UnsafePathError as exc:
        return _set_aside(path, f"refused ({exc})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return _set_aside(path, f"unreadable ({exc})")
    try:
        found = (str(data["arch_id"]), int(data["epoch_start"]), int(data["epoch_end"]))
        status, score = str(data["status"]), float(data["score"])
    except (KeyError, TypeError, ValueError) as exc:
        return _set_aside(path, f"malformed ({exc!r})")
    if found != (arch_id, *epochs):
        return _set_aside(path, f"for {found}, expected {(arch_id, *epochs)}")
    checkpoint = str(data.get("checkpoint") or "")
    if checkpoint and not _inside_name(checkpoint):
        return _set_aside(path, f"naming checkpoint {checkpoint!r}, which leaves its folder")
    if status == "interrupted":
        return None
    if status not in RESULT_STATUSES or (status == "ok" and not math.isfinite(score)):
        return _set_aside(path, f"status {status!r} with score {score!r}")
    return SegmentOutcome(
        status,
        score,
        float(data.get("wall_s") or 0.0),
        str(data.get("device") or ""),
        checkpoint,
        str(data.get("checkpoint_sha256") or ""),
    )


def _inside_name(name: str) -> bool:
    """A relative path below the network's folder (the worker writes `checkpoints/<file>`):
    no absolute path, no `..`, no hidden or empty part."""
    parts = name.split("/")
    return not name.startswith("/") and all(p and not p.startswith(".") for p in parts)


def _set_aside(path: Path, why: str) -> SegmentOutcome | None:
    aside = path.with_name(f"{path.name}.bad-{os.getpid()}")
    log.warning("result %s is %s; moved to %s so the segment is recomputed", path, why, aside)
    try:
        os.replace(path, aside)
    except OSError as exc:
        log.warning("could not move %s aside: %s", path, exc)
    return None
