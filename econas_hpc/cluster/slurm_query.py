"""Batched Slurm queries: job states, cancellation and job listing, one command per call.

This module owns the text protocol with `sacct`, `squeue` and `scancel`: the commands, the
parsing (array ids such as `123_4` and pending ranges such as `123_[5-9%2]` included) and the
mapping of Slurm states to `JobState`. It never calls the scheduler once per job (a cluster's
controller is shared by everybody), and it imports neither submitit nor torch.

`sacct` needs accounting (slurmdbd); where it fails, one `squeue` call answers instead, which
only knows jobs the controller still holds (`MinJobAge`), so older ones read "unknown".
PREEMPTED is alive while the job is queued again and "cancelled" once the site dropped it
(`_confirm_preempted`), so a site that cancels preempted jobs cannot stall the driver.
"""

from __future__ import annotations

import getpass
import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence

from econas_hpc.cluster.options import JobState
from econas_hpc.errors import SubmissionError

__all__ = [
    "cancel_jobs",
    "expand_job_id",
    "list_jobs",
    "map_state",
    "parse_rows",
    "query_states",
]

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 60.0
NO_SLURM = "neither sacct nor squeue is on PATH; load your site's Slurm module"
FIND_WINDOW = "now-7days"  # how far back `list_jobs` looks for orphans in sacct

# Slurm state (first word, "+" stripped) -> JobState. PREEMPTED, REQUEUED and friends are never
# final: with PreemptMode=REQUEUE the scheduler runs the job again by itself.
_STATES: dict[str, JobState] = {
    **dict.fromkeys(
        ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SPECIAL_EXIT"),
        "pending",
    ),
    **dict.fromkeys(
        ("RUNNING", "COMPLETING", "SUSPENDED", "RESIZING", "STOPPED", "SIGNALING", "STAGE_OUT"),
        "running",
    ),
    "PREEMPTED": "preempted",
    "COMPLETED": "done",
    **dict.fromkeys(("FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"), "failed"),
    **dict.fromkeys(("CANCELLED", "REVOKED"), "cancelled"),
    "TIMEOUT": "timeout",
    "NODE_FAIL": "node_fail",
}

_RANGE_RE = re.compile(r"^(?P<base>\d+)_\[(?P<ranges>[0-9,\-]+)(%\d+)?\]$")


def map_state(raw: str) -> JobState:
    """Slurm's state text ("CANCELLED by 0", "COMPLETED", "RUNNING+") as a JobState."""
    word = raw.strip().split(" ", 1)[0].rstrip("+").upper()
    return _STATES.get(word, "unknown")


def expand_job_id(token: str) -> list[str]:
    """`123_[1-3,5%2]` -> ["123_1", "123_2", "123_3", "123_5"]; other ids unchanged."""
    match = _RANGE_RE.match(token.strip())
    if match is None:
        return [token.strip()]
    base, ids = match["base"], list[str]()
    for part in match["ranges"].split(","):
        low, _, high = part.partition("-")
        ids.extend(f"{base}_{i}" for i in range(int(low), int(high or low) + 1))
    return ids


def parse_rows(text: str, columns: int) -> list[list[str]]:
    """`|`-separated rows (sacct -P, squeue -o) with exactly `columns` fields; others skipped."""
    rows = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) == columns and fields[0]:
            rows.append(fields)
    return rows


def _base_id(job_id: str) -> str:
    return job_id.split("_", 1)[0]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, check=False
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _states_from(rows: Iterable[Sequence[str]]) -> dict[str, JobState]:
    out: dict[str, JobState] = {}
    for job_id, raw, *_ in rows:
        state = map_state(raw)
        for jid in expand_job_id(job_id):
            out[jid] = state
    return out


