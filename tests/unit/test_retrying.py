"""The one backoff formula and the one interruptible sleep."""

from __future__ import annotations

import asyncio

import pytest

from pumphouse.retrying import backoff_delay, sleep_unless


def test_the_ceiling_doubles_from_base_up_to_cap() -> None:
    top = [backoff_delay(n, base=0.2, cap=10.0, rand=lambda: 1.0) for n in range(1, 9)]
    assert top == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]


def test_jitter_draws_from_the_top_share_of_the_ceiling() -> None:
    assert backoff_delay(3, base=0.2, cap=10.0, rand=lambda: 0.0) == pytest.approx(0.4)
    assert backoff_delay(3, base=0.2, cap=10.0, jitter=1.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, base=0.2, cap=10.0, jitter=0.0, rand=lambda: 0.3) == 0.8


def test_no_wait_before_the_first_attempt_and_no_overflow() -> None:
    assert backoff_delay(0, base=1.0, cap=5.0) == 0.0
    assert backoff_delay(10_000, base=1.0, cap=5.0, jitter=0.0) == 5.0
    with pytest.raises(ValueError, match="jitter"):
        backoff_delay(1, base=1.0, cap=5.0, jitter=2.0)


async def test_sleep_unless_returns_as_soon_as_the_event_is_set() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await sleep_unless(event, 3600) is True  # the test would hang otherwise
    assert await sleep_unless(asyncio.Event(), 0.0) is False
