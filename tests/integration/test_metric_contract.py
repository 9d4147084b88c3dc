"""The metric contract: the same scripted scenario gives the same event counts and the same
mapping status on SQS, Kinesis, DynamoDB Streams and Kafka (real servers).

Every scenario puts a few records before the service starts, runs the one scripted
handler (``tests/handlers/contract/contract.py``) until the expected work is done, lets
the service run on a moment longer (so that counting twice would show), and compares the
counter deltas with one table. What AWS itself counts differently per source is spelled
out where the expectations are built, never hidden:

* SQS has no on-failure destination (the queue's RedrivePolicy moves failing messages to
  its dead-letter queue) and AWS emits neither ``DroppedEventCount`` nor
  ``OnFailureDestinationDeliveredEventCount`` for it, so "retries exhausted" ends in the
  queue's DLQ and "destination unreachable" does not apply to SQS;
* SQS counts ``deleted``, Kafka ``committed``; the streams acknowledge by checkpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from handlers.streams import support as s
from prometheus_client import CollectorRegistry
from test_kafka_helpers import FAST_GROUP, create_topic, produce
from test_sqs_support import ONE_LOOP, create_queue, queue_arn, queue_counts

from pumphouse.config import parse_config
from pumphouse.devstack import KinesisMock, MotoServer, TansuBroker
from pumphouse.service import Service, poller_factory
from pumphouse.telemetry.metrics import Metrics

pytestmark = pytest.mark.slow

HANDLERS = Path(__file__).resolve().parent.parent / "handlers" / "contract"
REGION = "us-east-1"

EVENTS = {
    "polled": "pumphouse_polled_events_total",
    "invoked": "pumphouse_invoked_events_total",
    "failed_invoke": "pumphouse_failed_invoke_events_total",
    "invoke_errors": "pumphouse_invoke_errors_total",
    "dropped": "pumphouse_dropped_events_total",
    "on_failure_delivered": "pumphouse_on_failure_delivered_events_total",
    "deleted": "pumphouse_deleted_events_total",
    "committed": "pumphouse_committed_events_total",
}
DELIVERY_FAILURES = "pumphouse_destination_delivery_failures_total"
FAILED = "PROBLEM: Function call failed"


@dataclass(frozen=True)
class Scenario:
    tags: tuple[str, ...]
    """The records put on the source, in order (see the handler)."""
    counts: dict[str, int]
    """Expected event counts (every metric of EVENTS not named is 0)."""
    status: str
    last_error: str | None
    """What LastError starts with (None: no error was ever seen)."""
    mapping: dict[str, Any] = field(default_factory=dict)
    destination: str | None = None
    """``"queue"``: an SQS queue; ``"missing"``: a queue that does not exist."""


SCENARIOS: dict[str, Scenario] = {
    "all succeed": Scenario(
        ("ok", "ok", "ok"),
        {"polled": 3, "invoked": 3},
        "OK",
        None,
    ),
    # A partial batch response is a function success for Lambda: the status stays OK,
    # the reported record counts as a failed invoke and is invoked again (alone: it is
    # the last of the batch).
    "partial response": Scenario(
        ("ok", "ok", "report-once"),
        {"polled": 3, "invoked": 4, "failed_invoke": 1},
        "OK",
        None,
    ),
    "function error then success": Scenario(
        ("fail-once",),
        {"polled": 1, "invoked": 2, "failed_invoke": 1, "invoke_errors": 1},
        "OK",
        "ValueError: first delivery of",
    ),
    "retries exhausted with a destination": Scenario(
        ("poison",),
        {
            "polled": 1,
            "invoked": 2,
            "failed_invoke": 2,
            "invoke_errors": 2,
            "on_failure_delivered": 1,
        },
        FAILED,
        "ValueError: poison record",
        mapping={"MaximumRetryAttempts": 1},
        destination="queue",
    ),
    # AWS: records whose failure record could not be delivered count as dropped, and
    # the delivery failure is counted; pumphouse keeps retrying the delivery and never
    # acknowledges past the record.
    "destination unreachable": Scenario(
        ("poison",),
        {"polled": 1, "invoked": 1, "failed_invoke": 1, "invoke_errors": 1, "dropped": 1},
        FAILED,
        "ValueError: poison record",
        mapping={"MaximumRetryAttempts": 0},
        destination="missing",
    ),
}


# --- the four sources -----------------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    moto_url: str
    kinesis_url: str
    bootstrap: str


class Source:
    """Creates a source with records on it and says how it acknowledges."""

    kind: str

    def __init__(self, name: str, tmp_path: Path, servers: Servers) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self.moto_url = servers.moto_url
        self.kinesis_url = servers.kinesis_url
        self.bootstrap = servers.bootstrap

    async def prepare(self, tags: tuple[str, ...], scenario: Scenario) -> dict[str, Any]:
        """Create the source, put the records; the mapping's source settings."""
        raise NotImplementedError

    def acknowledged(self, scenario: Scenario) -> dict[str, int]:
        """The deleted / committed counts this scenario ends with."""
        return {}

    def expected(self, scenario: Scenario) -> dict[str, int]:
        return {**dict.fromkeys(EVENTS, 0), **scenario.counts, **self.acknowledged(scenario)}

    def records(self, tags: tuple[str, ...]) -> list[dict[str, str]]:
        return [{"tag": tag, "key": f"{self.name}-{i}"} for i, tag in enumerate(tags)]

    async def done(self, scenario: Scenario) -> bool:
        """Source-side evidence that the scenario's work is over (beyond the counts)."""
        return True


