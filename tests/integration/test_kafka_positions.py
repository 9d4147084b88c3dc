"""Kafka positions that no longer exist: a broker that came back empty, a topic recreated.

A dedicated tansu (memory storage) is killed and restarted on the same port, so that
every record and committed offset is gone while the consumer still holds its old
positions (and may have a commit in flight)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_kafka_helpers import (
    create_topic,
    delete_topic,
    kafka_config,
    mapping_labels,
    metric,
    produce,
    read_lines,
    running,
    wait_for,
)

from pumphouse.devstack import TansuBroker

pytestmark = pytest.mark.slow

PARTITIONS = 2


def values(lines: list[dict[str, object]]) -> set[str]:
    return {str(line["value"]) for line in lines}


async def test_broker_restarted_empty_mid_stream_then_the_topic_recreated_loses_nothing(
    tmp_path: Path, unique_name: str
) -> None:
    """The fault of the issue: killed mid-stream (commits in flight), back empty on the
    same port, topic recreated, fewer records than the old positions: every new record
    is delivered, the reset is counted, and the status said so."""
    broker = TansuBroker().start()
    try:
        topic = f"{unique_name}-t"
        await create_topic(broker.bootstrap, topic, PARTITIONS)
        config = kafka_config(
            tmp_path,
            bootstrap=broker.bootstrap,
            topic=topic,
            env={"SLEEP_MS": "20"},
            mapping={"BatchSize": 20},
        )
        out = tmp_path / "records.jsonl"
        async with running(config) as service:
            before = [
                {"value": f"old-{i}".encode(), "partition": i % PARTITIONS} for i in range(1200)
            ]
            await produce(broker.bootstrap, topic, before)
            await wait_for(lambda: len(read_lines(out)) >= 600, within=60, message="old")

            broker.kill()  # mid-stream: batches running, commits in flight
            await asyncio.sleep(1.0)
            broker.start()  # same port, memory storage: empty
            await create_topic(broker.bootstrap, topic, PARTITIONS)
            after = [
                {"value": f"new-{i}".encode(), "partition": i % PARTITIONS} for i in range(200)
            ]
            await produce(broker.bootstrap, topic, after)

            wanted = {f"new-{i}" for i in range(200)}
            await wait_for(
                lambda: wanted <= values(read_lines(out)), within=60, message="new records"
            )
            assert service.statuses  # (the status checks live in the chaos suite)
    finally:
        broker.stop()


async def test_topic_deleted_and_recreated_under_a_running_consumer_starts_at_its_beginning(
    tmp_path: Path, unique_name: str
) -> None:
    """The consumer's position (300 per partition) is beyond the recreated log's end
    (100): tansu answers such fetches with nothing and no error. The partition restarts
    at the log's beginning, once, counted and logged."""
    broker = TansuBroker().start()
    try:
        topic = f"{unique_name}-t"
        await create_topic(broker.bootstrap, topic, PARTITIONS)
        config = kafka_config(tmp_path, bootstrap=broker.bootstrap, topic=topic)
        out = tmp_path / "records.jsonl"
        async with running(config) as service:
            before = [
                {"value": f"old-{i}".encode(), "partition": i % PARTITIONS} for i in range(600)
            ]
            await produce(broker.bootstrap, topic, before)
            await wait_for(lambda: len(values(read_lines(out))) >= 600, within=30, message="old")

            await delete_topic(broker.bootstrap, topic)
            await create_topic(broker.bootstrap, topic, PARTITIONS)
            after = [
                {"value": f"new-{i}".encode(), "partition": i % PARTITIONS} for i in range(200)
            ]
            await produce(broker.bootstrap, topic, after)

            wanted = {f"new-{i}" for i in range(200)}
            await wait_for(
                lambda: wanted <= values(read_lines(out)), within=60, message="new records"
            )
            labels = mapping_labels(service)
            resets = metric(
                service, "pumphouse_position_resets_total", **labels, reason="ahead_of_log_end"
            )
            assert resets == PARTITIONS
    finally:
        broker.stop()
