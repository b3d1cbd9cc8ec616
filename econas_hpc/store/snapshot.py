"""HDF5 snapshot files: built in memory, checksummed, written atomically, the previous one kept.

This module owns the file handling every HDF5 file of the package shares (the run state, its
`/retrain` table, the model zoo):

- `build_image`: the file is built in memory (h5py's `core` driver without a backing store) and
  returned as bytes behind a 512-byte HDF5 user block that holds the sha256 of those bytes
  (`stamp`; HDF5 readers skip a user block, so h5py and h5dump read the file as usual). Nothing
  touches the disk while h5py runs, so a full disk can never fail inside HDF5.
- `SnapshotFiles.write`: the bytes go to disk with `fsio.write_bytes_atomic` (plain file I/O,
  fsync, `os.replace`), so a full disk is one `NoSpaceError` line, no temporary file is left and
  the last good file is untouched. The current file becomes `<path>.prev` only once the new one
  is in place.
- `open_snapshot`: the file is read whole and its checksum checked before HDF5 parses a byte, so
  a damaged file is a quick `CorruptFileError` (the readers then fall back to `<path>.prev`)
  instead of whatever HDF5 makes of damaged metadata (wrong values, or seconds spent chasing
  corrupt heap addresses); HDF5 then reads exactly the verified bytes, from memory.
- the column helpers (`put`, `read_table`) of the typed tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from econas_hpc.fsio import describe_os_error, fsync_dir, write_bytes_atomic

USERBLOCK = 512  # bytes before the HDF5 superblock; HDF5 leaves them to the application
MAGIC = b"econas-hpc snapshot sha256="
STR_DTYPE = h5py.string_dtype("utf-8")
# Reading a damaged HDF5 file can fail in any of these ways (h5py maps library errors onto
# OSError, KeyError, ValueError, TypeError and RuntimeError; broken strings give
# UnicodeDecodeError, a ValueError). All of them mean "this file cannot be used".
READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    KeyError,
    ValueError,
    TypeError,
    RuntimeError,
    AttributeError,
    IndexError,
    OverflowError,
)
_IMAGES = itertools.count()


class CorruptFileError(Exception):
    """A file that cannot be opened, fails its checksum, or lacks what its schema requires."""


# Everything that means "this snapshot cannot be used" to a reader.
UNUSABLE: tuple[type[Exception], ...] = (CorruptFileError, *READ_ERRORS)


def put(group: h5py.Group, name: str, kind: str, values: Sequence[Any], doc: str) -> None:
    """A 1-D (or, for "f64" values already shaped, N-D) column `name` with its description."""
    if kind == "str":
        data = np.array(list(values) or [], dtype=object)
        dataset = group.create_dataset(name, data=data, shape=(len(values),), dtype=STR_DTYPE)
    else:
        dtype = {"i32": np.int32, "i64": np.int64}.get(kind, np.float64)
        dataset = group.create_dataset(name, data=np.asarray(values, dtype=dtype))
    dataset.attrs["description"] = doc


def column(group: h5py.Group, name: str, kind: str) -> list[Any]:
    """The values of one column as Python objects (N-D "f64" columns as tuples of rows)."""
    data = group[name][()] if kind != "str" else group[name].asstr()[()]
    if kind == "str":
        return [str(v) for v in data]
    if data.ndim == 2:
        return [tuple(float(x) for x in row) for row in data]
    return [float(v) if kind == "f64" else int(v) for v in data]


def read_table(
    group: h5py.Group,
    columns: Sequence[tuple[str, str, str]],
    optional: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The rows of a table whose columns are the (name, kind, doc) `columns`; a column named in
    `optional` (added to the schema later) that the file lacks reads as its default there.

    Raises:
        CorruptFileError: the columns have different lengths.
    """
    defaults = optional or {}
    data = {
        name: column(group, name, kind)
        for name, kind, _ in columns
        if name in group or name not in defaults
    }
    count = len(data[columns[0][0]])
    for name, value in defaults.items():
        data.setdefault(name, [value] * count)
    if any(len(values) != count for values in data.values()):
        raise CorruptFileError(f"{group.name} columns have different lengths")
    return [{name: data[name][i] for name in data} for i in range(count)]


# --- the checksum and the in-memory files ---------------------------------------------------


