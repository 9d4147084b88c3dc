"""``pumphouse dev``: local servers up, resources created, everything gone afterwards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3

from pumphouse.devstack import free_port, pid_alive

HANDLERS = Path(__file__).resolve().parent.parent / "handlers" / "basic"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "dev.yaml"
    path.write_text(
        f"""
Settings:
  StateStore: redis://127.0.0.1:{free_port()}/0
  MetricsAddress: 127.0.0.1:{free_port()}
  ShutdownTimeoutSeconds: 5
  Kafka: {{SessionTimeoutMs: 2000, RebalanceTimeoutMs: 2000, HeartbeatIntervalMs: 300}}
Functions:
  echo: {{Handler: echo.handler, CodeUri: {HANDLERS}}}
EventSourceMappings:
  - FunctionName: echo
    EventSourceArn: arn:aws:sqs:us-east-1:000000000000:dev-orders
  - FunctionName: echo
    EventSourceArn: arn:aws:kinesis:us-east-1:000000000000:stream/dev-clicks
    StartingPosition: TRIM_HORIZON
    DestinationConfig: {{OnFailure: {{Destination: "arn:aws:sns:us-east-1:000000000000:dev-failures"}}}}
  - FunctionName: echo
    EventSourceArn: arn:aws:dynamodb:us-east-1:000000000000:table/dev-table/stream/2024-01-01T00:00:00.000
    StartingPosition: TRIM_HORIZON
  - FunctionName: echo
    SelfManagedEventSource: {{Endpoints: {{KAFKA_BOOTSTRAP_SERVERS: ["127.0.0.1:9092"]}}}}
    Topics: [dev-events]
    StartingPosition: TRIM_HORIZON
Dev:
  Queues:
    dev-orders-dlq: {{}}
    dev-orders:
      RedrivePolicy: {{deadLetterTargetArn: "arn:aws:sqs:us-east-1:000000000000:dev-orders-dlq", maxReceiveCount: 2}}
  Streams: {{dev-clicks: 2}}
  Topics: {{dev-events: 3}}
"""
    )
    return path


class _LogReader(threading.Thread):
    """Collects the JSON log events of a subprocess's stderr."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line)
            try:
                self.events.append(json.loads(line))
            except ValueError:
                continue

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.events:
                if item.get("event") == event:
                    return item
            time.sleep(0.1)
        raise AssertionError(f"no {event!r} log event; output:\n{''.join(self.lines[-40:])}")


def test_dev_starts_servers_creates_resources_and_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pumphouse",
            "--log-format",
            "json",
            "dev",
            "-c",
            str(_config(tmp_path)),
            "--endpoints-file",
            str(tmp_path / "endpoints.json"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader = _LogReader(proc.stderr)
    reader.start()
    try:
        started = reader.wait_for("local servers started", timeout=60)
        reader.wait_for("resources ready", timeout=60)
        servers = started["servers"]
        pids = started["pids"]
        assert set(servers) == {"moto", "kinesis-mock", "tansu", "redis"}
        endpoints = json.loads((tmp_path / "endpoints.json").read_text())
        moto_url = f"http://{servers['moto']}"
        assert endpoints == {
            "Sqs": moto_url,
            "Sns": moto_url,
            "S3": moto_url,
            "DynamoDB": moto_url,
            "DynamoDBStreams": moto_url,
            "SecretsManager": moto_url,
            "Kinesis": f"http://{servers['kinesis-mock']}",
            "Kafka": servers["tansu"],
        }

        moto = f"http://{servers['moto']}"
        sqs = boto3.client("sqs", endpoint_url=moto, region_name="us-east-1")
        url = sqs.get_queue_url(QueueName="dev-orders")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
        redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(":dev-orders-dlq")
        assert int(redrive["maxReceiveCount"]) == 2
        sns = boto3.client("sns", endpoint_url=moto, region_name="us-east-1")
        topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
        assert any(t.endswith(":dev-failures") for t in topics)
        ddb = boto3.client("dynamodb", endpoint_url=moto, region_name="us-east-1")
        table = ddb.describe_table(TableName="dev-table")["Table"]
        assert table["StreamSpecification"]["StreamEnabled"] is True
        kinesis = boto3.client(
            "kinesis", endpoint_url=f"http://{servers['kinesis-mock']}", region_name="us-east-1"
        )
        shards = kinesis.list_shards(StreamName="dev-clicks")["Shards"]
        assert len(shards) == 2

        import asyncio

        from aiokafka import AIOKafkaConsumer

        async def partitions() -> set[int] | None:
            consumer = AIOKafkaConsumer(bootstrap_servers=servers["tansu"])
            await consumer.start()
            try:
                await consumer.topics()  # fetches current metadata
                return consumer.partitions_for_topic("dev-events")
            finally:
                await consumer.stop()

        assert asyncio.run(partitions()) == {0, 1, 2}

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    assert proc.returncode == 0, "".join(reader.lines[-40:])
    reader.wait_for("local servers stopped", timeout=1)
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []


STARTS_A_SERVER_AND_WAITS = """
import sys, time
from pumphouse.devstack import RedisServer
server = RedisServer().start()
print(server.pid, flush=True)
time.sleep(600)
"""


def test_servers_do_not_outlive_a_killed_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", STARTS_A_SERVER_AND_WAITS], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert pid_alive(server_pid)
        parent.send_signal(signal.SIGKILL)  # no cleanup code of the parent runs
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while pid_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(server_pid)
    finally:
        if parent.poll() is None:
            parent.kill()
