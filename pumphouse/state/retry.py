"""Retrying state-store operations through an outage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from pumphouse.errors import LeaseLost, StaleFencingToken, StateStoreError
from pumphouse.retrying import backoff_delay, sleep_unless

T = TypeVar("T")

log = structlog.get_logger("pumphouse.state")

#: First backoff delay, in seconds; doubled after every failure up to ``max_delay``.
INITIAL_DELAY = 0.05


async def retry_state(
    op: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event | None = None,
    max_delay: float = 5.0,
) -> T:
    """Run ``op`` until it succeeds, backing off while the state store is unreachable.

    Retries :class:`~pumphouse.errors.StateStoreError` with capped exponential backoff
    and jitter (each delay is uniformly drawn from the upper half of ``min(max_delay,
    0.05 * 2**n)``). :class:`~pumphouse.errors.StaleFencingToken` and
    :class:`~pumphouse.errors.LeaseLost` are answers, not outages: they are raised at
    once, as is any other exception. When ``stop`` is set (checked before each retry and
    while waiting) the last ``StateStoreError`` is raised. ``what`` names the operation
    in the log (``"checkpoint shard-0001"``).

    Example::

        checkpoint = await retry_state(
            lambda: store.checkpoints.get(mapping, shard), what="read checkpoint", stop=stopping
        )
    """
    if max_delay <= 0:
        raise ValueError(f"max_delay must be positive, got {max_delay!r}")
    attempt = 0
    while True:
        try:
            return await op()
        except (StaleFencingToken, LeaseLost):
            raise
        except StateStoreError as err:
            if stop is not None and stop.is_set():
                raise
            attempt += 1
            delay = backoff_delay(attempt, base=INITIAL_DELAY, cap=max_delay)
            log.info(
                "state_store_retry",
                what=what,
                attempt=attempt,
                delay=round(delay, 3),
                error=str(err),
            )
            if stop is None:
                await asyncio.sleep(delay)
                continue
            if await sleep_unless(stop, delay):
                raise err  # stop was set while we waited
