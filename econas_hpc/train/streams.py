"""A distinct CUDA stream for every lane of a pack.

`torch.cuda.Stream()` does not create a stream: it hands out the next of a per-device pool of 32
streams per priority level, round robin, and every draw anywhere in the process advances the
counter. Lanes that each draw streams therefore share them once the draws wrap (two draws per
lane put 28 lanes on fewer than 28 streams), and two lanes on one stream serialise and share the
cuBLAS workspace keyed by that stream. `StreamBank` owns the streams lent to open lanes: it
draws pool streams, level by level, skipping those it has lent and not yet taken back, and
`pick_distinct` is that rule as a pure function (the CPU tests model the pool with it).

Must not: create raw CUDA streams outside torch's pool (the pool's streams are non-blocking and
live as long as the process; nothing here must be destroyed), or touch the default stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

import torch

__all__ = ["POOL_SIZE", "PRIORITIES", "StreamBank", "lane_streams", "pick_distinct"]

log = logging.getLogger(__name__)

POOL_SIZE = 32  # torch's kStreamsPerPool: streams per priority level and device
# Priority levels tried in turn (0 first: the lanes' own level). torch maps a level outside the
# device's range to the nearest valid one; a level that maps onto an earlier pool only yields
# streams already lent, which `pick_distinct` skips.
PRIORITIES = (0, -1, -2, -3)

S = TypeVar("S")


def pick_distinct(
    draw: Callable[[], S], key: Callable[[S], Hashable], lent: set[Hashable], tries: int
) -> S | None:
    """The first of up to `tries` drawn streams whose key is not in `lent`; None if none is."""
    for _ in range(tries):
        stream = draw()
        if key(stream) not in lent:
            return stream
    return None


class StreamBank(Generic[S]):
    """Lends each caller a stream no other holder of this bank has; `give_back` returns it.

    `new_stream(priority)` draws one pool stream (`torch.cuda.Stream` on a device) and `key`
    identifies the underlying stream (its `cudaStream_t`). When every level's pool is lent out,
    `lend` returns a shared stream with a warning: correct, only slower.
    """

    def __init__(
        self,
        new_stream: Callable[[int], S],
        key: Callable[[S], Hashable],
        priorities: Sequence[int] = PRIORITIES,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self._new, self._key, self._levels, self._size = new_stream, key, priorities, pool_size
        self._lent: dict[Hashable, int] = {}  # stream key -> holders

    def lend(self) -> S:
        """A stream no current holder has (pool levels in turn), else a shared one."""
        for priority in self._levels:
            lent = set(self._lent)
            found = pick_distinct(partial(self._new, priority), self._key, lent, self._size)
            if found is not None:
                self._lent[self._key(found)] = 1
                return found
        shared = self._new(self._levels[0])
        log.warning("all %d pool streams are lent: two lanes share a stream", len(self._lent))
        self._lent[self._key(shared)] = self._lent.get(self._key(shared), 0) + 1
        return shared

    def give_back(self, stream: S) -> None:
        """Return a lent stream (it stays alive in torch's pool for later lanes)."""
        key = self._key(stream)
        holders = self._lent.get(key, 0) - 1
        if holders > 0:
            self._lent[key] = holders
        else:
            self._lent.pop(key, None)

    @property
    def lent(self) -> int:
        """How many distinct streams are lent now."""
        return len(self._lent)


_BANKS: dict[torch.device, StreamBank[Any]] = {}


def lane_streams(device: torch.device) -> StreamBank[torch.cuda.Stream]:
    """The process's bank of lane streams on CUDA `device` (one bank per device)."""
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in _BANKS:

        def new(priority: int) -> torch.cuda.Stream:
            return torch.cuda.Stream(device, priority=priority)

        _BANKS[device] = StreamBank(new, lambda s: s.cuda_stream)
    return _BANKS[device]