def query_states(job_ids: Sequence[str]) -> dict[str, JobState]:
    """The state of every id in ONE `sacct` call (one `squeue` call if sacct fails).

    Arrays are asked for by their base id, so tasks still pending inside a range are covered.
    Ids the scheduler does not report come back "unknown".
    """
    if not job_ids:
        return {}
    bases = ",".join(dict.fromkeys(_base_id(j) for j in job_ids))
    found: dict[str, JobState] | None = None
    if shutil.which("sacct"):
        proc = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", bases])
        if proc.returncode == 0:
            found = _states_from(parse_rows(proc.stdout, 3))
        else:
            log.warning("sacct failed (%s); asking squeue", _one_line(proc.stderr or proc.stdout))
    if found is None:
        found = _squeue_states()
    elif any(found.get(j) == "preempted" for j in job_ids):
        found = _confirm_preempted(found)
    return {jid: found.get(jid, "unknown") for jid in job_ids}


def _confirm_preempted(found: dict[str, JobState]) -> dict[str, JobState]:
    """PREEMPTED as a job's last accounting state: requeued (alive) or preempted for good?

    A site with PreemptMode=REQUEUE brings the job back (sacct then shows REQUEUED/PENDING; if
    PREEMPTED is seen at all, the controller still queues the job, which stays "preempted").
    A site with PreemptMode=CANCEL ends it: the controller no longer holds it as pending or
    running, and it reads "cancelled" so that the driver resubmits it. One squeue call, only
    when sacct reported PREEMPTED.
    """
    queued = _squeue_states()  # squeue's PREEMPTED is a finished job kept for MinJobAge
    out = dict(found)
    for jid, state in found.items():
        if state == "preempted" and queued.get(jid) not in ("pending", "running"):
            out[jid] = "cancelled"
    return out


def _squeue_states() -> dict[str, JobState]:
    if shutil.which("squeue") is None:
        raise SubmissionError(NO_SLURM)
    proc = _run(["squeue", "--me", "-h", "-r", "-o", "%i|%T"])
    if proc.returncode != 0:
        raise SubmissionError(f"squeue failed: {_one_line(proc.stderr or proc.stdout)}")
    return _states_from(parse_rows(proc.stdout, 2))


def cancel_jobs(job_ids: Sequence[str]) -> None:
    """Cancel every id with ONE `scancel` call; ids already gone are not an error."""
    if not job_ids:
        return
    if shutil.which("scancel") is None:
        raise SubmissionError("scancel not found on PATH; load your site's Slurm module")
    proc = _run(["scancel", *dict.fromkeys(job_ids)])
    if proc.returncode != 0:
        # scancel exits non-zero when some id is already finished; the rest are still cancelled.
        log.warning("scancel: %s", _one_line(proc.stderr or proc.stdout))


def list_jobs() -> list[tuple[str, str, JobState]]:
    """(job id, job name, state) of this user's recent jobs: ONE sacct (or squeue) call.

    Pending array ranges are expanded, so every array task has its own row.
    """
    rows: list[list[str]] | None = None
    if shutil.which("sacct"):
        proc = _run(
            [
                "sacct",
                "-X",
                "-n",
                "-P",
                "-o",
                "JobID,JobName,State",
                "-S",
                FIND_WINDOW,
                "-u",
                getpass.getuser(),
            ]
        )
        if proc.returncode == 0:
            rows = parse_rows(proc.stdout, 3)
        else:
            log.warning("sacct failed (%s); asking squeue", _one_line(proc.stderr or proc.stdout))
    if rows is None:
        if shutil.which("squeue") is None:
            raise SubmissionError(NO_SLURM)
        proc = _run(["squeue", "--me", "-h", "-r", "-o", "%i|%j|%T"])
        if proc.returncode != 0:
            raise SubmissionError(f"squeue failed: {_one_line(proc.stderr or proc.stdout)}")
        rows = parse_rows(proc.stdout, 3)
    return [
        (jid, name, map_state(raw)) for job_id, name, raw in rows for jid in expand_job_id(job_id)
    ]
