"""Concurrency slots: the right to run one invocation.

An invocation runs only while it holds a slot, and a slot is granted only when every
level it belongs to has room:

* **caller** — one per mapping (:meth:`Runtime.caller`), with the limit its poller sets
  and changes as it runs: ``ScalingConfig.MaximumConcurrency`` for SQS, shards x
  ``ParallelizationFactor`` for streams, assigned partitions for Kafka;
* **function** — ``ReservedConcurrentExecutions``. As in Lambda, a reservation is both a
  ceiling for the function and capacity no other function may take: functions without
  a reservation share the **unreserved** pool, ``MaxConcurrency`` minus every
  reservation;
* **global** — ``Settings.MaxConcurrency``.

Waiting is first come, first served: one FIFO queue of waiters for the whole runtime.
Whenever capacity may have appeared (a release, a raised limit, a new waiter) the queue
is walked in order and each waiter is granted if all its levels have room. A waiter
that is blocked by a *shared* level (function, unreserved pool, global) blocks that
level for everyone behind it, so a later arrival cannot overtake it there; a waiter
blocked only by its *own* caller's limit blocks nobody else. Time spent waiting is
back-pressure, exported as throttling (``pumphouse_throttles_total``,
``pumphouse_throttled_seconds_total``); slots held and limits are gauges per scope.

Worked example: ``MaxConcurrency: 10``; function ``F`` reserves 4, so ``G`` and ``H``
share an unreserved pool of 6. Caller ``a`` (F, limit 3), ``b`` (F, limit 2), ``c``
(G, limit 5), ``d`` (H, no limit of its own).

1. ``a`` holds 3 and ``b`` holds 1: F is at 4/4. ``b`` asks again: F is full, so ``b``
   waits, first in line for F. ``a`` asks too: its own limit (3/3) stops it; it waits
   behind ``b`` without blocking anyone.
2. ``c`` takes 5 (unreserved 5/6, global 9/10) and asks for a sixth: its own limit
   stops it. ``d`` asks: unreserved and global each have one slot left, so ``d`` gets
   it at once (unreserved 6/6, global 10/10) although ``c`` arrived earlier, because
   ``c`` waits on its own limit only.
3. ``a`` releases one: F is 3/4, global 9/10. Walking the queue: ``b``'s waiter comes
   first (F has room, ``b`` is 1/2) and is granted (F 4/4, global 10/10); ``a``'s
   waiter, under its own limit now, finds F full again and keeps waiting. The slot
   ``a`` gave back went to ``b``, queued for F before it: first come, first served
   between callers sharing a function.
4. ``d`` asks again: unreserved is 6/6, so ``d`` waits and blocks the unreserved pool;
   if ``c`` then raised its limit, ``c`` could not overtake ``d`` for the next
   unreserved slot.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from pumphouse.errors import PumphouseError
from pumphouse.telemetry.metrics import Metrics

DIRECT_CALLER = "direct"
"""Caller name used for invocations made without a caller (``pumphouse invoke``, tests)."""


class RuntimeStopped(PumphouseError):
    """The runtime is stopping or stopped: no slot will be granted any more."""


class _Scope:
    """One level of limits: the slots held and the most allowed (None: no limit).

    The in-use gauge reads ``in_use`` when scraped, so taking and giving back a slot
    costs no metric update."""

    __slots__ = ("_limit_gauge", "in_use", "kind", "limit", "name")

    def __init__(self, kind: str, name: str, limit: int | None, metrics: Metrics | None) -> None:
        self.kind = kind
        self.name = name
        self.limit = limit
        self.in_use = 0
        self._limit_gauge: Any = None
        if metrics is not None:
            self._limit_gauge = metrics.slots_limit.labels(scope=kind, name=name)
            metrics.slots_in_use.labels(scope=kind, name=name).set_function(self._held)

    def _held(self) -> float:
        return float(self.in_use)

    def has_room(self) -> bool:
        return self.limit is None or self.in_use < self.limit

    def export_limit(self, effective: int | None) -> None:
        if self._limit_gauge is not None and effective is not None:
            self._limit_gauge.set(effective)


class Slot:
    """The right to run one invocation of :attr:`function`. Release it exactly once
    (:meth:`release` is idempotent); ``async with caller.slot()`` does it for you."""

    __slots__ = ("_caller", "acquired_at", "released")

    def __init__(self, caller: CallerSlots) -> None:
        self._caller = caller
        self.acquired_at = time.monotonic()
        self.released = False

    @property
    def function(self) -> str:
        return self._caller.function

    @property
    def caller(self) -> CallerSlots:
        return self._caller

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._caller._scheduler._release(self._caller)

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Slot {self._caller.name}/{self.function} {state}>"


class _Waiter:
    __slots__ = ("caller", "enqueued_at", "future")

    def __init__(self, caller: CallerSlots, future: asyncio.Future[Slot]) -> None:
        self.caller = caller
        self.future = future
        self.enqueued_at = time.monotonic()


class _SlotContext:
    __slots__ = ("_caller", "_slot")

    def __init__(self, caller: CallerSlots) -> None:
        self._caller = caller
        self._slot: Slot | None = None

    async def __aenter__(self) -> Slot:
        self._slot = await self._caller.acquire()
        return self._slot

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._slot is not None:
            self._slot.release()


class CallerSlots:
    """The slots of one caller (a mapping) of one function."""

    def __init__(
        self,
        scheduler: SlotScheduler,
        *,
        name: str,
        function: str,
        limit: int | None,
        scopes: tuple[_Scope, ...],
        metrics: Metrics | None,
        export: bool = True,
    ) -> None:
        self._scheduler = scheduler
        self.name = name
        self.function = function
        self._own = _Scope("caller", name, limit, metrics if export else None)
        self._scopes = (self._own, *scopes)
        self._throttles: Any = None
        self._throttled_seconds: Any = None
        if metrics is not None:
            self._throttles = metrics.throttles.labels(function=function, caller=name)
            self._throttled_seconds = metrics.throttled_seconds.labels(
                function=function, caller=name
            )

    @property
    def limit(self) -> int | None:
        return self._own.limit

    @property
    def in_use(self) -> int:
        return self._own.in_use

    @property
    def waiting(self) -> int:
        """Acquisitions of this caller waiting for a slot now."""
        return sum(
            1 for w in self._scheduler._waiters if w.caller is self and not w.future.done()
        )

    def set_limit(self, limit: int | None) -> None:
        """Change the caller's limit. Slots already held above a lowered limit stay held;
        new ones wait until the caller is under it."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, not {limit}")
        self._own.limit = limit
        self._scheduler._export_limits()
        self._scheduler._dispatch()

    def slot(self) -> _SlotContext:
        """``async with caller.slot() as slot:`` — wait for a slot, release it after."""
        return _SlotContext(self)

    def try_slot(self) -> Slot | None:
        """A slot if one is free now and nobody is waiting ahead, else None."""
        return self._scheduler._try_acquire(self)

    async def acquire(self) -> Slot:
        """Wait for a slot (first come, first served). Raises :class:`RuntimeStopped`."""
        return await self._scheduler._acquire(self)

    def __repr__(self) -> str:
        return (
            f"<CallerSlots {self.name} function={self.function} "
            f"in_use={self.in_use} limit={self.limit}>"
        )


