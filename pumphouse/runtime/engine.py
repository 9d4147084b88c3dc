"""The execution layer's front: :class:`Runtime`.

Sources drive it and know nothing of processes; it knows nothing of sources. One
:class:`~pumphouse.runtime.pool.WorkerPool` per function, one
:class:`~pumphouse.runtime.slots.SlotScheduler` for the concurrency limits, one
:class:`~pumphouse.runtime.process.MemoryWatchdog`, and a reaper task retiring idle
workers.

Typical use by a poller::

    caller = runtime.caller(mapping.label, function=mapping.function, limit=5)
    ...
    async with caller.slot() as slot:          # back-pressure: waits for capacity
        result = await runtime.invoke(mapping.function, event, slot=slot)

Shutdown (:meth:`Runtime.stop`): from the moment it is called, :meth:`Runtime.invoke`
returns a ``service_error`` result (``Pumphouse.RuntimeStopped``, ``function_ran`` is
False, so a stream does not count it as a retry) instead of raising, and waiting or new
slot acquisitions (``caller.slot()``) raise :class:`RuntimeStopped`. Invocations
already running may finish within the timeout; then workers get SIGTERM, then SIGKILL,
and ``stop`` returns when every worker process is gone. An invocation still running
when its worker is stopped also ends as ``service_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import structlog

from pumphouse.errors import PumphouseError
from pumphouse.runtime.environment import DEFAULT_PASS_ENVIRONMENT, import_roots
from pumphouse.runtime.launch import check_launches
from pumphouse.runtime.pool import WorkerPool
from pumphouse.runtime.process import FunctionLogLine, InitReport, LogSink, MemoryWatchdog
from pumphouse.runtime.protocol import MAX_REQUEST_BYTES
from pumphouse.runtime.result import InvocationResult, service_error
from pumphouse.runtime.slots import CallerSlots, RuntimeStopped, Slot, SlotScheduler
from pumphouse.runtime.spec import FunctionSpec
from pumphouse.telemetry.metrics import Metrics, get_metrics

log = structlog.get_logger(__name__)
_function_log = structlog.get_logger("pumphouse.function")


_LAMBDA_LEVELS = (
    ("[ERROR]", "error"),
    ("[CRITICAL]", "critical"),
    ("[WARNING]", "warning"),
    ("[WARN]", "warning"),
    ("[DEBUG]", "debug"),
)
"""Level prefixes of Lambda's log lines (the runtime's ``[ERROR]`` line for a failed
init or invocation, and the root handler's ``[LEVEL]\\ttimestamp\\t...`` lines)."""


def function_log_level(message: str) -> str:
    """The log level of a line the function wrote: its Lambda ``[LEVEL]`` prefix, else
    info (``print`` output)."""
    if message.startswith("["):
        for prefix, level in _LAMBDA_LEVELS:
            if message.startswith(prefix):
                return level
    return "info"


def structlog_sink(line: FunctionLogLine) -> None:
    """The default log sink: one structlog event per line the function wrote, at the
    level its Lambda prefix names (``[ERROR] Runtime.ImportModuleError: ...`` at error)."""
    getattr(_function_log, function_log_level(line.message))(
        line.message,
        function=line.function,
        request_id=line.request_id,
        stream=line.stream,
        pid=line.pid,
    )


def request_ids() -> Iterator[str]:
    """Request ids in UUIDv4 form, cheap to make: 76 random bits fixed per runtime and a
    48-bit counter starting at a random value. Unique within a runtime; across runtimes
    as unlikely to collide as random UUIDs."""
    r = secrets.token_hex(10)
    prefix = f"{r[:8]}-{r[8:12]}-4{r[12:15]}-{'89ab'[int(r[15], 16) % 4]}{r[16:19]}-"
    return (f"{prefix}{n & 0xFFFFFFFFFFFF:012x}" for n in itertools.count(secrets.randbits(48)))


class UnknownFunction(PumphouseError, LookupError):
    """No function of that name is configured."""


