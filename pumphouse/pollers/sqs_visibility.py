"""Keeping received SQS messages hidden while their batch runs.

Visibility heartbeat
--------------------
Each receive passes ``VisibilityTimeout`` explicitly (the queue's value, refreshed by
the sampler), so pumphouse knows when each message would reappear. Messages received
together form a :class:`Hold`; the keeper wakes every ``VT/4`` (0.05 ... 5 s) and, for
every hold within ``VT/2`` of reappearing, calls ``ChangeMessageVisibilityBatch`` to
hide its unfinished messages for another ``VT``. A message leaves its hold when it is
deleted or given up, so a batch that waits in a long window, waits for a slot, or runs
for its whole timeout never reappears mid-flight. Example, VT = 4 s, receive at t=0::

    t=0   received, visible again at t=4
    t=2   keeper (ticks every 1 s): 2 s left <= 2 s margin -> extend, visible at t=6
    t=4   extend again -> t=8;   t=5.1 batch done, deleted: leaves the keeper
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from pumphouse.retrying import sleep_unless


def heartbeat_timing(visibility_timeout: float) -> tuple[float, float]:
    """``(tick, margin)`` of the visibility keeper for a visibility timeout (seconds).

    The keeper wakes every ``tick`` and extends any hold with ``margin`` or less left, so
    that at least one more tick (and the call itself) fits before the message would
    reappear: ``margin = VT/2 >= 2 x tick``.
    """
    vt = max(float(visibility_timeout), 0.2)
    tick = min(max(vt / 4.0, 0.05), 5.0)
    margin = max(vt / 2.0, 2.0 * tick)
    return tick, margin


class Hold:
    """Messages received together whose visibility pumphouse keeps extending.

    ``handles`` shrinks as messages are finished (deleted, or left to reappear); the
    keeper drops a hold once it is empty.
    """

    __slots__ = ("handles", "visible_at")

    def __init__(self, handles: Iterable[str], visible_at: float) -> None:
        self.handles: set[str] = set(handles)
        self.visible_at = visible_at


class VisibilityKeeper:
    """Extends the visibility of every message received and not yet finished."""

    def __init__(
        self,
        *,
        change_visibility: Callable[[list[str], int], Awaitable[list[str]]],
        visibility_timeout: Callable[[], int],
        on_extended: Callable[[int], None],
    ) -> None:
        self._change = change_visibility
        self._visibility_timeout = visibility_timeout
        self._on_extended = on_extended
        self.holds: set[Hold] = set()

    def track(self, hold: Hold) -> None:
        self.holds.add(hold)

    def due(self, now: float) -> list[Hold]:
        """Holds to extend now; empty holds are dropped."""
        _, margin = heartbeat_timing(self._visibility_timeout())
        due: list[Hold] = []
        for hold in list(self.holds):
            if not hold.handles:
                self.holds.discard(hold)
            elif hold.visible_at - now <= margin:
                due.append(hold)
        return due

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            tick, _ = heartbeat_timing(self._visibility_timeout())
            await sleep_unless(stop, tick)
            await self.extend_due()

    async def extend_due(self) -> None:
        for hold in self.due(time.monotonic()):
            timeout = self._visibility_timeout()
            started = time.monotonic()
            handles = list(hold.handles)
            kept: list[str] = await self._change(handles, timeout)
            # Handles that could not be extended are no longer ours: stop trying.
            for handle in set(handles) - set(kept):
                hold.handles.discard(handle)
            if kept:
                hold.visible_at = started + timeout
                self._on_extended(len(kept))
