"""The service's HTTP endpoints.

=============  ==================================================================
``/metrics``   the Prometheus registry, in the text exposition format
``/healthz``   200 while the process is alive and its event loop responsive
``/readyz``    200 once every enabled mapping has started and reached its source
``/mappings``  JSON: each mapping's UUID, State, LastProcessingResult, last error
=============  ==================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pumphouse.telemetry.metrics import Metrics


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9400`` for IPv6) → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def listening_port(site: web.TCPSite, port: int) -> int:
    """The port a started site listens on: ``port``, or the one the system chose for 0."""
    if port == 0:
        server = site._server  # aiohttp keeps the asyncio server private
        if isinstance(server, asyncio.base_events.Server) and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    return port


class LoopWatchdog:
    """Ticks on the event loop; a loop that stops ticking is not healthy."""

    def __init__(self, *, interval: float = 0.5, max_lag: float = 5.0) -> None:
        self.interval = interval
        self.max_lag = max_lag
        self.last_tick = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pumphouse-loop-watchdog")

    async def _run(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            await asyncio.sleep(self.interval)

    @property
    def lag(self) -> float:
        return max(0.0, time.monotonic() - self.last_tick - self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class StatusServer:
    """Serves the endpoints above; the service supplies readiness and mapping views."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        address: str,
        mappings: Callable[[], Sequence[dict[str, Any]]],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        self.metrics = metrics
        self.host, self.port = parse_address(address)
        self._mappings = mappings
        self._ready = ready
        self.watchdog = LoopWatchdog()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/mappings", self._mappings_view)
        return app

    async def start(self) -> None:
        self.watchdog.start()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = listening_port(site, self.port)

    async def stop(self) -> None:
        await self.watchdog.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        lag = self.watchdog.lag
        healthy = lag <= self.watchdog.max_lag
        return _json({"healthy": healthy, "loopLagSeconds": round(lag, 3)}, 200 if healthy else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, reason = self._ready()
        return _json({"ready": ready, "reason": reason}, 200 if ready else 503)

    async def _mappings_view(self, _: web.Request) -> web.Response:
        return _json({"EventSourceMappings": list(self._mappings())}, 200)


def _json(body: Any, status: int) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_INDENT_2),
        status=status,
        content_type="application/json",
    )
