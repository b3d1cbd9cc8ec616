"""HDF5 files built in memory and published through `fsio`: no temporary name on disk.

h5py's write mode opens a path and follows links, so a predictable `<file>.tmp` in a folder
another user can write is a way to overwrite that user's chosen victim. This module owns the
alternative the zoo file and the `/retrain` rewrite use: the new file is built with HDF5's core
driver without a backing store (nothing reaches the disk), its image is taken as bytes, and
`fsio.write_bytes_atomic` publishes it (unpredictable 0600 temporary, fsync, rename).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from econas_hpc.fsio import write_bytes_atomic


@contextmanager
def memory_file() -> Iterator[h5py.File]:
    """A new, empty HDF5 file that lives only in memory (closed on exit)."""
    # The name is only HDF5's label for the image: with backing_store=False it is never opened.
    handle = h5py.File(f"econas-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False)
    try:
        yield handle
    finally:
        handle.close()


def file_image(handle: h5py.File) -> bytes:
    """The complete bytes of the in-memory file `handle`, as a reader would find them on disk."""
    handle.flush()
    return bytes(handle.id.get_file_image())


def publish(handle: h5py.File, path: Path) -> None:
    """Write the image of `handle` to `path` atomically (0600; see `fsio.write_bytes_atomic`).

    Raises:
        NoSpaceError, PermissionFault, FileSystemFault: the write failed; `path` is unchanged.
    """
    write_bytes_atomic(path, file_image(handle))
