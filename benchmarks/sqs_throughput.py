"""SQS throughput: pumphouse next to a raw aiobotocore receive/delete loop.

One run, one moto server. Each measurement starts from a fresh queue holding the same
``MESSAGES`` ~100-byte messages (moto slows down as a queue grows, so queues stay small)
and ends when every message was deleted:

* **raw**: ``ReceiveMessage`` (10, long poll, every attribute: the request pumphouse
  makes) -> ``DeleteMessageBatch``, in one loop, and in 5 concurrent loops — what a
  hand-written consumer gets from this server;
* **pumphouse**: the real :class:`~pumphouse.service.Service` in-process, a no-op Python
  handler on warm workers (``ProvisionedConcurrency``), ``BatchSize`` 10, window 0,
  with 1 receive loop and with 5; from the moment the mapping has resolved its queue
  until every message was deleted (received, shaped, serialized, batched, invoked in a
  worker process, deleted).

Each figure is the best of ``REPEATS`` runs. pumphouse should be bounded by the server,
not by itself: the target is pumphouse / raw >= 0.9 with one loop each. The last column
is the CPU the reading process spent per message (for pumphouse: the service process,
not the worker), next to the several milliseconds per message the server needs.

Run: ``.venv/bin/python benchmarks/sqs_throughput.py``
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiobotocore.session import get_session
from prometheus_client import CollectorRegistry

from pumphouse.config import parse_config
from pumphouse.devstack import LOCAL_CREDENTIALS, MotoServer
from pumphouse.pollers.base import MappingContext
from pumphouse.pollers.sqs import SqsPoller
from pumphouse.service import PollerFactory, Service
from pumphouse.telemetry.metrics import Metrics

MESSAGES = 200
REPEATS = 7
TARGET_RATIO = 0.9
HANDLERS = Path(__file__).resolve().parent.parent / "tests" / "handlers" / "sqs"
ACCOUNT = "123456789012"  # moto's default account


async def fresh_queue(sqs: Any) -> tuple[str, str]:
    """A new queue holding MESSAGES messages: (url, arn)."""
    name = f"bench-{uuid.uuid4().hex[:10]}"
    # 60 s visibility: above AWS's advice (6 x the function's 5 s timeout), no warning.
    url = (
        await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})
    )["QueueUrl"]
    for start in range(0, MESSAGES, 10):
        entries = [
            {"Id": str(i), "MessageBody": f'{{"n": {start + i}, "pad": "{"x" * 80}"}}'}
            for i in range(min(10, MESSAGES - start))
        ]
        reply = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not reply.get("Failed")
    return url, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


async def raw_run(sqs: Any, url: str, *, loops: int) -> tuple[float, float]:
    """(wall, CPU) seconds for ``loops`` receive -> delete loops to empty the queue."""
    done = 0

    async def consume() -> None:
        nonlocal done
        while done < MESSAGES:
            reply = await sqs.receive_message(  # the same request pumphouse makes
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=60,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = reply.get("Messages") or []
            if not messages:
                continue
            await sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            done += len(messages)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(consume() for _ in range(loops)))
    return time.perf_counter() - started, time.process_time() - cpu


def factory_for(loops: int) -> Callable[[str], PollerFactory]:
    def factory(source: str) -> PollerFactory:
        def build(ctx: MappingContext) -> SqsPoller:
            return SqsPoller(ctx, initial_pollers=loops, max_pollers=loops)

        return build

    return factory


async def pumphouse_run(
    endpoint: str, arn: str, *, loops: int, state_dir: Path
) -> tuple[float, float]:
    """(wall, CPU of this process) seconds from the mapping's start to every message
    deleted. The worker process's CPU is not counted (it runs the no-op handler)."""
    config = parse_config(
        yaml.safe_dump(
            {
                "Settings": {
                    "StateStore": f"sqlite:///{state_dir}/state-{uuid.uuid4().hex}.db",
                    "Region": "us-east-1",
                    "MetricsAddress": "127.0.0.1:0",
                    "Endpoints": {"Sqs": endpoint},
                },
                "Functions": {
                    "noop": {
                        "Handler": "sqs_handlers.noop",
                        "CodeUri": str(HANDLERS),
                        "ProvisionedConcurrency": loops,
                        "Timeout": 5,
                    }
                },
                "EventSourceMappings": [
                    {
                        "FunctionName": "noop",
                        "EventSourceArn": arn,
                        "BatchSize": 10,
                        "MaximumBatchingWindowInSeconds": 0,
                        "ScalingConfig": {"MaximumConcurrency": max(2, loops)},
                    }
                ],
            }
        ),
        base_dir=HANDLERS,
    )
    metrics = Metrics(CollectorRegistry())
    service = Service(config, metrics=metrics, factory=factory_for(loops))
    label = config.EventSourceMappings[0].label
    deleted = metrics.deleted_events.labels(label, "noop", "sqs")
    await service.start()
    status = next(iter(service.statuses.values()))
    try:
        # The clock starts when the mapping has resolved its queue (as the raw loop's
        # starts with a client and a queue URL in hand).
        while not status.source_reachable:  # noqa: ASYNC110 - a status flag, no event
            await asyncio.sleep(0.001)
        started, cpu = time.perf_counter(), time.process_time()
        # Polling a metric: there is no event to await. _value is private, but the
        # cheapest read of a counter.
        while deleted._value.get() < MESSAGES:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        service.stopping.set()
        await service.shutdown()


