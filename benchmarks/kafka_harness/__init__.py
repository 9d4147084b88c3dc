"""What the Kafka benchmarks share: one consumer configuration for both sides, the
pumphouse service with event hooks instead of polling, child processes, producers.

Fairness rules every Kafka benchmark follows:

* **Same consumer settings.** The raw aiokafka consumer gets exactly the options
  pumphouse's poller gives aiokafka (:func:`raw_consumer_options` builds them from the
  same :class:`~pumphouse.config.settings_options.KafkaConsumerSettings`): group
  timeouts, fetch sizes, ``fetch_max_wait_ms``. On tansu the fetch wait sets the
  latency (and moved a raw consumer's drain rate by 4-8 % between 100 and 500 ms), so
  the two sides must share it.
* **Same events.** Both sides stamp the same moments with ``time.perf_counter`` in
  their own process, when they happen, not when a watcher next looks: the first
  ``getmany`` that returned records (pumphouse: the first increment of its polled
  counter, which its fetch loop makes right after that ``getmany``), and the
  ``OffsetCommit`` that covered the last record (pumphouse: the committed counter,
  incremented when the commit returned). Hooks wrap the metric objects' ``inc``: the
  service runs no extra task while it is measured.
* **Imports outside the clock.** Each child imports its code before the clock starts;
  each side's clock starts just before its consumer is created.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PARTITIONS = 4
VALUE_BYTES = 200
HANDLERS = Path(__file__).resolve().parent.parent.parent / "tests" / "handlers" / "kafka"
GROUP_TIMEOUTS = {"SessionTimeoutMs": 2000, "RebalanceTimeoutMs": 2000, "HeartbeatIntervalMs": 300}
POLL_TIMEOUT_MS = 200
"""The ``getmany`` timeout of the raw loops: pumphouse's (``POLL_TIMEOUT_MS`` of its poller)."""
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def quantiles(values: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 of ``values``."""
    cut = statistics.quantiles(sorted(values), n=100)
    return cut[49], cut[98]


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """``median (min-max)`` of ``values``."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{fmt.format(mid)} ({fmt.format(low)}-{fmt.format(high)})"


def consumer_settings(
    fetch_max_wait_ms: int | None = None, *, timeouts: dict[str, int] | None = None
) -> Any:
    """The Kafka consumer settings both sides use: pumphouse's defaults with the short
    group timeouts tansu needs (or ``timeouts``), and ``fetch_max_wait_ms`` when given."""
    from pumphouse.config.settings_options import KafkaConsumerSettings

    data: dict[str, Any] = dict(GROUP_TIMEOUTS if timeouts is None else timeouts)
    if fetch_max_wait_ms is not None:
        data["FetchMaxWaitMs"] = fetch_max_wait_ms
    return KafkaConsumerSettings.model_validate(data)


def raw_consumer_options(bootstrap: str, settings: Any) -> dict[str, Any]:
    """``AIOKafkaConsumer`` options equal to those pumphouse's poller uses (a fresh
    group, earliest, no auto commit, the same fetch wait, sizes and timeouts)."""
    return {
        "bootstrap_servers": bootstrap,
        "group_id": f"raw-{uuid.uuid4().hex[:8]}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.FetchMaxWaitMs,
        **settings.aiokafka_options(),
    }


def pumphouse_config(
    bootstrap: str,
    topic: str,
    state_dir: str,
    *,
    handler: str,
    batch: int,
    fetch_max_wait_ms: int | None = None,
    env: dict[str, str] | None = None,
    provisioned: int = PARTITIONS,
    timeouts: dict[str, int] | None = None,
) -> str:
    """One Kafka mapping (window 0, TRIM_HORIZON, a fresh group) on one Python function;
    ``Settings.Kafka`` as :func:`consumer_settings` makes it."""
    import yaml

    kafka: dict[str, Any] = dict(GROUP_TIMEOUTS if timeouts is None else timeouts)
    if fetch_max_wait_ms is not None:
        kafka["FetchMaxWaitMs"] = fetch_max_wait_ms
    function: dict[str, Any] = {
        "Handler": handler,
        "CodeUri": str(HANDLERS),
        "Environment": {"Variables": env or {}},
    }
    if provisioned:
        function["ProvisionedConcurrency"] = provisioned
    return yaml.safe_dump(
        {
            "Settings": {
                "StateStore": f"sqlite:///{state_dir}/state.db",
                "MetricsAddress": "127.0.0.1:0",
                "Kafka": kafka,
                "LogLevel": "WARNING",
            },
            "Functions": {"bench": function},
            "EventSourceMappings": [
                {
                    "FunctionName": "bench",
                    "SelfManagedEventSource": {
                        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}
                    },
                    "Topics": [topic],
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": batch,
                    "MaximumBatchingWindowInSeconds": 0,
                    "SelfManagedKafkaEventSourceConfig": {
                        "ConsumerGroupId": f"pumphouse-{uuid.uuid4().hex[:8]}"
                    },
                }
            ],
        }
    )


def _hook(child: Any, hook: Callable[[float], None]) -> None:
    """Call ``hook(amount)`` whenever the metric ``child`` is incremented."""
    inc = child.inc

    def hooked(amount: float = 1, *args: Any, **kwargs: Any) -> None:
        hook(amount)
        inc(amount, *args, **kwargs)

    child.inc = hooked


