"""Turn preemption signals into a polled stop flag for the standalone `econas-hpc train` path.

SLURM and submitit send SIGUSR2 or SIGTERM shortly before preemption or a time limit. The
handler only sets a flag (nothing else is safe inside a signal handler); the trainer polls the
flag after every step, saves its exact position and returns `interrupted`. Any Python handler
that was installed before is chained, as Lightning's `signal_connector.py` does, so a cluster
layer's own handler still runs. The cluster layer may instead pass its own `stop` callable to
`run_segment`; this module does not exit, requeue or touch the scheduler.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

__all__ = ["DEFAULT_STOP_SIGNALS", "StopFlag", "install_stop_signals"]

log = logging.getLogger(__name__)

DEFAULT_STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGUSR2, signal.SIGTERM)

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class StopFlag:
    """A callable that is True once a stop signal arrived (or `set()` was called)."""

    __slots__ = ("_event", "_previous", "received")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: dict[int, _Handler] = {}
        self.received: int | None = None  # number of the first signal received, for the log

    def __call__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        """Request a stop without a signal (tests, cluster layers)."""
        self._event.set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        self._event.set()
        previous = self._previous.get(signum)
        # Chain only real Python handlers: SIG_DFL would kill the process before the trainer
        # could save, and SIG_IGN needs nothing.
        if callable(previous):
            previous(signum, frame)

    def restore(self) -> None:
        """Put back the handlers that were installed before `install_stop_signals`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


def install_stop_signals(
    signals: Iterable[signal.Signals | int] = DEFAULT_STOP_SIGNALS,
) -> StopFlag:
    """Install handlers that set a `StopFlag` on any of `signals`, chaining previous handlers.

    Must be called from the main thread (a Python restriction on `signal.signal`).

    Returns:
        The flag; pass it as `stop=` to `run_segment`, and call `flag.restore()` when done.
    """
    flag = StopFlag()
    for sig in signals:
        signum = int(sig)
        flag._previous[signum] = signal.getsignal(signum)
        signal.signal(signum, flag._handle)
        log.debug("stop flag armed for signal %d", signum)
    return flag
