"""What every chaos case shares (no tests here): a TCP proxy that can cut a server off,
the ledger that proves nothing was lost, and a watcher that records what the service
said about itself while the fault lasted.

A case runs traffic through real servers, injects one fault, and asserts:

* **0 lost**: every record produced was processed by the function or described on the
  on-failure destination (``Ledger.lost``);
* **duplicates bounded**: records delivered more than once are at most one in-flight
  batch per shard or partition (``Ledger.duplicates``);
* **the truth was told**: during the fault ``/mappings`` and the stalled gauge said so
  (``Watch``), and after it they recovered.

Each case appends its figures to ``CHAOS_FIGURES`` (a JSON-lines file, when set), which
is how ``docs/reliability.md``'s table was filled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pumphouse.devstack import TansuBroker, free_port
from pumphouse.service import Service

LOOPBACK = "127.0.0.1"


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to a target server; :meth:`cut` makes the target
    unreachable (open connections reset, new ones refused) until :meth:`restore`. With
    ``blackhole=True`` the target goes silent instead: connections stay open and new
    ones are accepted, but no byte moves either way (a network that drops packets)."""

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._blackhole = False

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(
            self._accept, LOOPBACK, self.port, reuse_address=True
        )
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blackhole:  # hold the connection: read and drop, answer nothing
            self._writers.add(writer)
            await self._pipe(reader, None)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if writer is None or self._blackhole:
                    continue  # dropped on the floor
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer is not None:
                self._writers.discard(writer)
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()

    async def cut(self, *, blackhole: bool = False) -> None:
        """The target becomes unreachable: connections reset, new ones refused; or, with
        ``blackhole``, silent: every connection open, nothing answered."""
        if blackhole:
            self._blackhole = True
            return
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._reset_all()

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(OSError, RuntimeError):
                transport = writer.transport
                transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        if self._blackhole:
            # What was dropped broke every stream that was open: reset them all.
            self._blackhole = False
            self._reset_all()
            return
        await self.start()

    async def stop(self) -> None:
        self._blackhole = False
        await self.cut()


@dataclass
class Ledger:
    """Records produced, and every delivery (by record id)."""

    produced: list[str] = field(default_factory=list)
    """Ids in production order."""

    def lost(self, delivered: Iterable[str], *, to_destination: Iterable[str] = ()) -> list[str]:
        seen = set(delivered) | set(to_destination)
        return [r for r in self.produced if r not in seen]

    @staticmethod
    def duplicates(delivered: Iterable[str]) -> int:
        """Deliveries beyond the first of each record."""
        return sum(n - 1 for n in Counter(delivered).values() if n > 1)


@dataclass
class Observation:
    at: float
    stalled: bool
    result: str
    ready: bool
    reason: str
    shards_owned: float | None


class Watch:
    """Samples a service's own view of a mapping every ``interval`` seconds."""

    def __init__(self, service: Service, *, interval: float = 0.25) -> None:
        self.service = service
        self.interval = interval
        self.seen: list[Observation] = []
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> Observation:
        view = self.service.mapping_views()[0]
        ready, reason = self.service.readiness()
        labels = {
            "mapping": view["Label"],
            "function": view["FunctionName"],
            "source": view["Source"],
        }
        registry = self.service.metrics.registry
        stalled = registry.get_sample_value("pumphouse_mapping_stalled", labels)
        return Observation(
            at=time.monotonic(),
            stalled=bool(stalled),
            result=view["LastProcessingResult"],
            ready=ready,
            reason=reason,
            shards_owned=registry.get_sample_value("pumphouse_shards_owned", labels),
        )

    async def _run(self) -> None:
        while True:
            self.seen.append(self.sample())
            await asyncio.sleep(self.interval)

    def start(self) -> Watch:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        """Stop sampling, after one last sample (what the service says now)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.seen.append(self.sample())

    def between(self, start: float, end: float) -> list[Observation]:
        return [o for o in self.seen if start <= o.at <= end]

    def first(self, predicate: Callable[[Observation], bool], *, after: float) -> Observation:
        for observation in self.seen:
            if observation.at >= after and predicate(observation):
                return observation
        raise AssertionError("never observed")


def record_figures(case: str, **figures: Any) -> None:
    """Append a case's figures to ``$CHAOS_FIGURES`` (JSON lines), when set."""
    path = os.environ.get("CHAOS_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"case": case, **figures}) + "\n")


@dataclass
class ProxiedTansu(TansuBroker):
    """tansu that advertises a proxy's port: every client connection goes through it."""

    advertised_port: int = 0

    def command(self) -> list[str]:
        args = super().command()
        at = args.index("--advertised-listener-url")
        args[at + 1] = f"tcp://{LOOPBACK}:{self.advertised_port}"
        return args
