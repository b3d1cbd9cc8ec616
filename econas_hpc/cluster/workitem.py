"""The unit of work a worker runs: one segment of one network (`WorkItem`).

This module owns `WorkItem`, its kinds and the failures a dry-run item may be asked to inject.
It imports nothing heavy, so the driver, the executors and the workers all share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from econas_hpc.errors import ConfigError
from econas_hpc.fsio import make_private_dir, write_json_atomic
from econas_hpc.space.genotype import check_arch_id

KINDS = ("train", "dryrun", "imagenet")
DRYRUN_FAILURES = ("", "crash", "hang", "diverge")


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One segment of one network, as a worker runs it.

    `spec` is `SegmentSpec.to_dict()` for "train"; for "dryrun" it holds arch_id, genotype_json,
    segment, seed, run_dir, epoch_start, epoch_end and optionally sleep_s and fail (one of
    `DRYRUN_FAILURES`). The worker writes `result_path` atomically when the item ends.
    """

    name: str
    kind: str
    spec: dict[str, Any]
    result_path: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"work item {self.name!r}: kind {self.kind!r}; allowed {KINDS}")
        if not self.spec.get("run_dir"):
            raise ConfigError(f"work item {self.name!r}: spec has no run_dir")
        if "arch_id" in self.spec:  # it names the item's folders: an arch_id, never a path
            check_arch_id(self.spec["arch_id"], f"work item {self.name!r}: network id")
        fail = self.spec.get("fail") or ""
        if self.kind == "dryrun" and fail not in DRYRUN_FAILURES:
            raise ConfigError(f"work item {self.name!r}: fail={fail!r}; allowed {DRYRUN_FAILURES}")

    @property
    def run_dir(self) -> Path:
        return Path(self.spec["run_dir"])

    def write_result(self, result: Mapping[str, Any]) -> None:
        """Write the item's result file (`write_worker_json`)."""
        write_worker_json(Path(self.result_path), dict(result))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "spec": dict(self.spec),
            "result_path": self.result_path,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkItem:
        name, kind, path = str(data["name"]), str(data["kind"]), str(data["result_path"])
        return cls(name, kind, dict(data["spec"]), path)


def write_worker_json(path: Path, obj: object) -> None:
    """A worker's JSON file (result or progress), atomically, in a private network folder."""
    make_private_dir(path.parent, "network folder")
    write_json_atomic(path, obj, sort_keys=False)
