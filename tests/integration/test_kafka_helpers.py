"""Helpers shared by the Kafka integration tests (no tests here): configs, producing,
reading results."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from handlers.streams.support import read_lines

from pumphouse.config import Config, parse_config
from pumphouse.service import Service
from pumphouse.telemetry.metrics import Metrics

HANDLERS = Path(__file__).resolve().parent.parent / "handlers" / "kafka"

#: Short group timeouts: tansu makes a join wait about half the rebalance timeout.
FAST_GROUP = {"SessionTimeoutMs": 2000, "RebalanceTimeoutMs": 2000, "HeartbeatIntervalMs": 300}


def kafka_config(
    tmp_path: Path,
    *,
    bootstrap: str,
    topic: str,
    handler: str = "recorder.handler",
    env: dict[str, str] | None = None,
    mapping: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    timeout: int = 10,
) -> str:
    """A configuration with one function and one Kafka mapping, as YAML text."""
    variables = {"RECORD_TO": str(tmp_path / "records.jsonl"), **(env or {})}
    body: dict[str, Any] = {
        "Settings": {
            "StateStore": f"sqlite:///{tmp_path / 'state.db'}",
            "MetricsAddress": "127.0.0.1:0",
            "ShutdownTimeoutSeconds": 5,
            "Kafka": dict(FAST_GROUP),
            **(settings or {}),
        },
        "Functions": {
            "fn": {
                "Handler": handler,
                "CodeUri": str(HANDLERS),
                "Timeout": timeout,
                "Environment": {"Variables": variables},
            }
        },
        "EventSourceMappings": [
            {
                "FunctionName": "fn",
                "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
                "Topics": [topic],
                "StartingPosition": "TRIM_HORIZON",
                "MaximumBatchingWindowInSeconds": 0.05,
                **(mapping or {}),
            }
        ],
    }
    return yaml.safe_dump(body, sort_keys=False)


@contextlib.asynccontextmanager
async def running(config_text: str) -> AsyncIterator[Service]:
    """The real service, in-process, with its own metrics registry."""
    service = Service(parse_config(config_text), metrics=Metrics())
    await service.start()
    try:
        yield service
    finally:
        service.stopping.set()
        await service.shutdown()


def group_of(config_text: str) -> str:
    config: Config = parse_config(config_text)
    group = config.EventSourceMappings[0].consumer_group_id
    assert group is not None
    return group


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from pumphouse.devstack import create_kafka_topics

    await create_kafka_topics(bootstrap, {topic: partitions})


async def delete_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[dict[str, Any]],
    **options: Any,
) -> None:
    """Send records (``value``, optional ``key``, ``partition``, ``headers``,
    ``timestamp_ms``) and wait until all are acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **options)
    await producer.start()
    try:
        futures = [await producer.send(topic, **record) for record in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed(
    bootstrap: str, group: str, topic: str, partitions: int
) -> dict[int, int | None]:
    """The group's committed offsets (None where nothing was committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def consume_all(bootstrap: str, topic: str, count: int, within: float = 20) -> list[Any]:
    """Read ``count`` records of a topic from the beginning (no group)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + within
        while len(found) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            for messages in batch.values():
                found.extend(messages)
        return found
    finally:
        await consumer.stop()


async def wait_for(
    condition: Callable[[], bool], *, within: float = 20, message: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.05)


def delivered(path: Path, *, at_least: int) -> Callable[[], bool]:
    return lambda: len(read_lines(path)) >= at_least


def unique_records(lines: Sequence[dict[str, Any]]) -> set[tuple[int, int]]:
    return {(line["partition"], line["offset"]) for line in lines}


def mapping_labels(service: Service) -> dict[str, str]:
    """The metric labels of the service's (only) Kafka mapping."""
    return {
        "mapping": service.config.EventSourceMappings[0].label,
        "function": "fn",
        "source": "kafka",
    }


def metric(service: Service, name: str, **labels: str) -> float:
    value = service.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else float(value)
