"""Helpers shared by the SQS integration tests (no tests here).

Every test runs the real :class:`~pumphouse.service.Service` in-process against the
session's moto server, with handlers from ``tests/handlers/sqs`` that log what they saw
to ``$OUT_DIR/<function>.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from aiobotocore.session import get_session
from prometheus_client import CollectorRegistry

from pumphouse.config import Config, parse_config
from pumphouse.pollers.base import MappingContext
from pumphouse.pollers.sqs import SqsPoller
from pumphouse.service import PollerFactory, Service, poller_factory
from pumphouse.telemetry.metrics import Metrics

HANDLERS = Path(__file__).resolve().parent.parent / "handlers" / "sqs"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account: the queue URLs it hands out


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


@asynccontextmanager
async def sqs_client(endpoint: str) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "sqs", region_name=REGION, endpoint_url=endpoint
    ) as client:
        yield client


async def create_queue(
    client: Any,
    name: str,
    *,
    visibility: int = 30,
    dlq: str | None = None,
    max_receive: int = 2,
    content_dedup: bool = False,
) -> str:
    attributes = {"VisibilityTimeout": str(visibility)}
    if name.endswith(".fifo"):
        attributes["FifoQueue"] = "true"
        if content_dedup:
            attributes["ContentBasedDeduplication"] = "true"
    if dlq is not None:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": queue_arn(dlq), "maxReceiveCount": max_receive}
        )
    reply = await client.create_queue(QueueName=name, Attributes=attributes)
    return str(reply["QueueUrl"])


async def send_bodies(
    client: Any, url: str, bodies: Sequence[str], **extra: Any
) -> list[str]:
    """Send ``bodies`` in batches of 10; the message ids, in order."""
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": body, **extra}
            for i, body in enumerate(bodies[start : start + 10])
        ]
        reply = await client.send_message_batch(QueueUrl=url, Entries=entries)
        assert not reply.get("Failed"), reply.get("Failed")
        by_id = {int(ok["Id"]): ok["MessageId"] for ok in reply["Successful"]}
        ids.extend(by_id[i] for i in range(len(entries)))
    return ids


async def drain(client: Any, url: str) -> list[dict[str, Any]]:
    """Receive (and delete) everything visible in a queue."""
    found: list[dict[str, Any]] = []
    while True:
        reply = await client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = reply.get("Messages") or []
        if not messages:
            return found
        found.extend(messages)
        await client.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


async def queue_counts(client: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) of a queue."""
    reply = await client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes = reply["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def function(handler: str, out_dir: Path, *, timeout: int = 3, **extra: Any) -> dict[str, Any]:
    variables = {"OUT_DIR": str(out_dir), **extra.pop("variables", {})}
    return {
        "Handler": handler,
        "CodeUri": str(HANDLERS),
        "Timeout": timeout,
        "Environment": {"Variables": variables},
        **extra,
    }


def make_config(
    tmp_path: Path,
    endpoint: str,
    *,
    functions: dict[str, dict[str, Any]],
    mappings: Iterable[dict[str, Any]],
    max_concurrency: int | None = None,
) -> Config:
    settings: dict[str, Any] = {
        "StateStore": f"sqlite:///{tmp_path / 'state.db'}",
        "MetricsAddress": "127.0.0.1:0",
        "ShutdownTimeoutSeconds": 5,
        "Region": REGION,
        "Endpoints": {"Sqs": endpoint},
    }
    if max_concurrency is not None:
        settings["MaxConcurrency"] = max_concurrency
    document = {
        "Settings": settings,
        "Functions": functions,
        "EventSourceMappings": list(mappings),
    }
    return parse_config(yaml.safe_dump(document), base_dir=tmp_path)


def sqs_pollers(**options: Any) -> Callable[[str], PollerFactory]:
    """A poller factory building ``SqsPoller(ctx, **options)``.

    Tests that count deliveries exactly use ``sqs_pollers(initial_pollers=1,
    max_pollers=1)``: moto's SQS is not thread-safe, and two receives racing on one queue
    now and then both get the same message (with its receive count bumped twice) — a
    duplicate SQS allows, but not what those tests are about.
    """

    def factory(source: str) -> PollerFactory:
        def build(ctx: MappingContext) -> SqsPoller:
            return SqsPoller(ctx, **options)

        return build

    return factory


#: One receive loop: no concurrent receives, so moto never hands out duplicates.
ONE_LOOP = sqs_pollers(initial_pollers=1, max_pollers=1)


@asynccontextmanager
async def running(
    config: Config, *, factory: Callable[[str], PollerFactory] = poller_factory
) -> AsyncIterator[Service]:
    """The service, started; stopped (drained) on exit."""
    service = Service(config, metrics=Metrics(CollectorRegistry()), factory=factory)
    await service.start()
    try:
        yield service
    finally:
        service.stopping.set()
        await service.shutdown()


def handler_log(out_dir: Path, function_name: str) -> list[dict[str, Any]]:
    path = out_dir / f"{function_name}.jsonl"
    if not path.exists():
        return []
    # A handler may be writing right now: only lines that already end are complete.
    complete = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in complete if line.strip()]


def delivered(out_dir: Path, function_name: str) -> list[dict[str, Any]]:
    """Every record summary the handler logged, in invocation order."""
    return [r for entry in handler_log(out_dir, function_name) for r in entry["records"]]


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, within: float = 30.0, what: str = ""
) -> None:
    """Wait until ``check()`` is true (fails the test after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def metric(service: Service, name: str, **labels: str) -> float:
    value = service.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def mapping_labels(service: Service) -> dict[str, str]:
    """The metric labels of the first mapping."""
    status = next(iter(service.statuses.values()))
    return {"mapping": status.label, "function": status.function, "source": status.source}