class ServiceRun:
    """The real :class:`~pumphouse.service.Service` with one mapping, its milestones
    stamped by hooks on its metrics (no watcher task)."""

    def __init__(self, config_text: str, records: int) -> None:
        import structlog

        from pumphouse.config import parse_config
        from pumphouse.service import Service
        from pumphouse.telemetry.metrics import Metrics

        # The runtime logs one REPORT line per invocation at info: measure the pipeline.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        self.service = Service(parse_config(config_text), metrics=Metrics())
        self.records = records
        self.first_polled: float | None = None
        self.done_at: float | None = None
        self.cpu_done: float | None = None
        """This process's CPU seconds (``time.process_time``) at ``done_at``."""
        self.worker_cpu: float | None = None
        """CPU seconds the function's workers used from :meth:`start` to ``done_at``."""
        self._worker_cpu_started = 0.0
        self.done = asyncio.Event()
        self.committed = 0.0

    def _polled(self, _: float) -> None:
        if self.first_polled is None:
            self.first_polled = time.perf_counter()

    def _committed(self, amount: float) -> None:
        self.committed += amount
        if self.committed >= self.records and self.done_at is None:
            self.done_at = time.perf_counter()
            self.cpu_done = time.process_time()
            self.worker_cpu = self._workers_cpu() - self._worker_cpu_started
            self.done.set()

    async def start(self) -> float:
        """Start the service (state store, warm workers, endpoints); returns the moment
        its poller may run (the clock's start): it has not run a step yet."""
        service = self.service
        await service.start()
        self._worker_cpu_started = self._workers_cpu()
        started = time.perf_counter()
        metrics = self.metrics
        _hook(metrics.polled, self._polled)
        _hook(metrics.committed, self._committed)
        return started

    def _workers_cpu(self) -> float:
        runtime = self.service.runtime
        return sum(cpu_seconds(pid) for pid in runtime.worker_pids()) if runtime else 0.0

    @property
    def metrics(self) -> Any:
        status = self.service.statuses[self.service.config.EventSourceMappings[0].uuid]
        assert status.metrics is not None
        return status.metrics

    async def wait_assigned(self, partitions: int = PARTITIONS) -> None:
        """Until the poller processes ``partitions`` partitions (before any measuring)."""
        gauge = self.metrics.pollers_active
        while gauge._value.get() < partitions:  # noqa: ASYNC110 - polls a gauge, untimed
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.service.stopping.set()
        await self.service.shutdown()


async def raw_drain(
    bootstrap: str, topic: str, records: int, *, batch: int, settings: Any
) -> dict[str, Any]:
    """A hand-written aiokafka consumer: ``getmany(max_records=batch)`` + ``commit`` of
    each returned batch in one loop, touching no record, until ``records`` were read.
    Times as :class:`ServiceRun` does: ``total`` from just before the consumer is
    created, ``steady`` from the first ``getmany`` that returned records, both to the
    return of the commit that covered the last record; ``cpu``: this process's CPU
    seconds over ``total``."""
    from aiokafka import AIOKafkaConsumer

    options = raw_consumer_options(bootstrap, settings)
    cpu_started = time.process_time()
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(topic, **options)
    await consumer.start()
    first: float | None = None
    seen = 0
    try:
        while seen < records:
            polled = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=batch)
            if not polled:
                continue
            if first is None:
                first = time.perf_counter()
            offsets = {}
            for tp, messages in polled.items():
                seen += len(messages)
                offsets[tp] = messages[-1].offset + 1
            await consumer.commit(offsets)
        ended = time.perf_counter()
        cpu = time.process_time() - cpu_started
    finally:
        await consumer.stop()
    assert first is not None
    return {
        "total": ended - started,
        "steady": ended - first,
        "cpu": cpu,
        "rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------
# Child processes: each measurement runs in a fresh process; it prints JSON lines, the
# last one its result.


def child_command(script: str, mode: str, *args: Any) -> list[str]:
    return [sys.executable, script, "--child", mode, *(str(a) for a in args)]


def run_child(script: str, mode: str, *args: Any, timeout: float = 300) -> dict[str, Any]:
    done = subprocess.run(
        child_command(script, mode, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class Child:
    """A child process that prints ``{"ready": true}`` once it may be measured."""

    def __init__(self, script: str, mode: str, *args: Any) -> None:
        self.command = child_command(script, mode, *args)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.PIPE
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=60)
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError(f"{self.command[3]} child did not get ready: {line!r}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def result(self) -> dict[str, Any]:
        assert self.process is not None
        output, _ = await asyncio.wait_for(self.process.communicate(), timeout=180)
        if self.process.returncode != 0:
            raise RuntimeError(f"{self.command[3]} child failed ({self.process.returncode})")
        return dict(json.loads(output.decode().strip().splitlines()[-1]))


def ready() -> None:
    print(json.dumps({"ready": True}), flush=True)


# ---------------------------------------------------------------------------------------
# Producers


async def produce_backlog(bootstrap: str, topic: str, records: int) -> float:
    """``records`` records of ``VALUE_BYTES`` bytes, round robin over the partitions;
    returns the produce rate (records/s)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    value = b"x" * VALUE_BYTES
    started = time.perf_counter()
    try:
        futures = [
            await producer.send(topic, value, partition=i % PARTITIONS) for i in range(records)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return records / (time.perf_counter() - started)


async def produce_steadily(bootstrap: str, topic: str, rate: int, seconds: float) -> int:
    """Send ``rate`` records/s in 10 ms ticks, each sent at once (``linger_ms`` 0); each
    record's timestamp is its send time. Returns how many were sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    per_tick = max(1, rate // 100)
    ticks = int(seconds * 100)
    value = b"y" * VALUE_BYTES
    futures = []
    start = time.perf_counter()
    try:
        for tick in range(ticks):
            for i in range(per_tick):
                futures.append(
                    await producer.send(topic, value, partition=(tick * per_tick + i) % PARTITIONS)
                )
            delay = start + (tick + 1) / 100 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(futures)


def steady_count(rate: int, seconds: float) -> int:
    """How many records :func:`produce_steadily` sends."""
    return max(1, rate // 100) * int(seconds * 100)
