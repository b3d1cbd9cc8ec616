"""Stop requests that survive a swallowed signal exception.

Python runs a signal handler between bytecodes, wherever the main thread happens to be. When
that is inside a weakref callback or a `__del__` method, the exception the handler raises
(KeyboardInterrupt for Ctrl-C, `InterruptedRun` for SIGTERM) is printed as "Exception ignored
in ..." and dropped, and the driver would run on as if nothing happened (seen under load).
This module owns the remedy: the CLI's handlers `record` the exception before raising it, and
the driver's loop calls `raise_if_pending` once per tick, so a dropped stop is raised again at
a safe point. Standard library only; no policy.
"""

from __future__ import annotations

import threading

__all__ = ["clear", "raise_if_pending", "record"]

_lock = threading.Lock()
_pending: list[BaseException] = []


def record(exc: BaseException) -> None:
    """Remember `exc` as the stop the process owes (the first one wins)."""
    with _lock:
        if not _pending:
            _pending.append(exc)


def clear() -> None:
    """Forget any recorded stop (the handler's exception reached its catcher)."""
    with _lock:
        _pending.clear()


def raise_if_pending() -> None:
    """Raise the recorded stop, if one was recorded and not yet cleared."""
    with _lock:
        exc = _pending.pop() if _pending else None
    if exc is not None:
        raise exc
