"""The run's HDF5 state file: schema, checksummed atomic snapshots, a reader that refuses what
it can't use.

This module owns `state/<run>.h5` (the file handling is `store.snapshot`'s). Tables are typed
datasets with self-explanatory names, readable with plain h5py or `h5dump` (the schema is
described in the file's `schema_doc` attribute and in each dataset's `description`). Every save
builds the whole file (it is small) in memory, stamps it with the sha256 of its content, and
writes it with plain file I/O (temp, fsync, `os.replace`), keeping the current file as
`<path>.prev`; readers, which only open complete files and never lock, cannot see a torn file,
and a full disk is one line with the last good state untouched. A load verifies the checksum
and falls back to `.prev` when the main file is corrupt, saying so in `StateStore.recovery`.
No SWMR: the schema grows. Workers never import this module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from econas_hpc import __version__
from econas_hpc.errors import ConfigError, StateError
from econas_hpc.records import (
    POOL_NAMES,
    STATE_SCHEMA_VERSION,
    CycleRecord,
    JobRecord,
    NetworkRecord,
    RunState,
    check_names,
    utc_now,
)
from econas_hpc.runconfig import SearchConfig
from econas_hpc.settings import PROXY, check_notation
from econas_hpc.store.snapshot import (
    READ_ERRORS,
    CorruptFileError,
    SnapshotFiles,
    build_image,
    open_snapshot,
    put,
    read_table,
)

log = logging.getLogger(__name__)

SUPPORTED_SCHEMAS: tuple[int, ...] = (1,)

# (column, kind, description); network and job columns are the record fields of the same names.
_NETWORK_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("arch_id", "str", "network id: first 12 hex digits of sha256(canonical genotype JSON)"),
    ("parent_id", "str", "arch_id of the mother; empty for the initial population"),
    ("genotype_json", "str", "the genotype as canonical JSON (normal/reduce edges and concats)"),
    ("born_cycle", "i32", "cycle tag the network was created in (initial population: 0)"),
    ("last_cycle", "i32", "cycle tag of its latest concluded segment (born_cycle before any)"),
    ("segments_done", "i32", "segments concluded, trained or given up (0..segments)"),
    ("scores", "f64", "N x segments: best accuracy (%) of each segment; NaN = not yet, 0 = failed"),
    ("status", "str", "pending | ok | diverged | unbuildable | failed"),
    ("attempts", "i32", "job submissions over all its segments, retries included"),
    ("checkpoint_path", "str", "latest checkpoint file, as the driver recorded it; empty if none"),
    ("checkpoint_sha256", "str", "sha256 hex digest of that checkpoint file; empty if none"),
)
_JOB_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("arch_id", "str", "network the job trains"),
    ("segment", "i32", "segment trained, 1-based (segment s covers epochs [(s-1)E, sE))"),
    ("cycle", "i32", "cycle tag the segment is trained in"),
    ("job_id", "str", "scheduler job id of the latest submission; empty before submission"),
    ("attempt", "i32", "submissions so far (0 while planned)"),
    ("state", "str", "planned | submitted | running | done | failed"),
    ("submitted_at", "str", "ISO 8601 UTC time of the latest submission; empty before"),
    (
        "cause",
        "str",
        "why a pending job waits: a fault outside the network (e.g. no_space), or empty",
    ),
)
# Columns added after schema 1 was first written: absent in older files, read as their default.
_OPTIONAL_COLUMNS: dict[str, Any] = {"cause": ""}
_CYCLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("cycle", "i32", "cycle number; -1 is the initial population"),
    ("n_continued", "i32", "networks trained one more segment this cycle"),
    ("n_mothers", "i32", "tournament draws (mothers, repeats counted)"),
    ("n_children", "i32", "networks born this cycle"),
    *((f"size_{p}", "i32", f"size of pool {p} when the cycle was planned") for p in POOL_NAMES),
    *(
        (f"best_{p}", "f64", f"best score in pool {p} when planned; NaN if empty")
        for p in POOL_NAMES
    ),
    ("wall_s", "f64", "wall-clock seconds from planning to the last result"),
    ("gpu_s", "f64", "GPU-seconds summed over the cycle's segments"),
    ("spearman_P20_P40", "f64", "rank correlation of P20 and P40 scores; NaN until computed"),
    ("spearman_P40_P60", "f64", "rank correlation of P40 and P60 scores; NaN until computed"),
    ("continued", "str", "comma-separated arch_id:segment trained further this cycle"),
    ("mothers", "str", "comma-separated arch_ids of the mothers, in draw order"),
    ("children", "str", "comma-separated arch_ids born this cycle, in birth order"),
)
_ATTRS_DOC = (
    "root attributes: schema_version (int), schema_doc (this text), econas_hpc_version, "
    "run_id (made at launch; <run>.d/run_id holds it too), "
    "config_json (the resolved SearchConfig), seed, rng_state_json (numpy bit-generator state "
    "after the latest plan), cycle (cycle in progress or next; -1 = initial population), "
    "created / updated / saved_at (ISO 8601 UTC), checksum_sha256 (sha256 of every group, "
    "dataset and attribute but this one, checked on load; a mismatch falls back to .prev)"
)


def _schema_doc() -> str:
    lines = [f"econas-hpc run state, schema {STATE_SCHEMA_VERSION}. {_ATTRS_DOC}."]
    for group, columns in (("networks", _NETWORK_COLUMNS), ("jobs", _JOB_COLUMNS)):
        lines.append(f"/{group}: one row per {group[:-1]}, in creation order.")
        lines.extend(f"  /{group}/{name} ({kind}): {doc}" for name, kind, doc in columns)
    lines.append("/cycles: one row per planned cycle, oldest first.")
    lines.extend(f"  /cycles/{name} ({kind}): {doc}" for name, kind, doc in _CYCLE_COLUMNS)
    lines.append(
        "/pools/P20, /pools/P40, /pools/P60 (str): arch_ids in each pool at this save, "
        "best first, after the aging filter (derived; ignored on load)."
    )
    return "\n".join(lines)


SCHEMA_DOC = _schema_doc()


def _write_records(
    group: h5py.Group, columns: Sequence[tuple[str, str, str]], rows: list[Any], width: int = 0
) -> None:
    for name, kind, doc in columns:
        values: Any = [getattr(row, name) for row in rows]
        if name == "scores":  # N x segments, also when N is 0
            values = np.asarray(values, dtype=np.float64).reshape(len(rows), width)
        put(group, name, kind, values, doc)


def _cycle_values(record: CycleRecord) -> dict[str, Any]:
    values: dict[str, Any] = {
        "cycle": record.cycle,
        "n_continued": len(record.continued),
        "n_mothers": len(record.mothers),
        "n_children": len(record.children),
        "wall_s": record.wall_s,
        "gpu_s": record.gpu_s,
        "spearman_P20_P40": record.proxy_rank_spearman[0],
        "spearman_P40_P60": record.proxy_rank_spearman[1],
        "continued": ",".join(f"{a}:{s}" for a, s in record.continued),
        "mothers": ",".join(record.mothers),
        "children": ",".join(record.children),
    }
    for k, pool in enumerate(POOL_NAMES):
        values[f"size_{pool}"] = record.pool_sizes[k]
        values[f"best_{pool}"] = record.pool_best[k]
    return values


def _write(
    handle: h5py.File, state: RunState, segments: int, pools: Mapping[str, Sequence[str]] | None
) -> None:
    attrs = handle.attrs
    attrs["schema_version"] = STATE_SCHEMA_VERSION
    attrs["schema_doc"] = SCHEMA_DOC
    attrs["econas_hpc_version"] = __version__
    attrs["run_id"] = state.run_id
    attrs["config_json"] = json.dumps(state.config.to_dict())
    attrs["seed"] = state.seed
    attrs["rng_state_json"] = state.rng_state
    attrs["cycle"] = state.cycle
    attrs["created"] = state.created
    attrs["updated"] = state.updated
    attrs["saved_at"] = utc_now()
    _write_records(
        handle.create_group("networks"), _NETWORK_COLUMNS, list(state.networks.values()), segments
    )
    _write_records(handle.create_group("jobs"), _JOB_COLUMNS, list(state.jobs.values()))
    rows = [_cycle_values(c) for c in state.cycles]
    group = handle.create_group("cycles")
    for name, kind, doc in _CYCLE_COLUMNS:
        put(group, name, kind, [row[name] for row in rows], doc)
    if pools is not None:
        group = handle.create_group("pools")
        for name, members in pools.items():
            put(
                group,
                name,
                "str",
                list(members),
                f"arch_ids in pool {name} at this save, best first",
            )


def _scores_width(state: RunState) -> int:
    """Columns of /networks/scores: segments per network (from the records, else the config)."""
    if state.networks:
        return len(next(iter(state.networks.values())).scores)
    return state.config.segments_per_network


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def _cycle_record(row: dict[str, Any]) -> CycleRecord:
    continued = tuple(
        (a, int(s)) for a, _, s in (item.rpartition(":") for item in _split(row["continued"]))
    )
    return CycleRecord(
        cycle=row["cycle"],
        continued=continued,
        mothers=_split(row["mothers"]),
        children=_split(row["children"]),
        pool_sizes=tuple(row[f"size_{p}"] for p in POOL_NAMES),
        pool_best=tuple(row[f"best_{p}"] for p in POOL_NAMES),
        wall_s=row["wall_s"],
        gpu_s=row["gpu_s"],
        proxy_rank_spearman=(row["spearman_P20_P40"], row["spearman_P40_P60"]),
    )


def _check_schema(path: Path, version: int) -> None:
    if version not in SUPPORTED_SCHEMAS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMAS)
        advice = (
            "upgrade econas-hpc to read it"
            if version > max(SUPPORTED_SCHEMAS)
            else ("it predates this reader")
        )
        raise StateError(
            f"state file {path} has schema_version {version}; this econas-hpc {__version__} "
            f"reads schema version(s) {supported}: {advice}"
        )


def _check_checked(handle: h5py.File, checked: bool) -> None:
    # Files written before checksums (and run ids) existed are read unverified; a file with a
    # run id was written with a checksum, so one without is damaged.
    if not checked and "run_id" in handle.attrs:
        raise CorruptFileError("it has lost its checksum block")


def _config(text: str, path: Path) -> SearchConfig:
    """The typed config of `config_json`, decoded once, here (the search never re-parses it).

    Raises:
        CorruptFileError: not a JSON object, or not a valid search config.
        StateError: a file from before the 2^(x/2) levels whose setting changed meaning.
    """
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as err:  # nested too deep: not a config either
        raise CorruptFileError(f"attribute config_json is not JSON ({err})") from None
    if not isinstance(config, dict):
        raise CorruptFileError("attribute config_json is not a JSON object")
    # A file that predates the notation record is refused if its setting changed meaning.
    setting = str(config.get("setting", PROXY))
    check_notation(str(config.get("notation", "")), [setting], f"state {path}")
    try:
        return SearchConfig.from_dict(config)
    except ConfigError as err:
        raise CorruptFileError(f"attribute config_json: {err}") from None


def _decode(handle: h5py.File, path: Path) -> RunState:
    attrs = handle.attrs
    networks = [NetworkRecord(**r) for r in read_table(handle["networks"], _NETWORK_COLUMNS)]
    jobs = [JobRecord(**r) for r in read_table(handle["jobs"], _JOB_COLUMNS, _OPTIONAL_COLUMNS)]
    cycles = [_cycle_record(r) for r in read_table(handle["cycles"], _CYCLE_COLUMNS)]
    check_names(networks, jobs, cycles)  # ids become folder names: arch_ids only
    return RunState(
        config=_config(str(attrs["config_json"]), path),
        seed=int(attrs["seed"]),
        rng_state=str(attrs["rng_state_json"]),
        cycle=int(attrs["cycle"]),
        networks={n.arch_id: n for n in networks},
        jobs={j.key: j for j in jobs},
        cycles=cycles,
        created=str(attrs["created"]),
        updated=str(attrs["updated"]),
        run_id=str(attrs["run_id"]) if "run_id" in attrs else "",
    )


def _read(path: Path) -> RunState:
    """One state file, verified and decoded.

    Raises:
        CorruptFileError: it cannot be opened, fails its checksum, or lacks what the schema
            requires.
        StateError: an intact file of a schema this reader does not know.
    """
    try:
        with open_snapshot(path) as (handle, checked):
            _check_checked(handle, checked)
            _check_schema(path, int(handle.attrs["schema_version"]))
            return _decode(handle, path)
    except READ_ERRORS as err:
        raise CorruptFileError(f"{type(err).__name__}: {err}") from None


def _identity(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of `path`, None when it is missing: a replaced file differs."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


PoolsOf = Callable[[RunState], Mapping[str, Sequence[str]]]


class StateStore:
    """Checksummed atomic snapshots of one run's `RunState` in `path` (previous: `<path>.prev`).

    `pools`: what the caller's policy says the P20/P40/P60 pools are, written as the derived
    `/pools` group on each save (the store knows no policy); None writes no `/pools`.
    After a `load`, `loaded_from` is the file it used (the main file or `.prev`) and `recovery`
    says why `.prev` was needed ("" when the main file was good).
    """

    def __init__(self, path: str | Path, pools: PoolsOf | None = None) -> None:
        self.files = SnapshotFiles(path)
        self.path = self.files.path
        self.prev_path = self.files.prev_path
        self.tmp_path = self.files.tmp_path
        self.loaded_from: Path | None = None
        self.recovery = ""
        self._pools = pools
        self._written: tuple[int, int, int] | None = None

    def exists(self) -> bool:
        """True when the main file or its previous snapshot exists."""
        return self.files.exists()

    def save(self, state: RunState) -> None:
        """Write `state` atomically; a current file that verifies becomes `.prev`.

        A main file that is corrupt does not replace a good `.prev`.

        Raises:
            NoSpaceError, PermissionFault, FileSystemFault: one line; the files on disk are
                as they were.
        """
        segments = _scores_width(state)
        pools = self._pools(state) if self._pools is not None else None
        main_ok = self._main_ok()

        def fill(handle: h5py.File) -> None:
            _write(handle, state, segments, pools)
            if main_ok:
                self._carry_foreign_groups(handle)

        image = build_image(fill)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.files.write(image, keep_previous=main_ok)
        self._written = _identity(self.path)

    def _main_ok(self) -> bool:
        """The main file is a good snapshot (it becomes `.prev` and lends its foreign groups)."""
        identity = _identity(self.path)
        if identity is None:
            return False
        if identity == self._written:  # the file this store wrote last, untouched since
            return True
        try:
            _read(self.path)
            return True
        except (CorruptFileError, StateError):
            return False

    def _carry_foreign_groups(self, handle: h5py.File) -> None:
        """Copy groups other writers own (e.g. `/retrain`) from the current file unchanged."""
        with open_snapshot(self.path) as (src, _):
            for name in src:
                if name not in handle:
                    src.copy(src[name], handle, name=name)

    def load(self) -> RunState:
        """The latest good snapshot; see `load_with_source`."""
        return self.load_with_source()[0]

    def load_with_source(self) -> tuple[RunState, Path]:
        """Read the main file, or `.prev` (with a warning, and `recovery` set) when the main
        one is missing, unreadable or fails its checksum.

        Raises:
            StateError: neither file exists or is readable, or an intact file of a schema this
                reader does not know.
        """
        if not self.exists():
            raise StateError(f"state file {self.path} does not exist")
        problems: list[str] = []
        for candidate in (self.path, self.prev_path):
            if not candidate.exists():
                problems.append(f"{candidate} is missing")
                continue
            try:
                state = _read(candidate)
            except CorruptFileError as err:
                problems.append(f"{candidate} is unreadable ({err})")
                continue
            self.loaded_from = candidate
            self.recovery = ""
            if candidate != self.path:
                self.recovery = f"{problems[0]}; loaded the previous snapshot {candidate}"
                log.warning("%s", self.recovery)
            return state, candidate
        raise StateError(f"state file {self.path} cannot be loaded: {'; '.join(problems)}")
