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
    STATE_SCHEMA_VERSION,
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
from econas_hpc.store.state_schema import (
    CYCLE_COLUMNS,
    JOB_COLUMNS,
    NETWORK_COLUMNS,
    OPTIONAL_COLUMNS,
    SCHEMA_DOC,
    cycle_record,
    cycle_values,
)

log = logging.getLogger(__name__)

SUPPORTED_SCHEMAS: tuple[int, ...] = (1,)


def _write_records(
    group: h5py.Group, columns: Sequence[tuple[str, str, str]], rows: list[Any], width: int = 0
) -> None:
    for name, kind, doc in columns:
        values: Any = [getattr(row, name) for row in rows]
        if name == "scores":  # N x segments, also when N is 0
            values = np.asarray(values, dtype=np.float64).reshape(len(rows), width)
        put(group, name, kind, values, doc)


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
        handle.create_group("networks"), NETWORK_COLUMNS, list(state.networks.values()), segments
    )
    _write_records(handle.create_group("jobs"), JOB_COLUMNS, list(state.jobs.values()))
    rows = [cycle_values(c) for c in state.cycles]
    group = handle.create_group("cycles")
    for name, kind, doc in CYCLE_COLUMNS:
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
    networks = [NetworkRecord(**r) for r in read_table(handle["networks"], NETWORK_COLUMNS)]
    jobs = [JobRecord(**r) for r in read_table(handle["jobs"], JOB_COLUMNS, OPTIONAL_COLUMNS)]
    cycles = [cycle_record(r) for r in read_table(handle["cycles"], CYCLE_COLUMNS)]
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
