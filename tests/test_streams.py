"""Lane streams: torch's round-robin pool hands the same stream to several lanes once draws
wrap; `StreamBank` gives every open lane its own. The pool is modelled exactly as torch's
(32 streams per priority level, one counter per level, advanced by every draw in the process).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from econas_hpc.train.streams import POOL_SIZE, StreamBank, pick_distinct


def _pool(levels: int = 2) -> Callable[[int], int]:
    """torch's pool: priority p (0, -1, ...) draws the next of its 32 streams, round robin."""
    counters = [0] * levels

    def draw(priority: int) -> int:
        level = min(-priority, levels - 1)  # out-of-range priorities map to the nearest level
        counters[level] += 1
        return level * POOL_SIZE + (counters[level] - 1) % POOL_SIZE

    return draw


def test_plain_pool_draws_share_streams_between_28_lanes() -> None:
    draw = _pool()
    lanes = [(draw(0), draw(0)) for _ in range(28)]  # the old code: two draws per lane
    assert len({s for pair in lanes for s in pair}) < 2 * 28


def test_every_open_lane_gets_a_distinct_stream_despite_other_draws() -> None:
    draw = _pool()
    bank = StreamBank(draw, lambda s: s, priorities=(0, -1))
    lent = []
    for i in range(28):
        lent.append(bank.lend())
        for _ in range(i % 3):
            draw(0)  # other code in the process advances the same counter
    assert len(set(lent)) == 28 == bank.lent


def test_two_levels_hold_64_lanes_then_a_warned_share(caplog: pytest.LogCaptureFixture) -> None:
    bank = StreamBank(_pool(), lambda s: s, priorities=(0, -1, -2))  # -2 maps onto level 1
    lent = [bank.lend() for _ in range(2 * POOL_SIZE)]
    assert len(set(lent)) == 2 * POOL_SIZE
    with caplog.at_level(logging.WARNING):
        extra = bank.lend()
    assert extra in lent and "share a stream" in caplog.text
    bank.give_back(extra)
    assert bank.lent == 2 * POOL_SIZE  # the other holder of that stream still has it


def test_a_returned_stream_is_lent_again() -> None:
    bank = StreamBank(_pool(levels=1), lambda s: s, priorities=(0,))
    first = [bank.lend() for _ in range(POOL_SIZE)]
    bank.give_back(first[5])
    assert bank.lend() == first[5] and bank.lent == POOL_SIZE


def test_pick_distinct_gives_up_after_its_tries() -> None:
    draws = iter(range(10))
    assert pick_distinct(lambda: next(draws), lambda s: s, {0, 1, 2}, tries=3) is None
    assert pick_distinct(lambda: next(draws), lambda s: s, {4}, tries=3) == 3