def stamp(image: bytes) -> bytes:
    """`image` (a plain HDF5 file) behind the user block that carries its sha256."""
    header = MAGIC + hashlib.sha256(image).hexdigest().encode("ascii") + b"\n"
    return header.ljust(USERBLOCK, b"\0") + image


def read_image(path: Path) -> tuple[bytes, bool]:
    """The HDF5 image of `path` (its bytes after the user block) and whether a checksum vouched
    for it (False for files written before checksums existed).

    Raises:
        CorruptFileError: the checksum does not match (or the file cannot be read).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"{type(exc).__name__}: {exc}") from None
    if not data.startswith(MAGIC):
        return data, False
    stored = data[len(MAGIC) : len(MAGIC) + 64].decode("ascii", "replace")
    image = data[USERBLOCK:]
    actual = hashlib.sha256(image).hexdigest()
    if stored != actual:
        raise CorruptFileError(
            f"checksum mismatch: stored {stored[:16]}..., content {actual[:16]}..."
        )
    return image, True


def _memory_name() -> bytes:
    return f"econas-snapshot-{os.getpid()}-{next(_IMAGES)}.h5".encode()


def open_image(image: bytes) -> h5py.File:
    """A read-only `h5py.File` over `image`, in memory."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fapl_core(backing_store=False)
    fapl.set_file_image(image)
    return h5py.File(h5py.h5f.open(_memory_name(), h5py.h5f.ACC_RDONLY, fapl=fapl))


@contextlib.contextmanager
def open_snapshot(path: Path) -> Iterator[tuple[h5py.File, bool]]:
    """(`h5py.File` of `path`'s verified bytes, whether a checksum vouched for them).

    Raises:
        CorruptFileError: the checksum does not match, or HDF5 cannot open the bytes.
    """
    image, checked = read_image(path)
    try:
        handle = open_image(image)
    except READ_ERRORS as exc:
        raise CorruptFileError(f"{type(exc).__name__}: {exc}") from None
    with handle:
        yield handle, checked


def build_image(fill: Callable[[h5py.File], None]) -> bytes:
    """An HDF5 file built by `fill` in memory, as the checksummed bytes of a file on disk."""
    name = _memory_name().decode()
    with h5py.File(name, "w", driver="core", backing_store=False) as handle:
        fill(handle)
        handle.flush()
        return stamp(bytes(handle.id.get_file_image()))


# --- the files on disk ------------------------------------------------------------------------


class SnapshotFiles:
    """The file `path` and its previous snapshot `<path>.prev`.

    `tmp_path` (`<path>.tmp`) is where older versions built the new file; a stray one is never
    read nor written (it may be a link planted by another user).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.prev_path = self.path.with_name(self.path.name + ".prev")
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self._staging = self.prev_path.with_name(self.prev_path.name + ".tmp")

    def exists(self) -> bool:
        """True when the file or its previous snapshot exists."""
        return self.path.exists() or self.prev_path.exists()

    def main_verifies(self) -> bool:
        """True when the current file is intact: its checksum holds and HDF5 opens it."""
        try:
            with open_snapshot(self.path) as (handle, _):
                return "schema_version" in handle.attrs
        except UNUSABLE:
            return False

    def write(self, image: bytes, keep_previous: bool) -> None:
        """Replace the file by `image`; with `keep_previous` the current file becomes `.prev`.

        The old `.prev` is replaced only after the new file is in place, so a failed write
        leaves both files as they were.

        Raises:
            NoSpaceError, PermissionFault, FileSystemFault: one line; nothing changed on disk.
        """
        self._staging.unlink(missing_ok=True)  # unlink never follows a planted link
        previous = self._hold_previous() if keep_previous else None
        try:
            write_bytes_atomic(self.path, image)
        except BaseException:
            with contextlib.suppress(OSError):
                self._staging.unlink(missing_ok=True)
            raise
        if isinstance(previous, bytes):
            write_bytes_atomic(self.prev_path, previous)
        elif previous is not None:
            try:
                os.replace(previous, self.prev_path)
            except OSError as exc:
                raise describe_os_error(exc, self.prev_path) from None
            fsync_dir(self.path.parent)

    def _hold_previous(self) -> Path | bytes:
        """The current file, kept for `.prev`: a hard link (it keeps the old content once
        `path` is replaced), or its bytes on file systems without hard links."""
        try:
            os.link(self.path, self._staging)
        except OSError:
            try:
                return self.path.read_bytes()
            except OSError as exc:
                raise describe_os_error(exc, self.path, "read") from None
        return self._staging
