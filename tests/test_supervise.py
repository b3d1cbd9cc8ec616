"""The one job supervisor that the search, the retraining and the zoo share (issue 13 item 1).

The fault rules run here once, against real executors (debug: in-process; local: submitit
subprocesses) and real work items (dry-run items, and one real training item on an empty
CIFAR-10 folder): submission tokens and orphan adoption, the one unknown-job rule, the time
limit (with an injected clock: no test depends on the machine's speed), and the retry and
charging policy by cause. Each user keeps a smoke test of its own (test_driver*, test_retrain,
test_zoo and the slurm-marked integration tests).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from econas_hpc.cluster.accounting import JobLimits, segment_counters
from econas_hpc.cluster.events import read_events
from econas_hpc.cluster.executors import make_executor
from econas_hpc.cluster.options import ClusterOptions, JobState
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.space.catalog import get_builtin
from econas_hpc.supervise import (
    UNKNOWN_GRACE_S,
    Supervisor,
    Tracked,
    probe_environment,
    unknown_is_gone,
)

GENOTYPE = get_builtin("darts_v2")
PREFIX = "econas-t-"
TIMEOUT_S = 300.0  # generous: waits end on events, this only bounds a broken run


def _item(root: Path, index: int, **extra: Any) -> WorkItem:
    run_dir = root / f"net{index}"
    path = extra.pop("result_path", None) or str(run_dir / "result-e000-020.json")
    spec = {
        "arch_id": GENOTYPE.arch_id,
        "genotype_json": GENOTYPE.to_json(),
        "segment": 1,
        "seed": index,
        "run_dir": str(run_dir),
        "epoch_start": 0,
        "epoch_end": 20,
        **extra,
    }
    return WorkItem(f"{PREFIX}net{index}-s1", "dryrun", spec, path)


def _supervisor(root: Path, kind: str = "debug", **kw: Any) -> Supervisor:
    executor = make_executor(kind, root / "executor", ClusterOptions(max_concurrent=2))
    return Supervisor(executor, PREFIX, kw.pop("max_attempts", 2), JobLimits(), **kw)


def _tracked(item: WorkItem, job_id: str, submitted_at: float = math.nan) -> Tracked:
    return Tracked(item.name, job_id, submitted_at, item.run_dir)


def _poll_until_dead(sup: Supervisor, jobs: Sequence[Tracked]) -> dict[str, str]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        dead = {t.name: verdict for t, verdict in sup.poll(jobs).dead}
        if len(dead) == len(jobs):
            return dead
        assert time.monotonic() < deadline, "jobs did not end"
        time.sleep(0.1)


# --- the unknown-job rule ---------------------------------------------------------------------


def test_one_unknown_job_rule_for_every_loop() -> None:
    grace = UNKNOWN_GRACE_S["slurm"]
    assert not unknown_is_gone("slurm", grace - 1) and unknown_is_gone("slurm", grace + 1)
    assert unknown_is_gone("local", 0.01) and unknown_is_gone("debug", 0.01)
    assert unknown_is_gone("slurm", math.inf)  # adopted: its submission time is not known


class _Forgetful:
    """A scheduler that knows no job (sacct's lag right after sbatch, or a purged job)."""

    kind = "slurm"

    def submit(self, items: Sequence[WorkItem], label: str = "") -> list[str]:
        return [f"{i}" for i, _ in enumerate(items)]

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return {}

    def cancel(self, job_ids: Sequence[str]) -> None:
        return None

    def find(self, name_prefix: str) -> dict[str, str]:
        return {}


def test_unknown_job_is_lag_while_fresh_and_gone_once_old_or_adopted(tmp_path: Path) -> None:
    sup = Supervisor(_Forgetful(), PREFIX, 2)
    item = _item(tmp_path, 0)
    fresh = _tracked(item, "1", time.time())
    old = _tracked(item, "2", time.time() - UNKNOWN_GRACE_S["slurm"] - 5)
    adopted = _tracked(item, "3")
    polled = sup.poll([fresh, old, adopted])
    assert [(t.job_id, v) for t, v in polled.dead] == [("2", "unknown"), ("3", "unknown")]


# --- tokens and adoption ----------------------------------------------------------------------


def test_token_names_the_submission_until_its_ids_are_saved(tmp_path: Path) -> None:
    token = tmp_path / "submitting.json"
    sup = _supervisor(tmp_path, "local", token=token)
    items = [_item(tmp_path, k, sleep_s=0.0) for k in range(2)]
    ids = sup.submit(items, "c0", {"cycle": 0})
    # A driver killed here leaves the token: the next one adopts instead of submitting again.
    again = _supervisor(tmp_path, "local", token=token)
    assert again.token_names() == [i.name for i in items]
    assert again.adopt(again.token_names()) == {i.name: j for i, j in zip(items, ids, strict=True)}
    assert again.adopt(again.token_names(), {items[0].name: ids[0]}) == {items[1].name: ids[1]}
    again.submitted()
    assert not token.exists() and again.token_names() == []
    _poll_until_dead(again, [_tracked(i, j) for i, j in zip(items, ids, strict=True)])


def test_unreadable_token_is_ignored(tmp_path: Path) -> None:
    token = tmp_path / "submitting.json"
    token.write_text("{torn")
    assert _supervisor(tmp_path, token=token).token_names() == []


# --- the time limit ---------------------------------------------------------------------------


def test_job_past_its_time_limit_is_cancelled_once(tmp_path: Path) -> None:
    """A hung worker, a 60-second limit and a clock the test moves: cancelled exactly when the
    clock passes the limit, whatever the machine's speed."""
    now = [0.0]
    sup = _supervisor(tmp_path, "local", job_timeout_s=60.0, clock=lambda: now[0])
    item = _item(tmp_path, 0, fail="hang")
    (job_id,) = sup.submit([item], "t")
    job = _tracked(item, job_id, time.time())
    deadline = time.monotonic() + TIMEOUT_S
    while not sup.poll([job]).running:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    now[0] = 59.0
    assert sup.poll([job]).overdue == []
    now[0] = 61.0
    assert sup.poll([job]).overdue == [job]
    assert _poll_until_dead(sup, [job]) == {item.name: "cancelled"}
    decision = sup.judge(job, "cancelled")
    assert decision.outcome.kind == "cancelled" and decision.outcome.charged


# --- the retry and charging policy ------------------------------------------------------------


def test_crashes_are_charged_until_max_attempts(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, max_attempts=2)
    item = _item(tmp_path, 0, fail="crash")
    actions = []
    for _ in range(2):
        (job_id,) = sup.submit([item], "t")
        job = _tracked(item, job_id, time.time())
        (verdict,) = _poll_until_dead(sup, [job]).values()
        actions.append(sup.judge(job, verdict).action)
    assert actions == ["retry", "fail"]
    assert segment_counters(read_events(item.run_dir), item.name).charged == 2


def test_judging_is_idempotent(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, max_attempts=1)
    item = _item(tmp_path, 0, fail="crash")
    (job_id,) = sup.submit([item], "t")
    job = _tracked(item, job_id, time.time())
    first, second = sup.judge(job, "failed"), sup.judge(job, "failed")
    assert first == second and first.counters.charged == 1


def test_lost_files_are_retried_uncharged(tmp_path: Path) -> None:
    """A result folder that became a file (a network folder lost under the worker): the
    worker's error names the cause, nothing is charged, the work is submitted again."""
    (tmp_path / "gone").write_text("not a folder")
    item = _item(tmp_path, 0, result_path=str(tmp_path / "gone" / "net0" / "result.json"))
    sup = _supervisor(tmp_path, max_attempts=1)
    for _ in range(3):  # more often than max_attempts: never charged
        (job_id,) = sup.submit([item], "t")
        job = _tracked(item, job_id, time.time())
        (verdict,) = _poll_until_dead(sup, [job]).values()
        decision = sup.judge(job, verdict)
        assert (decision.outcome.cause, decision.action) == ("lost_files", "retry")
        assert not decision.outcome.charged
    assert segment_counters(read_events(item.run_dir), item.name).charged == 0


def test_unreadable_data_waits_for_a_person_uncharged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real training item on an empty CIFAR-10 folder (no download from here): the data
    cause, never charged, and the run waits instead of resubmitting."""
    from econas_hpc.recipes import make_recipe
    from econas_hpc.settings import Setting
    from econas_hpc.train import SegmentSpec, result_path

    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    (tmp_path / "data").mkdir()
    setting = Setting.parse("c6r4s0e1")
    spec = SegmentSpec(
        arch_id=GENOTYPE.arch_id,
        genotype_json=GENOTYPE.to_json(),
        setting=str(setting),
        recipe=make_recipe("search", setting),
        epoch_start=0,
        epoch_end=1,
        run_dir=str(tmp_path / "net"),
        dataset="cifar10",
        data_dir=str(tmp_path / "data"),
        device="cpu",
    )
    item = WorkItem(f"{PREFIX}net-s1", "train", spec.to_dict(), str(result_path(spec)))
    sup = _supervisor(tmp_path, max_attempts=1)
    (job_id,) = sup.submit([item], "t")
    job = _tracked(item, job_id, time.time())
    (verdict,) = _poll_until_dead(sup, [job]).values()
    decision = sup.judge(job, verdict)
    assert (decision.outcome.kind, decision.outcome.cause) == ("environment", "data")
    assert decision.action == "wait" and not decision.outcome.charged
    assert "CIFAR-10 not found" in decision.outcome.reason


def test_a_crash_without_a_cause_is_blamed_on_what_the_probe_sees(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path, max_attempts=1)
    item = _item(tmp_path, 0, fail="crash")
    (job_id,) = sup.submit([item], "t")
    decision = sup.judge(_tracked(item, job_id), "failed", probe="no_space")
    assert (decision.outcome.cause, decision.action, decision.outcome.charged) == (
        "no_space",
        "wait",
        False,
    )


def test_probe_sees_a_missing_run_folder_and_nothing_on_a_healthy_one(tmp_path: Path) -> None:
    assert probe_environment(tmp_path, tmp_path) == ""
    assert probe_environment(tmp_path / "no" / "such") == "lost_files"


# --- the one loop -----------------------------------------------------------------------------


class _Countdown:
    """A JobLoop whose work ends after `results` results (one per poll) and records calls."""

    def __init__(self, results: int) -> None:
        self.left, self.calls, self.saved = results, [], []

    def submit(self) -> None:
        self.calls.append("submit")

    def ingest(self) -> int:
        return 0

    def finished(self) -> bool:
        return self.left == 0

    def poll(self) -> int:
        self.calls.append("poll")
        self.left -= 1
        return int(self.left % 2 == 0)  # every other poll changes something

    def save(self, changed: int) -> None:
        self.saved.append(changed)


class _Lock:
    def refresh(self) -> None:
        return None


def test_drive_polls_saves_and_sleeps_only_when_nothing_changed() -> None:
    from econas_hpc.supervise.loop import drive

    loop, sleeps = _Countdown(4), []
    drive(loop, _Lock(), poll_s=0.0, sleep=sleeps.append)
    assert loop.calls == ["submit", "poll"] * 4 + ["submit"]
    assert loop.saved == [0, 1, 0, 1, 0]  # every pass saves what changed; the last one too
    assert len(sleeps) == 2  # only after the passes where nothing changed


def test_drive_stops_on_the_fault_a_poll_raises() -> None:
    from econas_hpc.errors import EnvironmentFault
    from econas_hpc.supervise.loop import drive

    class Faulty(_Countdown):
        def poll(self) -> int:
            raise EnvironmentFault("data folder unreadable", "data")

    with pytest.raises(EnvironmentFault, match="data folder"):
        drive(Faulty(1), _Lock(), poll_s=0.0, sleep=lambda s: None)
