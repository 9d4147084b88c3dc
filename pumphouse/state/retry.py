"""Retrying state-store operations through an outage."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from pumphouse.errors import LeaseLost, StaleFencingToken, StateStoreError

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
            ceiling = min(max_delay, INITIAL_DELAY * 2 ** min(attempt, 32))
            delay = random.uniform(ceiling / 2, ceiling)
            attempt += 1
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
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                continue
            raise err  # stop was set while we waited
