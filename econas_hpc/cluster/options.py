"""Cluster options: what a site file's `[slurm]` table and the CLI flags say about job resources.

This module owns `ClusterOptions` (submitit's parameter names and units, without the `slurm_`
prefix), its validation, and `load_cluster_options` (TOML file + overrides). It also names the
job states every executor reports (`JobState`). It imports neither submitit nor torch, so the
driver and the CLI can validate options without touching a scheduler.

A field left at None is not passed to sbatch: the site's default applies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from econas_hpc.errors import ConfigError
from econas_hpc.tomlfile import read_toml

# Where segments run: in-process (debug), subprocesses here (local), Slurm job arrays (slurm).
EXECUTOR_KINDS: tuple[str, ...] = ("debug", "local", "slurm")
# Where `train` may submit its one job (the debug executor runs in-process: nothing to submit).
SUBMIT_KINDS: tuple[str, ...] = tuple(k for k in EXECUTOR_KINDS if k != "debug")

__all__ = [
    "ALIVE_STATES",
    "FINAL_STATES",
    "ClusterOptions",
    "JobState",
    "load_cluster_options",
]

JobState = Literal[
    "pending",
    "running",
    "done",
    "failed",
    "cancelled",
    "timeout",
    "preempted",
    "node_fail",
    "unknown",
]
# Alive: the scheduler still owns the job (a preempted or requeued job comes back by itself).
ALIVE_STATES: frozenset[str] = frozenset({"pending", "running", "preempted"})
FINAL_STATES: frozenset[str] = frozenset({"done", "failed", "cancelled", "timeout", "node_fail"})

# USR2 for a time limit can arrive up to ~60 s early (slurmctld checks every ~30 s, see
# slurm/README.md); a job needs at least this much time beyond the signal delay to do any work.
MIN_WORK_S = 60


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """Resources and behaviour of the jobs an executor submits.

    Slurm fields use submitit's names and units. `segments_per_job` (K) packs K segments into one
    job; `max_concurrent` caps the local executor's running jobs (0 = one per visible GPU, or 1
    without GPUs); `poll_interval_s` is how often the driver polls the scheduler.
    """

    partition: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 60
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    signal_delay_s: int = 90
    array_parallelism: int = 64
    # High: a time limit shorter than a segment means several requeues, and submitit's default
    # (3) ends such a job with "timed-out too many times".
    max_num_timeout: int = 50
    setup: tuple[str, ...] = ()
    additional_parameters: tuple[tuple[str, str | int | float | bool], ...] = ()
    segments_per_job: int = 1
    max_concurrent: int = 0
    poll_interval_s: float = 60.0

    def __post_init__(self) -> None:
        _check_optional(self, ("partition", "account", "qos", "constraint"), str)
        _check_ints(self, ("gpus_per_node", "cpus_per_task"), minimum=0, optional=True)
        _check_ints(self, ("timeout_min", "array_parallelism", "segments_per_job"), minimum=1)
        _check_ints(self, ("signal_delay_s", "max_num_timeout", "max_concurrent"), minimum=0)
        for name in ("mem_gb", "poll_interval_s"):
            value = getattr(self, name)
            if value is None and name == "mem_gb":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        if self.timeout_min * 60 - self.signal_delay_s < MIN_WORK_S:
            raise ConfigError(
                f"timeout_min={self.timeout_min} leaves no time to work before the requeue signal "
                f"(signal_delay_s={self.signal_delay_s}, which Slurm may send up to 60 s early); "
                f"need timeout_min * 60 - signal_delay_s >= {MIN_WORK_S}"
            )
        if not all(isinstance(line, str) for line in self.setup):
            raise ConfigError(f"setup must be a list of shell lines (strings), got {self.setup!r}")
        for key, value in self.additional_parameters:
            if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
                raise ConfigError(
                    f"additional_parameters[{key!r}] = {value!r}: keys must be strings and "
                    "values strings, numbers or booleans"
                )

    def with_updates(self, overrides: Mapping[str, object]) -> ClusterOptions:
        """A copy with `overrides` applied (None values are ignored); validates names and values."""
        values = {k: _normalise(k, v) for k, v in overrides.items() if v is not None}
        _check_names(values, "overrides")
        return dataclasses.replace(self, **values)  # type: ignore[arg-type]

    def additional_dict(self) -> dict[str, str | int | float | bool]:
        return dict(self.additional_parameters)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ClusterOptions))


def _check_names(values: Mapping[str, object], where: str) -> None:
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown cluster option(s) {unknown} in {where}; valid: {list(FIELD_NAMES)}"
        )


def _check_optional(opts: ClusterOptions, names: tuple[str, ...], kind: type) -> None:
    for name in names:
        value = getattr(opts, name)
        if value is not None and (not isinstance(value, kind) or not value):
            raise ConfigError(
                f"{name} must be a non-empty {kind.__name__} or left out, got {value!r}"
            )


def _check_ints(
    opts: ClusterOptions, names: tuple[str, ...], minimum: int, optional: bool = False
) -> None:
    for name in names:
        value = getattr(opts, name)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _normalise(name: str, value: object) -> object:
    """TOML/CLI values to field types: lists to tuples, the parameter table to sorted pairs."""
    if name == "setup":
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"setup must be a list of shell lines, got {value!r}")
        return tuple(value)
    if name == "additional_parameters":
        if isinstance(value, Mapping):
            return tuple(sorted((str(k), v) for k, v in value.items()))
        if isinstance(value, list | tuple) and all(
            isinstance(p, list | tuple) and len(p) == 2 for p in value
        ):
            return tuple((str(k), v) for k, v in value)
        raise ConfigError(f"additional_parameters must be a table of sbatch options, got {value!r}")
    return value


def load_cluster_options(path: Path | None, overrides: Mapping[str, object]) -> ClusterOptions:
    """Options from the `[slurm]` table of the TOML site file `path` (if any), then `overrides`.

    Raises:
        ConfigError: the file is missing, not TOML, has no `[slurm]` table, or a key is unknown
            (the message lists the valid ones) or has a bad value.
    """
    values: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path, "cluster options file")
        table = data.get("slurm")
        if not isinstance(table, dict):
            raise ConfigError(f"cluster options file {path} has no [slurm] table")
        _check_names(table, f"[slurm] of {path}")
        values = {k: _normalise(k, v) for k, v in table.items()}
    try:
        options = ClusterOptions(**values)
    except TypeError as exc:  # wrong shapes that the field checks cannot see
        raise ConfigError(f"bad cluster options in {path}: {exc}") from exc
    return options.with_updates(overrides)