async def main() -> int:
    os.environ.update(LOCAL_CREDENTIALS)
    # The runtime logs one REPORT line per invocation at info; measure the pipeline.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    server = MotoServer()
    server.start()
    results: dict[str, float] = {}
    cpu_ms: dict[str, float] = {}
    try:
        async with get_session().create_client(
            "sqs", endpoint_url=server.url, region_name="us-east-1"
        ) as sqs:
            with tempfile.TemporaryDirectory() as tmp:
                runs: list[tuple[str, Callable[[str, str], Awaitable[tuple[float, float]]]]] = [
                    ("raw, 1 loop", lambda url, arn: raw_run(sqs, url, loops=1)),
                    ("pumphouse, 1 poller", lambda url, arn: pumphouse_run(
                        server.url, arn, loops=1, state_dir=Path(tmp))),
                    ("raw, 5 loops", lambda url, arn: raw_run(sqs, url, loops=5)),
                    ("pumphouse, 5 pollers", lambda url, arn: pumphouse_run(
                        server.url, arn, loops=5, state_dir=Path(tmp))),
                ]
                best = {name: float("inf") for name, _ in runs}
                cpu = {name: float("inf") for name, _ in runs}
                for _ in range(REPEATS):  # interleaved, so drift hits every reader alike
                    for name, run in runs:
                        url, arn = await fresh_queue(sqs)
                        wall, used = await run(url, arn)
                        best[name] = min(best[name], wall)
                        cpu[name] = min(cpu[name], used)
                results = {name: MESSAGES / seconds for name, seconds in best.items()}
                cpu_ms = {name: 1000 * used / MESSAGES for name, used in cpu.items()}
    finally:
        server.stop()
    print(f"moto SQS, {MESSAGES} messages per run, BatchSize 10, best of {REPEATS}")
    print(f"{'reader':>22} {'msg/s':>8} {'vs raw':>7} {'client CPU ms/msg':>18}")
    baseline = {"1": results["raw, 1 loop"], "5": results["raw, 5 loops"]}
    for name, rate in results.items():
        loops = "5" if "5" in name else "1"
        ratio = "" if name.startswith("raw") else f"{rate / baseline[loops]:.2f}"
        print(f"{name:>22} {rate:>8.0f} {ratio:>7} {cpu_ms[name]:>18.3f}")
    ratio_one = results["pumphouse, 1 poller"] / baseline["1"]
    print(
        f"pumphouse 1 poller / raw 1 loop = {ratio_one:.2f} "
        f"(target >= {TARGET_RATIO}: {'met' if ratio_one >= TARGET_RATIO else 'missed'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