class SqsSource(Source):
    kind = "sqs"

    async def prepare(self, tags: tuple[str, ...], scenario: Scenario) -> dict[str, Any]:
        async with s.client("sqs", self.moto_url) as sqs:
            # Failed messages come back after 1 s; the second failure moves a message to
            # the queue's dead-letter queue (the "destination" of an SQS mapping).
            await create_queue(sqs, f"{self.name}-dlq")
            url = await create_queue(
                sqs, self.name, visibility=1, dlq=f"{self.name}-dlq", max_receive=2
            )
            for record in self.records(tags):
                await sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
        return {"EventSourceArn": queue_arn(self.name)}

    def expected(self, scenario: Scenario) -> dict[str, int]:
        counts = super().expected(scenario)
        # The queue, not the mapping, dead-letters a message: AWS counts neither
        # DroppedEventCount nor OnFailureDestinationDeliveredEventCount for SQS.
        counts["on_failure_delivered"] = 0
        counts["dropped"] = 0
        # A message that failed or was reported comes back: each delivery is a receive.
        counts["polled"] = counts["invoked"]
        return counts

    def acknowledged(self, scenario: Scenario) -> dict[str, int]:
        gave_up = scenario.destination is not None
        return {"deleted": 0 if gave_up else len(scenario.tags)}

    async def done(self, scenario: Scenario) -> bool:
        if scenario.destination is None:
            return True
        async with s.client("sqs", self.moto_url) as sqs:
            url = (await sqs.get_queue_url(QueueName=f"{self.name}-dlq"))["QueueUrl"]
            visible, _ = await queue_counts(sqs, url)
            return visible == 1


class KinesisSource(Source):
    kind = "kinesis"

    async def prepare(self, tags: tuple[str, ...], scenario: Scenario) -> dict[str, Any]:
        async with s.client("kinesis", self.kinesis_url) as kinesis:
            arn = await s.create_stream(kinesis, self.name, 1)
            await s.put_records(kinesis, self.name, [("p", r) for r in self.records(tags)])
        return {"EventSourceArn": arn, "StartingPosition": "TRIM_HORIZON"}


class DynamoDBSource(Source):
    kind = "dynamodb"

    async def prepare(self, tags: tuple[str, ...], scenario: Scenario) -> dict[str, Any]:
        async with s.client("dynamodb", self.moto_url) as ddb:
            await ddb.create_table(
                TableName=self.name,
                KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
            )
            arn = (await ddb.describe_table(TableName=self.name))["Table"]["LatestStreamArn"]
            for record in self.records(tags):
                await ddb.put_item(
                    TableName=self.name,
                    Item={"key": {"S": record["key"]}, "tag": {"S": record["tag"]}},
                )
        return {"EventSourceArn": arn, "StartingPosition": "TRIM_HORIZON"}


class KafkaSource(Source):
    kind = "kafka"

    async def prepare(self, tags: tuple[str, ...], scenario: Scenario) -> dict[str, Any]:
        await create_topic(self.bootstrap, self.name, 1)
        await produce(
            self.bootstrap,
            self.name,
            [{"value": json.dumps(r).encode(), "partition": 0} for r in self.records(tags)],
        )
        return {
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [self.bootstrap]}},
            "Topics": [self.name],
            "StartingPosition": "TRIM_HORIZON",
            "MaximumBatchingWindowInSeconds": 0.05,
        }

    def acknowledged(self, scenario: Scenario) -> dict[str, int]:
        # Nothing is committed past a record whose failure record was not delivered.
        return {"committed": 0 if scenario.destination == "missing" else len(scenario.tags)}


SOURCES: dict[str, type[Source]] = {
    "sqs": SqsSource,
    "kinesis": KinesisSource,
    "dynamodb": DynamoDBSource,
    "kafka": KafkaSource,
}

CASES = [
    pytest.param(source, scenario, id=f"{source}: {scenario}")
    for scenario, spec in SCENARIOS.items()
    for source in SOURCES
    # SQS has no on-failure destination, so it cannot be unreachable (module docstring).
    if not (source == "sqs" and spec.destination == "missing")
]