class SlotScheduler:
    """Grants slots against the caller, function, unreserved and global limits."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        reserved: Mapping[str, int | None],
        metrics: Metrics | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, not {max_concurrency}")
        self._metrics = metrics
        self._global = _Scope("global", "global", max_concurrency, metrics)
        total_reserved = sum(r for r in reserved.values() if r is not None)
        # Lambda keeps reservations out of the shared pool. If they add up to the whole
        # global limit or more, that guarantee cannot be given: unreserved functions
        # then share the global limit only.
        unreserved_limit = (
            max_concurrency - total_reserved if total_reserved < max_concurrency else None
        )
        self._unreserved = _Scope("unreserved", "unreserved", unreserved_limit, metrics)
        self._functions: dict[str, tuple[_Scope, ...]] = {}
        for function, limit in reserved.items():
            scope = _Scope("function", function, limit, metrics)
            if limit is None:
                self._functions[function] = (scope, self._unreserved, self._global)
            else:
                self._functions[function] = (scope, self._global)
        self._callers: dict[str, CallerSlots] = {}
        self._direct: dict[str, CallerSlots] = {}
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._export_limits()

    @property
    def max_concurrency(self) -> int:
        assert self._global.limit is not None
        return self._global.limit

    @property
    def in_use(self) -> int:
        return self._global.in_use

    @property
    def closed(self) -> bool:
        return self._closed

    def caller(self, name: str, *, function: str, limit: int | None = None) -> CallerSlots:
        """The caller named ``name`` (created on first use; later calls with the same
        name return it with ``limit`` applied)."""
        existing = self._callers.get(name)
        if existing is not None:
            if existing.function != function:
                raise ValueError(
                    f"caller {name!r} already exists for function {existing.function!r}"
                )
            existing.set_limit(limit)
            return existing
        caller = CallerSlots(
            self,
            name=name,
            function=function,
            limit=limit,
            scopes=self._function_scopes(function),
            metrics=self._metrics,
        )
        self._callers[name] = caller
        self._export_limits()
        return caller

    def direct(self, function: str) -> CallerSlots:
        """The implicit caller of ``function`` for invocations made without one."""
        caller = self._direct.get(function)
        if caller is None:
            caller = CallerSlots(
                self,
                name=DIRECT_CALLER,
                function=function,
                limit=None,
                scopes=self._function_scopes(function),
                metrics=self._metrics,
                export=False,
            )
            self._direct[function] = caller
        return caller

    def close(self) -> None:
        """Refuse every waiting and future acquisition with :class:`RuntimeStopped`."""
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(RuntimeStopped("the runtime is stopping"))

    # -- internals -----------------------------------------------------------------

    def _function_scopes(self, function: str) -> tuple[_Scope, ...]:
        try:
            return self._functions[function]
        except KeyError:
            raise LookupError(f"unknown function {function!r}") from None

    def _try_acquire(self, caller: CallerSlots) -> Slot | None:
        if self._closed:
            raise RuntimeStopped("the runtime is stopping")
        if self._waiters:
            self._prune()
        if self._waiters:
            return None
        scopes = caller._scopes
        for scope in scopes:
            if scope.limit is not None and scope.in_use >= scope.limit:
                return None
        for scope in scopes:
            scope.in_use += 1
        return Slot(caller)

    async def _acquire(self, caller: CallerSlots) -> Slot:
        slot = self._try_acquire(caller)
        if slot is not None:
            return slot
        future: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(caller, future)
        self._waiters.append(waiter)
        self._dispatch()
        if future.done():  # granted without waiting: nobody ahead needed that capacity
            return future.result()
        try:
            slot = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().release()  # granted just as we were cancelled
            else:
                self._dispatch()  # drop the cancelled waiter, let others move up
            raise
        if caller._throttles is not None:
            caller._throttles.inc()
            caller._throttled_seconds.inc(time.monotonic() - waiter.enqueued_at)
        return slot

    def _release(self, caller: CallerSlots) -> None:
        for scope in caller._scopes:
            scope.in_use -= 1
        if self._waiters:
            self._dispatch()

    def _prune(self) -> None:
        while self._waiters and self._waiters[0].future.done():
            self._waiters.popleft()

    def _dispatch(self) -> None:
        """Grant waiters in FIFO order, keeping shared levels blocked behind the first
        waiter they stopped."""
        if not self._waiters:
            return
        blocked: set[int] = set()
        remaining: deque[_Waiter] = deque()
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.future.done():
                continue
            caller = waiter.caller
            scopes = caller._scopes
            grant = True
            for scope in scopes:
                if id(scope) in blocked or not scope.has_room():
                    grant = False
                    if scope is not caller._own:
                        blocked.add(id(scope))
                    break
            if not grant:
                remaining.append(waiter)
                if id(self._global) in blocked:
                    remaining.extend(waiters)
                    waiters.clear()
                continue
            for scope in scopes:
                scope.in_use += 1
            waiter.future.set_result(Slot(caller))
        self._waiters = remaining

    def _export_limits(self) -> None:
        global_limit = self._global.limit
        self._global.export_limit(global_limit)
        pool = self._unreserved.limit if self._unreserved.limit is not None else global_limit
        self._unreserved.export_limit(pool)
        effective: dict[str, int | None] = {}
        for function, scopes in self._functions.items():
            own = scopes[0]
            effective[function] = own.limit if own.limit is not None else pool
            own.export_limit(effective[function])
        for caller in self._callers.values():
            parent = effective.get(caller.function)
            limit = caller.limit
            caller._own.export_limit(
                limit if parent is None or (limit is not None and limit < parent) else parent
            )
