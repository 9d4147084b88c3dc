"""The long-lived service: builds everything from the configuration and runs it.

Lifecycle
---------
1. Check the state store answers (an unreachable store at start is one clear error).
2. Start the runtime (worker pools), the AWS clients and the HTTP endpoints.
3. Start one supervised poller per enabled mapping. A poller that fails is marked
   ``PROBLEM: <reason>`` and restarted after a capped, jittered exponential backoff;
   other mappings are never affected.
4. On SIGTERM / SIGINT: stop polling, let in-flight batches finish for up to
   ``Settings.ShutdownTimeoutSeconds``, flush checkpoints, release leases, stop the
   workers, exit 0. A second signal exits at once with status 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from pumphouse.api import ApiServer, start_api
from pumphouse.aws import AwsClients
from pumphouse.errors import PumphouseError, SourceError
from pumphouse.live import LiveMappings
from pumphouse.pollers.base import MappingContext, MappingState, MappingStatus, Poller
from pumphouse.retrying import backoff_delay, sleep_unless
from pumphouse.telemetry.http import StatusServer
from pumphouse.telemetry.metrics import MappingMetrics, Metrics, get_metrics

if TYPE_CHECKING:
    from pumphouse.config import Config, EventSourceMapping
    from pumphouse.runtime import Runtime
    from pumphouse.state import StateStore

log = structlog.get_logger("pumphouse.service")

#: Exit status when a second signal cuts shutdown short.
EXIT_INTERRUPTED = 130

PollerFactory = Callable[[MappingContext], Poller]


def poller_factory(source: str) -> PollerFactory:
    """The poller class of a source, imported on first use."""
    if source == "sqs":
        from pumphouse.pollers.sqs import SqsPoller

        return SqsPoller
    if source == "kinesis":
        from pumphouse.pollers.kinesis import KinesisPoller

        return KinesisPoller
    if source == "dynamodb":
        from pumphouse.pollers.dynamodb import DynamoDBStreamsPoller

        return DynamoDBStreamsPoller
    if source == "kafka":
        from pumphouse.pollers.kafka import KafkaPoller

        return KafkaPoller
    raise SourceError(f"unsupported event source {source!r}", retryable=False)


class Service:
    """pumphouse's main job: every enabled mapping of one configuration."""

    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics | None = None,
        replica_id: str | None = None,
        factory: Callable[[str], PollerFactory] = poller_factory,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._wall_clock = wall_clock
        self.settings = config.Settings
        self.metrics = metrics or get_metrics()
        self.replica_id = (
            replica_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self._factory = factory
        self.stopping = asyncio.Event()
        self.statuses: dict[str, MappingStatus] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._signals = 0
        self.runtime: Runtime | None = None
        self.state: StateStore | None = None
        self.aws: AwsClients | None = None
        self.http: StatusServer | None = None
        self.live: LiveMappings | None = None
        self.api: ApiServer | None = None
        self.started = asyncio.Event()

    # -- views for the HTTP endpoints ---------------------------------------------------
    def mapping_views(self) -> list[dict[str, Any]]:
        return [status.to_json() for status in self.statuses.values()]

    def readiness(self) -> tuple[bool, str]:
        if not self.started.is_set():
            return False, "starting"
        waiting = [
            s.label
            for s in self.statuses.values()
            if s.state is not MappingState.DISABLED and not s.source_reachable
        ]
        if waiting:
            return False, "not started: " + ", ".join(sorted(waiting))
        stalled = [
            f"{s.label}: {stall.reason}" for s in self.statuses.values() if (stall := s.stall())
        ]
        if stalled:  # not ready, but alive: a restart would hide the stall (docs/reliability.md)
            return False, "stalled: " + "; ".join(sorted(stalled))
        return True, "all enabled mappings started"

    # -- lifecycle ---------------------------------------------------------------------
    def request_stop(self) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting at once")
            os._exit(EXIT_INTERRUPTED)
        log.info("stopping", shutdown_timeout=self.settings.ShutdownTimeoutSeconds)
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    async def start(self) -> None:
        from pumphouse.runtime import Runtime
        from pumphouse.state import check_state_store, open_state_store

        settings = self.settings
        await check_state_store(settings.StateStore)
        self.state = open_state_store(settings.StateStore, metrics=self.metrics)
        functions = {name: fn.to_spec(name, settings) for name, fn in self.config.Functions.items()}
        runtime_kwargs: dict[str, Any] = {
            "max_concurrency": settings.max_concurrency,
            "worker_idle_seconds": settings.WorkerIdleSeconds,
            "metrics": self.metrics,
        }
        if settings.PassEnvironment is not None:
            runtime_kwargs["pass_environment"] = list(settings.PassEnvironment)
        if settings.NodeModulesPath is not None:
            runtime_kwargs["node_modules"] = [self.config.resolve_path(settings.NodeModulesPath)]
        self.runtime = Runtime(functions, **runtime_kwargs)
        await self.runtime.start()
        self.aws = AwsClients(region=settings.Region, endpoints=settings.endpoint_urls())
        self.http = StatusServer(
            metrics=self.metrics,
            address=settings.MetricsAddress,
            mappings=self.mapping_views,
            ready=self.readiness,
        )
        try:
            await self.http.start()
        except OSError as err:
            raise PumphouseError(
                f"cannot serve /metrics on {settings.MetricsAddress}: {err.strerror or err}"
            ) from err
        for source in sorted({m.source_type.value for m in self.config.EventSourceMappings}):
            with contextlib.suppress(Exception):  # a failing import is the poller's to report
                poller_factory(source)  # import the pollers (and their clients) now
        # Start-up made most of the long-lived objects (modules, config, clients): move them
        # out of the collector's generations, so that a full collection under load walks
        # only what the pollers hold (measured on the Kafka benchmark: ~100 ms of full
        # collections per 200,000 records before, ~5 ms after). Once per process: a
        # process running many services one after another (tests) freezes only once.
        if not gc.get_freeze_count():
            gc.freeze()
        function_problems = await self._check_functions()
        self.live = LiveMappings(
            config=self.config,
            store=self.state,
            metrics=self.metrics,
            statuses=self.statuses,
            start_mapping=lambda m, cfg, stop: self._start_mapping(
                m, functions, config=cfg, stopping=stop
            ),
            service_stopping=self.stopping,
            drain_timeout=settings.ShutdownTimeoutSeconds,
        )
        await self.live.start()  # the file's mappings and the API's, as stored
        for status in self.statuses.values():
            problems = function_problems.get(status.function)
            if problems and status.state is not MappingState.DISABLED:
                status.problem("; ".join(problems))
        self.api = await start_api(control=self.live, settings=settings, metrics=self.metrics)
        self.started.set()
        log.info(
            "started",
            replica=self.replica_id,
            mappings=len(self.statuses),
            metrics_address=f"{self.http.host}:{self.http.port}",
            state_store=self.state.kind,
        )

    async def _check_functions(self) -> dict[str, list[str]]:
        """The start-up check of ``pumphouse validate`` for every function an enabled
        mapping invokes: a handler that cannot load is each such mapping's problem from
        the start (its mappings still run, and fail their batches as Lambda's would)."""
        from pumphouse.config.preflight import check_functions

        assert self.runtime is not None
        names = sorted({m.function_name for m in self.config.EventSourceMappings if m.Enabled})
        found = await check_functions(self.runtime, names)
        for name, problems in found.items():
            log.error("function cannot run", function=name, problems=problems)
        return found

    def _start_mapping(
        self,
        mapping: EventSourceMapping,
        functions: dict[str, Any],
        *,
        config: Config | None = None,
        stopping: asyncio.Event | None = None,
    ) -> tuple[MappingStatus, asyncio.Task[None] | None]:
        """Start one mapping's supervised poller; ``stopping`` (default: the service's)
        stops it, ``config`` is the configuration it belongs to (the live set's)."""
        assert self.runtime is not None and self.state is not None and self.aws is not None
        function_name = mapping.function_name
        source = mapping.source_type.value
        metrics = MappingMetrics(
            self.metrics, mapping=mapping.label, function=function_name, source=source
        )
        status = MappingStatus(
            uuid=mapping.uuid,
            label=mapping.label,
            function=function_name,
            source=source,
            metrics=metrics,
        )
        status.progress.stall_after = self.settings.StallAfterSeconds
        self.statuses[mapping.uuid] = status
        if not mapping.Enabled:
            status.set_state(MappingState.DISABLED, "User action")
            return status, None
        status.set_state(MappingState.ENABLING)
        ctx = MappingContext(
            mapping=mapping,
            config=config or self.config,
            function=functions[function_name],
            runtime=self.runtime,
            state=self.state,
            aws=self.aws,
            metrics=metrics,
            status=status,
            stopping=stopping or self.stopping,
            replica_id=self.replica_id,
            shutdown_timeout=self.settings.ShutdownTimeoutSeconds,
            wall_clock=self._wall_clock,
        )
        task = asyncio.create_task(self._supervise(ctx), name=f"mapping:{mapping.label}")
        self._tasks.append(task)
        return status, task

    async def _supervise(self, ctx: MappingContext) -> None:
        """Run a mapping's poller; on failure mark PROBLEM, back off and restart."""
        bound = log.bind(mapping=ctx.mapping.label, function=ctx.status.function)
        failures = 0
        while not ctx.stopping.is_set():
            started_at = time.monotonic()
            try:
                poller = self._factory(ctx.status.source)(ctx)
                await poller.run()
                if ctx.stopping.is_set():
                    break
                raise SourceError("poller returned before shutdown")
            except asyncio.CancelledError:
                raise
            except Exception as err:
                message = (
                    str(err) if isinstance(err, PumphouseError) else f"{type(err).__name__}: {err}"
                )
                ctx.status.problem(message)
                if isinstance(err, SourceError):  # the source failed it: no progress (progress.py)
                    ctx.status.progress.read_failed(time.time())
                ctx.metrics.restarts.inc()
                if time.monotonic() - started_at > 60:
                    failures = 0  # it ran for a while: start backing off from scratch
                delay = backoff_delay(failures, base=2.0, cap=60.0, jitter=1.0)
                failures += 1
                bound.error(
                    "mapping failed; restarting",
                    error=message,
                    retry_in_seconds=round(delay, 2),
                    exc_info=not isinstance(err, PumphouseError),
                )
                await sleep_unless(ctx.stopping, delay)
        ctx.status.set_state(MappingState.DISABLED, "Service shutdown")

    async def wait_stopped(self) -> None:
        await self.stopping.wait()

    async def shutdown(self) -> None:
        """Drain mappings, then stop workers, clients and endpoints (bounded in time)."""
        self.stopping.set()
        timeout = self.settings.ShutdownTimeoutSeconds
        if self.api is not None:
            await self.api.stop()
        if self.live is not None:
            await self.live.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout + 5)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if pending:
                log.warning(
                    "mappings did not drain in time", mappings=[t.get_name() for t in pending]
                )
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if self.runtime is not None:
            runtime = self.runtime
            steps.append(("runtime", lambda: runtime.stop(timeout=min(timeout, 10.0))))
        if self.state is not None:
            steps.append(("state store", self.state.close))
        if self.aws is not None:
            steps.append(("aws clients", self.aws.close))
        if self.http is not None:
            steps.append(("http", self.http.stop))
        for what, step in steps:
            try:
                await step()
            except Exception as err:
                log.warning("shutdown step failed", step=what, error=str(err))
        log.info("stopped")

    async def run(self) -> int:
        """Start, run until a signal, shut down. Returns the exit status."""
        self.install_signal_handlers()
        try:
            await self.start()
            await self.wait_stopped()
        finally:
            await self.shutdown()
        return 0


