"""Job names and array manifests: how a person reading `squeue`, and `find()`, identify jobs.

This module owns the naming rules (an item is `econas-<run>-<arch_id>-s<segment>`; a job array
is `<run prefix>-<label>`; a packed job is its first item's name + `+<K-1>`) and the manifests
under `<folder>/arrays/` that say which items each array index holds: written under the array's
name before sbatch (the orphan token) and under its job id after. It knows nothing about
submitit or the scheduler's commands.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.fsio import make_private_dir, write_json_atomic

__all__ = ["PACKAGE_ROOT", "ArrayManifests", "array_name", "job_name", "pythonpath_line"]

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding econas_hpc/


def job_name(items: Sequence[WorkItem]) -> str:
    """The name of a job running `items`: the item's name, or the first one's + `+<K-1>`."""
    return items[0].name if len(items) == 1 else f"{items[0].name}+{len(items) - 1}"


def array_name(items: Sequence[WorkItem], label: str) -> str:
    """`<run prefix>-<label>`: the run prefix is what item names share before `-<arch>-s<seg>`.

    Without a label, a digest of the item names: the same items always get the same name.
    """
    prefixes = {item.name.rsplit("-", 2)[0] for item in items}
    prefix = prefixes.pop() if len(prefixes) == 1 else "econas"
    if not label:
        names = "\n".join(item.name for item in items).encode()
        label = "b" + hashlib.sha256(names).hexdigest()[:6]
    return f"{prefix}-{label}"


def pythonpath_line() -> str:
    """Shell line that makes this package importable in a job (gotcha 9).

    Jobs run the submitter's interpreter, which need not have the package installed. Put it
    after the site's setup lines so that a `module load` cannot undo it.
    """
    return f"export PYTHONPATH={shlex.quote(str(PACKAGE_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"


def id_key(job_id: str) -> tuple[int, int]:
    """Sort key of a Slurm id (`123`, `123_4`): submission order."""
    base, _, index = job_id.partition("_")
    return (int(base) if base.isdigit() else 0, int(index) if index.isdigit() else -1)


class ArrayManifests:
    """`<folder>/arrays/`: item names per array index, before and after sbatch."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / "arrays"

    def before_submit(self, name: str, chunks: list[list[str]]) -> None:
        _write_json(self._pending(name), {"name": name, "chunks": chunks})

    def after_submit(self, name: str, chunks: list[list[str]], job_ids: list[str]) -> None:
        base = job_ids[0].split("_", 1)[0]
        _write_json(
            self.folder / f"{base}.json", {"name": name, "chunks": chunks, "job_ids": job_ids}
        )
        self._pending(name).unlink(missing_ok=True)

    def item_names(self, job_id: str, scheduler_name: str) -> list[str]:
        """The item names job `job_id` runs; its scheduler name when no manifest knows it."""
        base, _, index = job_id.partition("_")
        manifest = _read_json(self.folder / f"{base}.json")
        if manifest is None:  # sbatch went through but the driver died before recording it
            manifest = _read_json(self._pending(scheduler_name))
        if manifest is None:
            return [scheduler_name]
        chunks = manifest["chunks"]
        position = int(index) if index.isdigit() else 0
        return list(chunks[position]) if position < len(chunks) else [scheduler_name]

    def recorded(self) -> list[tuple[str, str]]:
        """(job id, array name) of every submission recorded after its sbatch returned."""
        rows: list[tuple[str, str]] = []
        for path in sorted(self.folder.glob("*.json")):
            manifest = _read_json(path) if not path.name.startswith("pending-") else None
            if manifest is not None:
                rows += [(str(j), str(manifest["name"])) for j in manifest.get("job_ids", [])]
        return rows

    def _pending(self, name: str) -> Path:
        return self.folder / f"pending-{name}.json"


def _write_json(path: Path, obj: object) -> None:
    make_private_dir(path.parent, "executor folder")
    write_json_atomic(path, obj, sort_keys=False)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
