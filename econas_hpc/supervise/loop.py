"""The one job loop: submit, ingest, poll, save, heartbeat, until nothing is left in flight.

The search's cycles, the final retraining and the zoo each hand `drive` a `JobLoop` (what to
submit, how to ingest results and judge dead jobs, how to save) and it runs them all the same
way: results on disk are ingested every tick, the executor is polled once per poll interval
(one batched query: the scheduler is spared), what changed is saved, the driver lock's
heartbeat is refreshed, and the loop sleeps a tick only when nothing changed. A fault a person
must fix surfaces as the `EnvironmentFault` a loop's `poll` raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from econas_hpc import interrupts

__all__ = ["HEARTBEAT_S", "TICK_S", "JobLoop", "Lock", "drive"]

HEARTBEAT_S = 60.0  # the driver lock's heartbeat (other hosts judge staleness by it)
TICK_S = 1.0  # results on disk are looked for at least this often


class JobLoop(Protocol):
    def submit(self) -> None:
        """Submit every piece of work that is due (one `submit` call where possible)."""

    def ingest(self) -> int:
        """Apply the results that landed on disk; how many were new."""

    def finished(self) -> bool:
        """Nothing is left to submit or in flight."""

    def poll(self) -> int:
        """One batched poll; dead jobs judged (retried, failed, or the loop stops by raising);
        how many things changed."""

    def save(self, changed: int) -> None:
        """Persist the loop's records (`changed`: how many things changed since the last save)."""


class Lock(Protocol):
    def refresh(self) -> None: ...


def drive(
    loop: JobLoop,
    lock: Lock,
    poll_s: float,
    tick_s: float = TICK_S,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run `loop` until `finished()`; see the module docstring. `sleep` is injectable."""
    last_poll, last_beat = float("-inf"), time.monotonic()
    while True:
        interrupts.raise_if_pending()  # a Ctrl-C/SIGTERM a __del__ swallowed stops us here
        loop.submit()
        changed = loop.ingest()
        if loop.finished():
            loop.save(changed)
            return
        if time.monotonic() - last_poll >= poll_s:
            last_poll = time.monotonic()
            changed += loop.poll()
        loop.save(changed)
        if time.monotonic() - last_beat >= HEARTBEAT_S:
            lock.refresh()
            last_beat = time.monotonic()
        if not changed:
            sleep(min(poll_s, tick_s))
