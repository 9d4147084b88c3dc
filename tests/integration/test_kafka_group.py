"""Two ``pumphouse run`` processes in one consumer group: they split the partitions, and
when one stops the other takes over without losing a record."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_kafka_helpers import (
    FAST_GROUP,
    HANDLERS,
    create_topic,
    produce,
    read_lines,
    unique_records,
    wait_for,
)

from pumphouse.devstack import TansuBroker, free_port

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, name: str, *, bootstrap: str, topic: str, port: int) -> Path:
    body = {
        "Settings": {
            "StateStore": f"sqlite:///{tmp_path / f'{name}.db'}",
            "MetricsAddress": f"127.0.0.1:{port}",
            "ShutdownTimeoutSeconds": 5,
            "Kafka": dict(FAST_GROUP),
        },
        "Functions": {
            "fn": {
                "Handler": "recorder.handler",
                "CodeUri": str(HANDLERS),
                "Environment": {
                    "Variables": {"RECORD_TO": str(tmp_path / "records.jsonl"), "SLEEP_MS": "2"}
                },
            }
        },
        "EventSourceMappings": [
            {
                "FunctionName": "fn",
                "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
                "Topics": [topic],
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 10,
                "MaximumBatchingWindowInSeconds": 0,
                "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": f"{topic}-group"},
            }
        ],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


class Replica:
    """One ``pumphouse run`` process."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pumphouse", "--log-format", "json", "run", "-c", str(config)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def partitions_owned(self) -> int | None:
        """``pumphouse_pollers_active`` of the mapping, from /metrics (None if down)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=1) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("pumphouse_pollers_active{"):
                return int(float(line.rsplit(" ", 1)[1]))
        return None

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        if replica.process.poll() is None:
            replica.process.kill()
            replica.process.wait(timeout=10)


async def test_two_processes_split_partitions_and_take_over_without_loss(
    tansu: TansuBroker, unique_name: str, tmp_path: Path, replicas: list[Replica]
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 4)
    records = tmp_path / "records.jsonl"
    ports = [free_port(), free_port()]
    for name, port in zip(("a", "b"), ports, strict=True):
        config = write_config(
            tmp_path, name, bootstrap=tansu.bootstrap, topic=unique_name, port=port
        )
        replicas.append(Replica(config, port, tmp_path / f"{name}.log"))
    a, b = replicas

    # Both members hold two partitions each once the group settled.
    await wait_for(
        lambda: a.partitions_owned() == 2 and b.partitions_owned() == 2,
        within=40,
        message="the group to split 4 partitions 2/2",
    )
    await produce(
        tansu.bootstrap,
        unique_name,
        [{"value": f"first-{i}".encode(), "partition": i % 4} for i in range(400)],
    )
    await wait_for(
        lambda: len(unique_records(read_lines(records))) >= 400, within=40, message="400 records"
    )
    first = read_lines(records)
    # Workers are children of the replica that invoked them.
    owners: dict[int, set[int]] = {}
    for line in first:
        owners.setdefault(line["partition"], set()).add(line["ppid"])
    assert all(len(replica) == 1 for replica in owners.values())  # one owner per partition
    per_replica = Counter(next(iter(replica)) for replica in owners.values())
    assert sorted(per_replica) == sorted([a.process.pid, b.process.pid])
    assert sorted(per_replica.values()) == [2, 2]

    # A stops cleanly: it finishes, commits and leaves; B takes over all four.
    assert a.stop() == 0
    await wait_for(lambda: b.partitions_owned() == 4, within=40, message="B to own 4 partitions")
    await produce(
        tansu.bootstrap,
        unique_name,
        [{"value": f"second-{i}".encode(), "partition": i % 4} for i in range(400)],
    )
    await wait_for(
        lambda: len(unique_records(read_lines(records))) >= 800, within=40, message="800 records"
    )
    await asyncio.sleep(0.5)
    assert b.stop() == 0
    lines = read_lines(records)
    expected = {(p, o) for p in range(4) for o in range(200)}
    assert unique_records(lines) == expected  # every record, none lost
    values = sorted(line["value"] for line in lines)
    assert values == sorted(
        [f"first-{i}" for i in range(400)] + [f"second-{i}" for i in range(400)]
    )  # and none twice: the hand-over committed what A finished
    assert {line["ppid"] for line in lines if line["value"].startswith("second-")} == {
        b.process.pid
    }
