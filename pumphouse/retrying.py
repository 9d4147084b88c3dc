"""Waiting between attempts: the one backoff formula and the one interruptible sleep.

Every retry loop in pumphouse (a mapping restarted by the service, a failed receive,
``GetRecords`` or ``DeleteMessageBatch``, an unreachable state store or on-failure
destination, a batch retried by the error policy) waits :func:`backoff_delay` seconds,
and waits with :func:`sleep_unless`, so that shutting down never waits out a delay.

:func:`backoff_delay` is capped exponential backoff with jitter: attempt ``n`` (1, 2,
...) has the ceiling ``min(cap, base * 2**(n - 1))`` and waits a uniformly drawn part of
its top ``jitter`` share. With ``base`` 0.2, ``cap`` 10 and the default ``jitter`` 0.5::

    attempt   1          2          3          4          ...  7 and later
    delay     0.1-0.2    0.2-0.4    0.4-0.8    0.8-1.6         5-10

``jitter`` 1 is "full jitter" (anywhere from 0 to the ceiling), 0 none (the error policy's
retries, which tests replay exactly).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.5,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before attempt number ``attempt`` + 1 (see the module docstring);
    0 for ``attempt`` < 1."""
    if attempt < 1:
        return 0.0
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be between 0 and 1, not {jitter}")
    ceiling = float(min(cap, base * 2 ** min(attempt - 1, 62)))
    return ceiling * (1.0 - jitter) + ceiling * jitter * rand()


async def sleep_unless(event: asyncio.Event, delay: float) -> bool:
    """Sleep ``delay`` seconds, or less if ``event`` is set; True when ``event`` is set."""
    if event.is_set():
        return True
    if delay <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=delay)
    return event.is_set()


__all__ = ["backoff_delay", "sleep_unless"]
