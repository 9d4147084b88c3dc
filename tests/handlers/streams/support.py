"""Helpers the stream-source tests share (imported as ``handlers.streams.support``).

Not a handler: the worker processes never import it. Everything talks to the real test
servers (kinesis-mock, moto, Redis) over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from aiobotocore.session import get_session

from pumphouse.config import parse_config
from pumphouse.service import Service
from pumphouse.telemetry.metrics import Metrics

HANDLERS = Path(__file__).resolve().parent
REGION = "us-east-1"


def settings(
    *,
    state_store: str,
    kinesis_url: str | None = None,
    moto_url: str | None = None,
    lease_seconds: float = 2.0,
    shutdown_seconds: float = 10.0,
) -> dict[str, Any]:
    endpoints: dict[str, str] = {}
    if kinesis_url:
        endpoints["Kinesis"] = kinesis_url
    if moto_url:
        for key in ("Sqs", "Sns", "S3", "DynamoDB", "DynamoDBStreams"):
            endpoints[key] = moto_url
    return {
        "StateStore": state_store,
        "Region": REGION,
        "MetricsAddress": "127.0.0.1:0",
        "ShutdownTimeoutSeconds": shutdown_seconds,
        "LeaseDurationSeconds": lease_seconds,
        "Endpoints": endpoints,
        "LogLevel": "INFO",
    }


def function(handler: str, record_file: Path, *, timeout: int = 30, **env: str) -> dict[str, Any]:
    return {
        "Handler": handler,
        "CodeUri": str(HANDLERS),
        "Timeout": timeout,
        # Generous: the runtime's memory watchdog counts more than the handler uses.
        "MemorySize": 512,
        "Environment": {"Variables": {"RECORD_FILE": str(record_file), **env}},
    }


def config_yaml(
    *, settings: dict[str, Any], functions: dict[str, Any], mappings: list[dict[str, Any]]
) -> str:
    return yaml.safe_dump(
        {"Settings": settings, "Functions": functions, "EventSourceMappings": mappings},
        sort_keys=False,
    )


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line the handlers wrote so far: a line still being written (no
    newline yet) is left for the next read."""
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def delivered(path: Path) -> list[dict[str, Any]]:
    """Every record item delivered, in delivery order (recorder.handler lines)."""
    return [item for line in read_lines(path) for item in line.get("items", [])]


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> None:
    """Poll until ``predicate`` holds; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def client(service: str, url: str) -> AsyncIterator[Any]:
    session = get_session()
    async with session.create_client(service, endpoint_url=url, region_name=REGION) as c:
        yield c


async def create_stream(kinesis: Any, name: str, shards: int) -> str:
    """Create a Kinesis stream and wait until it is ACTIVE; returns its ARN."""
    await kinesis.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(200):
        summary = (await kinesis.describe_stream_summary(StreamName=name))[
            "StreamDescriptionSummary"
        ]
        if summary["StreamStatus"] == "ACTIVE":
            return str(summary["StreamARN"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"stream {name} never became ACTIVE")


async def wait_active(kinesis: Any, name: str) -> None:
    for _ in range(200):
        summary = (await kinesis.describe_stream_summary(StreamName=name))[
            "StreamDescriptionSummary"
        ]
        if summary["StreamStatus"] == "ACTIVE":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"stream {name} never became ACTIVE again")


async def put_records(
    kinesis: Any, name: str, items: Iterable[tuple[str, dict[str, Any]]]
) -> list[tuple[str, str]]:
    """Put ``(partition key, data)`` records; returns ``(shard, sequence)`` of each."""
    items = list(items)
    out: list[tuple[str, str]] = []
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        response = await kinesis.put_records(
            StreamName=name,
            Records=[{"PartitionKey": k, "Data": json.dumps(d).encode()} for k, d in chunk],
        )
        assert response.get("FailedRecordCount", 0) == 0, response
        out.extend((r["ShardId"], r["SequenceNumber"]) for r in response["Records"])
    return out


async def create_queue(sqs: Any, name: str) -> tuple[str, str]:
    """Create an SQS queue; returns (url, arn)."""
    url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(url), str(attrs["Attributes"]["QueueArn"])


async def drain_queue(sqs: Any, url: str, *, expect: int, within: float = 20.0) -> list[Any]:
    """Receive (and delete) messages until ``expect`` bodies were read."""
    bodies: list[Any] = []
    deadline = time.monotonic() + within
    while len(bodies) < expect and time.monotonic() < deadline:
        response = await sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


@contextlib.asynccontextmanager
async def running(
    config_text: str,
    *,
    replica_id: str | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Service]:
    """The real Service, in-process, started and (at exit) drained and shut down.
    ``wall_clock`` is the clock of record age."""
    config = parse_config(config_text, base_dir=HANDLERS)
    service = Service(config, metrics=Metrics(), replica_id=replica_id, wall_clock=wall_clock)
    await service.start()
    try:
        yield service
    finally:
        service.stopping.set()
        await service.shutdown()


def metric(service: Service, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for family in service.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class ServiceProcess:
    """``pumphouse run -c FILE`` as a child process (its own process group)."""

    def __init__(self, config_path: Path, *, log_path: Path, env: dict[str, str] | None = None):
        self.config_path = config_path
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pumphouse", "run", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group (the service and its workers)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def keyed_order_ok(items: Sequence[dict[str, Any]]) -> bool:
    """Each key's ``i`` values are delivered in increasing order (first deliveries)."""
    seen: dict[str, int] = {}
    firsts: set[tuple[str, int]] = set()
    for item in items:
        ident = (item["k"], item["i"])
        if ident in firsts:
            continue
        firsts.add(ident)
        last = seen.get(item["k"], -1)
        if item["i"] < last:
            return False
        seen[item["k"]] = item["i"]
    return True
