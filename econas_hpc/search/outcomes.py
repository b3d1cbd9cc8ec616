"""Reading the result files workers write: what the driver takes from each finished segment.

This module owns `SegmentOutcome` and `read_outcome`: a result file is accepted only when it
is complete, final and for the expected (arch_id, epochs); anything else is moved aside so
that a retry recomputes it (workers skip items whose result file exists).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from econas_hpc.fsio import UnsafePathError, check_within
from econas_hpc.search.ledger import RESULT_STATUSES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SegmentOutcome:
    """What the driver takes from a result file: enough to apply it and to account for it."""

    status: str  # one of evolution.RESULT_STATUSES
    score: float
    wall_s: float
    device: str
    checkpoint: str  # relative to the network's directory; "" when none
    checkpoint_sha256: str


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
    except (OSError, ValueError, RecursionError) as exc:  # deep nesting: not a result either
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