class Runtime:
    """Runs invocations of the configured functions in warm worker processes."""

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        *,
        max_concurrency: int | None = None,
        worker_idle_seconds: float = 300.0,
        pass_environment: Sequence[str] = DEFAULT_PASS_ENVIRONMENT,
        metrics: Metrics | None = None,
        log_sink: LogSink | None = None,
        node_modules: Sequence[str | Path] = (),
    ) -> None:
        """
        :param functions: the functions, by name (each spec's ``name`` must match).
        :param max_concurrency: most invocations running at once; default 4 x CPUs.
        :param worker_idle_seconds: a worker unused this long is stopped (provisioned
            workers excepted).
        :param pass_environment: variables of this process passed to workers (a
            trailing ``*`` matches a prefix); see :mod:`pumphouse.runtime.environment`.
        :param metrics: the registry to report to; default :func:`get_metrics`.
        :param log_sink: receives every line functions write; default: structlog
            events from the ``pumphouse.function`` logger.
        :param node_modules: ``node_modules`` directories searched for AWS's Node.js
            runtime interface client after each Node function's own.

        Raises :class:`~pumphouse.errors.ConfigError` when a function's process cannot
        be started as configured (see :mod:`pumphouse.runtime.launch`).
        """
        for name, spec in functions.items():
            if spec.name != name:
                raise ValueError(f"function {name!r} has a spec named {spec.name!r}")
        if worker_idle_seconds <= 0:
            raise ValueError("worker_idle_seconds must be positive")
        self._specs = dict(functions)
        self.max_concurrency = (
            max_concurrency if max_concurrency is not None else 4 * (os.cpu_count() or 1)
        )
        self.worker_idle_seconds = worker_idle_seconds
        self.metrics = metrics if metrics is not None else get_metrics()
        self._slots = SlotScheduler(
            max_concurrency=self.max_concurrency,
            reserved={n: s.reserved_concurrency for n, s in self._specs.items()},
            metrics=self.metrics,
        )
        launches = check_launches(self._specs, node_modules=[Path(p) for p in node_modules])
        self._watchdog = MemoryWatchdog()
        roots = import_roots()
        sink = log_sink if log_sink is not None else structlog_sink
        self._pools = {
            name: WorkerPool(
                spec,
                pass_environment=pass_environment,
                extra_pythonpath=roots,
                idle_seconds=worker_idle_seconds,
                log_sink=sink,
                watchdog=self._watchdog,
                metrics=self.metrics,
                launch=launches[name],
            )
            for name, spec in self._specs.items()
        }
        self._request_ids = request_ids()
        self._in_flight = 0
        self._drained: asyncio.Future[None] | None = None  # only while stop() waits
        self._stopping = False
        self._stopped = False
        self._reaper: asyncio.Task[None] | None = None

    # -- configuration -------------------------------------------------------------

    @property
    def functions(self) -> Mapping[str, FunctionSpec]:
        return self._specs

    @property
    def stopping(self) -> bool:
        return self._stopping

    def caller(self, name: str, *, function: str, limit: int | None = None) -> CallerSlots:
        """The slots of one caller (a mapping; ``name`` is its label) of ``function``.
        Calling it again with the same name returns the same caller, ``limit`` applied."""
        self._pool(function)
        return self._slots.caller(name, function=function, limit=limit)

    def worker_pids(self, function: str | None = None) -> list[int]:
        """PIDs of the live worker processes (of one function, or all)."""
        pools = [self._pool(function)] if function is not None else self._pools.values()
        return sorted(pid for pool in pools for pid in pool.pids)

    def reset(self, function: str) -> None:
        """Forget ``function``'s cached init failure and retire its idle workers: the
        next invocation loads its code afresh (after the code was fixed)."""
        self._pool(function).reset()

    def init_timeout(self, function: str) -> float:
        """Seconds ``function``'s init phase may take."""
        return self._pool(function).init_timeout

    async def check_init(self, function: str) -> InitReport:
        """Run ``function``'s init phase once in a short-lived worker (see
        :meth:`WorkerPool.check_init`); :mod:`pumphouse.runtime.preflight` reads it."""
        return await self._pool(function).check_init()

    def _pool(self, function: str) -> WorkerPool:
        try:
            return self._pools[function]
        except KeyError:
            raise UnknownFunction(f"unknown function {function!r}") from None

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start the provisioned workers (and wait for their init) and the reaper.
        Invoking without ``start`` works too: workers are then all started on demand."""
        self._ensure_reaper()
        await asyncio.gather(*(pool.start_provisioned() for pool in self._pools.values()))

    async def stop(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - the API's contract
        """Stop accepting invocations, let running ones finish for up to ``timeout``
        seconds, then stop every worker (SIGTERM, then SIGKILL). Idempotent."""
        if self._stopped:
            return
        self._stopping = True
        self._slots.close()
        if self._in_flight:
            log.info("waiting for invocations in flight", count=self._in_flight,
                     timeout=timeout)
            try:
                self._drained = asyncio.get_running_loop().create_future()
                await asyncio.wait_for(asyncio.shield(self._drained), timeout)
            except TimeoutError:
                log.warning("abandoning invocations still running", count=self._in_flight)
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*(pool.close() for pool in self._pools.values()))
        self._watchdog.close()
        self._stopped = True

    def _ensure_reaper(self) -> None:
        if self._reaper is None and not self._stopping:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        interval = max(0.05, min(self.worker_idle_seconds / 2, 30.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for pool in self._pools.values():
                pool.retire_idle(now)

    # -- invoking ------------------------------------------------------------------

    async def invoke(
        self,
        function: str,
        event: Any,
        *,
        caller: CallerSlots | None = None,
        slot: Slot | None = None,
    ) -> InvocationResult:
        """Invoke ``function`` with ``event`` and wait for the result.

        ``event`` is any JSON-serializable value, or ``bytes`` already holding its JSON
        (a batcher that measured the payload need not serialize it twice). With
        ``slot`` (acquired by the caller, which also releases it) the invocation runs
        under it; otherwise a slot is acquired from ``caller`` — or, without a caller,
        under the function and global limits only — and released afterwards.

        Never raises for what happens to the invocation; see :class:`InvocationResult`.
        Raises :class:`UnknownFunction` and ``ValueError`` for a slot or caller of
        another function.
        """
        pool = self._pool(function)
        request_id = next(self._request_ids)
        memory = pool.spec.memory_size
        if self._stopping:
            return pool.report(service_error(
                request_id, "Pumphouse.RuntimeStopped", "the runtime is stopping",
                memory_size_mb=memory,
            ))
        started = time.perf_counter()
        try:
            body = _request_body(event)
        except TypeError as err:
            return pool.report(service_error(
                request_id, "InvalidRequestContentException",
                f"Could not serialize the event: {err}", memory_size_mb=memory,
            ))
        serialize_ms = (time.perf_counter() - started) * 1000.0
        if len(body) > MAX_REQUEST_BYTES:
            return pool.report(service_error(
                request_id,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the "
                f"InvokeFunction operation (was {len(body)} bytes)",
                memory_size_mb=memory,
            ))
        if slot is not None and (slot.function != function or slot.released):
            raise ValueError(f"{slot!r} cannot run an invocation of {function!r}")
        if caller is not None and caller.function != function:
            raise ValueError(f"caller {caller.name!r} is a caller of {caller.function!r}")
        self._ensure_reaper()
        self._in_flight += 1
        try:
            if slot is not None:
                return await pool.invoke(request_id, body, serialize_ms=serialize_ms)
            slots = caller if caller is not None else self._slots.direct(function)
            try:
                held = slots.try_slot() or await slots.acquire()
            except RuntimeStopped:
                return pool.report(service_error(
                    request_id, "Pumphouse.RuntimeStopped", "the runtime is stopping",
                    memory_size_mb=memory,
                ))
            try:
                return await pool.invoke(request_id, body, serialize_ms=serialize_ms)
            finally:
                held.release()
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._drained is not None and not self._drained.done():
                self._drained.set_result(None)


def _request_body(event: Any) -> bytes:
    """The invocation's JSON payload: ``bytes`` are already serialized, anything else is
    serialized here (``TypeError`` when it is not JSON-serializable)."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, bytearray | memoryview):
        return bytes(event)
    return orjson.dumps(event)