# --- running a scenario ----------------------------------------------------------------


def _config(
    source: Source, scenario: Scenario, settings: dict[str, Any], mapping: dict[str, Any]
) -> str:
    seen = source.tmp_path / "seen"
    seen.mkdir(exist_ok=True)
    if scenario.destination is not None and source.kind != "sqs":
        target = f"{source.name}-dlq" if scenario.destination == "queue" else "no-such-queue"
        mapping["DestinationConfig"] = {"OnFailure": {"Destination": queue_arn(target)}}
    document = {
        "Settings": settings,
        "Functions": {
            "contract": {
                "Handler": "contract.handler",
                "CodeUri": str(HANDLERS),
                "Timeout": 1,  # within the SQS queue's visibility timeout
                "MemorySize": 512,
                "Environment": {"Variables": {"SEEN_DIR": str(seen)}},
            }
        },
        "EventSourceMappings": [
            {
                "FunctionName": "contract",
                "BatchSize": 10,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                **mapping,
                # SQS retries through the queue: its RedrivePolicy's maxReceiveCount 2 is
                # MaximumRetryAttempts 1 (which an SQS mapping refuses).
                **(scenario.mapping if source.kind != "sqs" else {}),
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


@asynccontextmanager
async def _running(config: str, kind: str) -> AsyncIterator[Service]:
    # One SQS receive loop: moto's SQS may hand two concurrent receives the same message.
    factory = ONE_LOOP if kind == "sqs" else poller_factory
    service = Service(
        parse_config(config, base_dir=HANDLERS),
        metrics=Metrics(CollectorRegistry()),
        factory=factory,
    )
    await service.start()
    try:
        yield service
    finally:
        service.stopping.set()
        await service.shutdown()


def _counts(service: Service) -> dict[str, int]:
    return {key: int(s.metric(service, name)) for key, name in EVENTS.items()}


async def _wait(
    check: Callable[[], Awaitable[bool] | bool], what: str, *, within: float = 40.0
) -> None:
    await s.wait_for(check, within=within, what=what)


@pytest.mark.parametrize(("source_kind", "scenario_name"), CASES)
async def test_the_same_scenario_counts_the_same_on_every_source(
    source_kind: str,
    scenario_name: str,
    moto_server: MotoServer,
    kinesis_mock: KinesisMock,
    tansu: TansuBroker,
    tmp_path: Path,
    unique_name: str,
) -> None:
    scenario = SCENARIOS[scenario_name]
    servers = Servers(moto_server.url, kinesis_mock.url, tansu.bootstrap)
    source = SOURCES[source_kind](unique_name, tmp_path, servers)
    if scenario.destination == "queue" and source_kind != "sqs":
        async with s.client("sqs", moto_server.url) as sqs:
            destination_url, _ = await s.create_queue(sqs, f"{unique_name}-dlq")
    mapping = await source.prepare(scenario.tags, scenario)
    settings = {
        **s.settings(
            state_store=f"sqlite:///{tmp_path}/state.db",
            kinesis_url=kinesis_mock.url,
            moto_url=moto_server.url,
            shutdown_seconds=5.0,
        ),
        "Kafka": dict(FAST_GROUP),
    }
    expected = source.expected(scenario)
    config = _config(source, scenario, settings, mapping)

    async with _running(config, source_kind) as service:

        def work_done() -> bool:
            counts = _counts(service)
            return all(counts[key] >= value for key, value in expected.items())

        await _wait(work_done, f"{scenario_name} on {source_kind}: {expected}")
        if scenario.destination == "missing":
            await _wait(
                lambda: s.metric(service, DELIVERY_FAILURES) >= 2,
                "the delivery to the missing queue failing (and retried)",
            )
        await _wait(lambda: source.done(scenario), "the source's own evidence")
        # Run on a moment: a count made twice, or a retry too many, would show now.
        await asyncio.sleep(1.5)
        counts = _counts(service)
        [view] = service.mapping_views()
        delivery_failures = s.metric(service, DELIVERY_FAILURES)

    assert counts == expected
    assert view["LastProcessingResult"] == scenario.status
    if scenario.last_error is None:
        assert view["LastError"] is None
    else:
        assert str(view["LastError"]).startswith(scenario.last_error)
    if scenario.destination == "missing":
        assert delivery_failures >= 2
    else:
        assert delivery_failures == 0
    if scenario.destination == "queue" and source_kind != "sqs":
        async with s.client("sqs", moto_server.url) as sqs:
            [failure] = await s.drain_queue(sqs, destination_url, expect=1)
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert failure["requestContext"]["approximateInvokeCount"] == 2
