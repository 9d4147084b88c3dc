"""On-failure records: exact shapes, and delivery to SQS, SNS and S3 on a real moto server."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pumphouse.aws import AwsClients
from pumphouse.devstack import MotoServer, free_port, local_aws_environment
from pumphouse.errors import DestinationError
from pumphouse.pollers.batching import assemble_event
from pumphouse.pollers.destinations import (
    DestinationType,
    FailureDestination,
    S3KeyParts,
    deliver_with_retry,
    destination_type,
    encode_failure_record,
    iso_millis,
    iso_seconds,
    kafka_failure_record,
    kafka_failure_record_for,
    kafka_topic_failure_record,
    make_destination,
    s3_object_key,
    stream_failure_record,
    stream_failure_record_for,
)
from pumphouse.pollers.policy import FailureCondition, GiveUp, ResponseContext
from pumphouse.telemetry.metrics import MappingMetrics, Metrics

REGION = "us-east-1"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:orders"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
# 2019-11-14T00:38:04.835Z, 2019-11-14T00:38:05.580Z, 2019-11-14T00:38:06.021Z
FIRST, LAST, NOW = 1573691884.835, 1573691885.580, 1573691886.021

KINESIS_RECORD: dict[str, Any] = {
    "requestContext": {
        "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        "functionArn": FUNCTION_ARN,
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 2,
    },
    "responseContext": {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    },
    "version": "1.0",
    "timestamp": "2019-11-14T00:38:06.021Z",
    "KinesisBatchInfo": {
        "shardId": "shardId-000000000001",
        "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
        "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
        "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
        "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
        "batchSize": 500,
        "streamArn": STREAM_ARN,
    },
}


def kinesis_record(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "source": "kinesis",
        "request_id": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        "function_arn": FUNCTION_ARN,
        "condition": FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        "approximate_invoke_count": 2,
        "response_context": ResponseContext(),
        "shard_id": "shardId-000000000001",
        "start_sequence_number": "49601189658422359378836298521827638475320189012309704722",
        "end_sequence_number": "49601189658422359378836298522902373528957594348623495186",
        "first_arrival": FIRST,
        "last_arrival": LAST,
        "batch_size": 500,
        "stream_arn": STREAM_ARN,
        "timestamp": NOW,
    }
    args.update(overrides)
    return stream_failure_record(**args)


# --- the records, exactly -------------------------------------------------------------


def test_kinesis_record_matches_the_aws_sample() -> None:
    record = kinesis_record()
    assert record == KINESIS_RECORD
    assert list(record) == list(KINESIS_RECORD)  # same key order as AWS's sample


def test_dynamodb_record_uses_its_own_key_and_second_precision() -> None:
    record = kinesis_record(
        source="dynamodb", stream_arn="arn:aws:dynamodb:us-east-1:1:table/T/stream/2016"
    )
    assert "KinesisBatchInfo" not in record
    info = record["DDBStreamBatchInfo"]
    assert info["approximateArrivalOfFirstRecord"] == "2019-11-14T00:38:04Z"
    assert info["approximateArrivalOfLastRecord"] == "2019-11-14T00:38:05Z"
    assert record["timestamp"] == "2019-11-14T00:38:06.021Z"  # the record's own: ms


def test_record_age_exceeded_has_no_response_context() -> None:
    record = kinesis_record(condition=FailureCondition.RECORD_AGE_EXCEEDED)
    assert "responseContext" not in record
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"


def test_partial_response_record_has_null_function_error() -> None:
    record = kinesis_record(response_context=ResponseContext(function_error=None))
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": None,
    }


def test_missing_request_id_gets_a_uuid() -> None:
    record = kinesis_record(request_id=None)
    assert re.fullmatch(r"[0-9a-f-]{36}", record["requestContext"]["requestId"])


def test_stream_record_for_given_up_records() -> None:
    records = [("100", FIRST), ("101", 1573691885.0), ("102", LAST)]
    gave_up = GiveUp(
        records=records[1:],
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=3,
        response_context=ResponseContext(function_error=None),
        request_id="r-1",
    )
    record = stream_failure_record_for(
        gave_up,
        source="kinesis",
        function_arn=FUNCTION_ARN,
        shard_id="shardId-000000000001",
        stream_arn=STREAM_ARN,
        sequence_number=lambda r: r[0],
        arrival=lambda r: r[1],
        timestamp=NOW,
    )
    info = record["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == ("101", "102")
    assert info["batchSize"] == 2
    assert info["approximateArrivalOfFirstRecord"] == "2019-11-14T00:38:05.000Z"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responseContext"]["functionError"] is None


KAFKA_RECORD: dict[str, Any] = {
    "requestContext": {
        "requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
        "functionArn": FUNCTION_ARN,
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 1,
    },
    "responseContext": {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    },
    "version": "1.0",
    "timestamp": "2019-11-14T00:38:06.021Z",
    "KafkaBatchInfo": {
        "batchSize": 3,
        "eventSourceArn": None,
        "bootstrapServers": "b-1:9092,b-2:9092",
        "payloadSize": 2039,
        "recordsInfo": {
            "Topic-0": {
                "firstRecordOffset": "15",
                "lastRecordOffset": "16",
                "firstRecordTimestamp": "2019-11-14T00:38:04.835Z",
                "lastRecordTimestamp": "2019-11-14T00:38:05.580Z",
            },
            "Topic-1": {
                "firstRecordOffset": "7",
                "lastRecordOffset": "7",
                "firstRecordTimestamp": "2019-11-14T00:38:05.580Z",
                "lastRecordTimestamp": "2019-11-14T00:38:05.580Z",
            },
        },
    },
}

KAFKA_RECORDS = [
    ("Topic-0", 15, 1573691884835),
    ("Topic-1", 7, 1573691885580),
    ("Topic-0", 16, 1573691885580),
]


def kafka_given_up(condition: FailureCondition, context: ResponseContext | None) -> Any:
    return GiveUp(
        records=KAFKA_RECORDS,
        condition=condition,
        approximate_invoke_count=1,
        response_context=context,
        request_id="316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
    )


def kafka_record(condition: FailureCondition, context: ResponseContext | None) -> dict[str, Any]:
    return kafka_failure_record_for(
        kafka_given_up(condition, context),
        function_arn=FUNCTION_ARN,
        event_source_arn=None,
        bootstrap_servers="b-1:9092,b-2:9092",
        payload_size=2039,
        partition_key=lambda r: r[0],
        offset=lambda r: r[1],
        timestamp_ms=lambda r: r[2],
        timestamp=NOW,
    )


def test_kafka_record_matches_the_aws_sample() -> None:
    record = kafka_record(FailureCondition.RETRY_ATTEMPTS_EXHAUSTED, ResponseContext())
    assert record == KAFKA_RECORD


def test_kafka_payload_size_exceeded_has_null_response_context() -> None:
    record = kafka_failure_record(
        request_id="x",
        function_arn=FUNCTION_ARN,
        condition=FailureCondition.MAXIMUM_PAYLOAD_SIZE_EXCEEDED,
        approximate_invoke_count=0,
        response_context=None,
        event_source_arn="arn:aws:kafka:us-east-1:123456789012:cluster/c/abc",
        bootstrap_servers="b-1:9092",
        payload_size=7_000_000,
        batch_size=1,
        records_info={},
        timestamp=NOW,
    )
    assert "responseContext" in record
    assert record["responseContext"] is None
    assert record["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    assert record["KafkaBatchInfo"]["eventSourceArn"].startswith("arn:aws:kafka:")


def test_kafka_topic_record_and_payload_splice() -> None:
    record = kafka_topic_failure_record(
        request_id="e4b4",
        function_arn=FUNCTION_ARN,
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=3,
        response_context=ResponseContext(),
        event_source_arn=None,
        bootstrap_servers="b-1:9092",
        payload_size=1162,
        offset=100,
        timestamp_ms=1573755364835,
        timestamp=NOW,
    )
    payload = b'{"eventSource":"SelfManagedKafka","records":{"my-topic-0":[{"offset":100}]}}'
    body = json.loads(encode_failure_record(record, payload=payload))
    assert body["KafkaBatchInfo"]["recordInfo"] == {
        "offset": "100",
        "timestamp": "2019-11-14T18:16:04.835Z",
    }
    assert body["KafkaBatchInfo"]["batchSize"] == 1
    assert body["payload"]["records"]["my-topic-0"][0]["offset"] == 100
    assert encode_failure_record({}, payload=b"[]") == b'{"payload":[]}'


def test_timestamps() -> None:
    assert iso_millis(1573691884.835) == "2019-11-14T00:38:04.835Z"
    assert iso_millis(1573691884.9996) == "2019-11-14T00:38:05.000Z"
    assert iso_seconds(1573691884.999) == "2019-11-14T00:38:04Z"


def test_s3_key_layout() -> None:
    key = s3_object_key(
        mapping_uuid="a1b2", location="shardId-000000000001", when=NOW, unique="u-1"
    )
    assert key == "aws/lambda/a1b2/shardId-000000000001/2019/11/14/2019-11-14T00.38.06-u-1"
    assert re.fullmatch(
        r"aws/lambda/a1b2/orders-0/2019/11/14/2019-11-14T00\.38\.06-[0-9a-f-]{36}",
        s3_object_key(mapping_uuid="a1b2", location="orders-0", when=NOW),
    )


def test_destination_types() -> None:
    assert destination_type("arn:aws:sqs:us-east-1:123456789012:dlq") is DestinationType.SQS
    assert destination_type("arn:aws:sns:us-east-1:123456789012:t") is DestinationType.SNS
    assert destination_type("arn:aws:s3:::bucket") is DestinationType.S3
    assert destination_type("kafka://failed-records") is DestinationType.KAFKA
    for bad in ("arn:aws:lambda:us-east-1:1:function:f", "sqs://q", "kafka://", ""):
        with pytest.raises(ValueError):
            destination_type(bad)


# --- delivery against moto -------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def local_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in local_aws_environment(moto_url=moto.url, region=REGION).items():
        monkeypatch.setenv(name, value)


def make_clients(url: str) -> AwsClients:
    return AwsClients(
        region=REGION,
        endpoints={"Sqs": url, "Sns": url, "S3": url},
        max_attempts=1,
        connect_timeout=1.0,
        read_timeout=5.0,
    )


@pytest.fixture
async def clients(moto: MotoServer) -> AsyncIterator[AwsClients]:
    aws = make_clients(moto.url)
    yield aws
    await aws.close()


@pytest.fixture
def metrics() -> MappingMetrics:
    return MappingMetrics(
        Metrics(registry=CollectorRegistry()), mapping="orders", function="f", source="kinesis"
    )


def counter(metrics: MappingMetrics, name: str, **labels: str) -> float:
    value = metrics.metrics.registry.get_sample_value(name, {**metrics.labels, **labels})
    return 0.0 if value is None else value


def delivered(metrics: MappingMetrics, kind: str) -> float:
    return counter(metrics, "pumphouse_destination_deliveries_total", destination_type=kind)


def failed(metrics: MappingMetrics, kind: str) -> float:
    return counter(metrics, "pumphouse_destination_delivery_failures_total", destination_type=kind)


async def deliver_once(
    destination: FailureDestination,
    metrics: MappingMetrics,
    record: dict[str, Any],
    **options: Any,
) -> None:
    """One delivery attempt, counted as the dispatcher counts it (no retry)."""
    await deliver_with_retry(destination, record, stop=lambda: True, metrics=metrics, **options)


async def new_queue(clients: AwsClients, name: str) -> tuple[str, str]:
    sqs = await clients.client("sqs")
    url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, attrs["Attributes"]["QueueArn"]


async def receive_one(clients: AwsClients, url: str) -> dict[str, Any]:
    sqs = await clients.client("sqs")
    response = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=2)
    messages = response.get("Messages", [])
    assert len(messages) == 1
    body: dict[str, Any] = json.loads(messages[0]["Body"])
    return body


async def test_sqs_destination(clients: AwsClients, metrics: MappingMetrics) -> None:
    url, arn = await new_queue(clients, "dlq-sqs")
    destination = make_destination(arn, clients=clients)
    assert destination.destination_type == "sqs"
    # The payload is for S3 only: SQS gets the record alone.
    await deliver_once(destination, metrics, KINESIS_RECORD, payload=b'{"Records":[]}')
    assert await receive_one(clients, url) == KINESIS_RECORD
    assert delivered(metrics, "sqs") == 1
    assert failed(metrics, "sqs") == 0
    assert counter(metrics, "pumphouse_on_failure_delivered_events_total") == 500


async def test_sqs_destination_kafka_record(clients: AwsClients, metrics: MappingMetrics) -> None:
    url, arn = await new_queue(clients, "dlq-kafka")
    record = kafka_record(FailureCondition.RECORD_AGE_EXCEEDED, None)
    await deliver_once(make_destination(arn, clients=clients), metrics, record)
    received = await receive_one(clients, url)
    assert received == record
    assert received["responseContext"] is None
    assert counter(metrics, "pumphouse_on_failure_delivered_events_total") == 3


async def test_sns_destination(clients: AwsClients, metrics: MappingMetrics) -> None:
    sns = await clients.client("sns")
    topic_arn = (await sns.create_topic(Name="failures"))["TopicArn"]
    url, queue_arn = await new_queue(clients, "sns-subscriber")
    await sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    destination = make_destination(topic_arn, clients=clients)
    assert destination.destination_type == "sns"
    await deliver_once(destination, metrics, KINESIS_RECORD)
    envelope = await receive_one(clients, url)
    assert envelope["TopicArn"] == topic_arn
    assert json.loads(envelope["Message"]) == KINESIS_RECORD
    assert delivered(metrics, "sns") == 1


async def test_s3_destination(clients: AwsClients, metrics: MappingMetrics) -> None:
    s3 = await clients.client("s3")
    await s3.create_bucket(Bucket="failures")
    event = assemble_event(
        [b'{"kinesis":{"sequenceNumber":"1","data":"aGk="}}', b'{"kinesis":{"sequenceNumber":"2"}}']
    )
    destination = make_destination("arn:aws:s3:::failures", clients=clients)
    assert destination.destination_type == "s3"
    await deliver_once(
        destination,
        metrics,
        KINESIS_RECORD,
        payload=event,
        s3_key_parts=S3KeyParts(mapping_uuid="9f1c", location="shardId-000000000001", when=NOW),
    )
    listing = await s3.list_objects_v2(Bucket="failures", Prefix="aws/lambda/")
    keys = [obj["Key"] for obj in listing.get("Contents", [])]
    assert len(keys) == 1
    assert re.fullmatch(
        r"aws/lambda/9f1c/shardId-000000000001/2019/11/14/"
        r"2019-11-14T00\.38\.06-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
        keys[0],
    )
    obj = await s3.get_object(Bucket="failures", Key=keys[0])
    async with obj["Body"] as stream:
        body = json.loads(await stream.read())
    # As AWS writes it: payload an escaped JSON string, every object's keys sorted.
    assert body["payload"] == event.decode()
    assert json.loads(body["payload"]) == json.loads(event)
    assert {k: v for k, v in body.items() if k != "payload"} == KINESIS_RECORD
    assert list(body) == [
        "KinesisBatchInfo", "payload", "requestContext", "responseContext", "timestamp", "version"
    ]
    for part in ("KinesisBatchInfo", "requestContext", "responseContext"):
        assert list(body[part]) == sorted(body[part]), part
    assert delivered(metrics, "s3") == 1


async def test_s3_destination_needs_key_parts(clients: AwsClients, metrics: MappingMetrics) -> None:
    destination = make_destination("arn:aws:s3:::failures", clients=clients)
    with pytest.raises(ValueError, match="s3_key_parts"):  # a bug, not an outage
        await destination.deliver(KINESIS_RECORD)
    assert failed(metrics, "s3") == 0


async def test_missing_queue_raises_and_counts(
    clients: AwsClients, metrics: MappingMetrics
) -> None:
    arn = "arn:aws:sqs:us-east-1:123456789012:no-such-queue"
    destination = make_destination(arn, clients=clients)
    with pytest.raises(DestinationError, match="no-such-queue"):
        await deliver_once(destination, metrics, KINESIS_RECORD)
    assert failed(metrics, "sqs") == 1
    assert delivered(metrics, "sqs") == 0
    assert counter(metrics, "pumphouse_on_failure_delivered_events_total") == 0


async def test_unreachable_server_raises_and_counts(metrics: MappingMetrics) -> None:
    aws = make_clients(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        destination = make_destination("arn:aws:sns:us-east-1:123456789012:failures", clients=aws)
        with pytest.raises(DestinationError, match="failures"):
            await deliver_once(destination, metrics, KINESIS_RECORD)
        assert failed(metrics, "sns") == 1
    finally:
        await aws.close()


async def test_deliver_with_retry_succeeds_once_the_queue_exists(
    clients: AwsClients, metrics: MappingMetrics
) -> None:
    name = "created-late"
    arn = f"arn:aws:sqs:us-east-1:123456789012:{name}"
    destination = make_destination(arn, clients=clients)
    waits: list[float] = []
    created: dict[str, str] = {}

    async def sleep(delay: float) -> None:
        waits.append(delay)
        if len(waits) == 2:  # an operator creates the queue while we back off
            created["url"], _ = await new_queue(clients, name)

    attempts = await deliver_with_retry(
        destination,
        KINESIS_RECORD,
        stop=lambda: False,
        sleep=sleep,
        base_delay=0.1,
        max_delay=0.15,
        jitter=lambda: 1.0,
        metrics=metrics,
    )
    assert attempts == 3
    assert waits == [0.1, 0.15]  # capped back-off
    assert await receive_one(clients, created["url"]) == KINESIS_RECORD
    assert failed(metrics, "sqs") == 2
    assert delivered(metrics, "sqs") == 1


async def test_deliver_with_retry_raises_when_stopping(
    clients: AwsClients, metrics: MappingMetrics
) -> None:
    destination = make_destination("arn:aws:sqs:us-east-1:123456789012:never", clients=clients)
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)

    stopping = {"now": False}

    def stop() -> bool:
        return stopping["now"]

    async def sleep_then_stop(delay: float) -> None:
        await sleep(delay)
        stopping["now"] = True

    with pytest.raises(DestinationError):
        await deliver_with_retry(
            destination,
            KINESIS_RECORD,
            stop=stop,
            sleep=sleep_then_stop,
            base_delay=0.01,
            metrics=metrics,
        )
    assert len(waits) == 1
    assert failed(metrics, "sqs") == 1


class FakeKafkaDestination:
    """What the Kafka poller plugs in for kafka://topic (no broker needed here)."""

    destination_type = "kafka"

    def __init__(self, topic: str) -> None:
        self.target = f"kafka://{topic}"
        self.sent: list[tuple[bytes | None, bytes]] = []

    async def deliver(
        self,
        record: Any,
        *,
        payload: bytes | None = None,
        s3_key_parts: S3KeyParts | None = None,
        message_key: bytes | None = None,
    ) -> None:
        self.sent.append((message_key, encode_failure_record(record, payload=payload)))


async def test_kafka_destinations_plug_in(clients: AwsClients) -> None:
    made: list[FakeKafkaDestination] = []

    def factory(topic: str) -> FailureDestination:
        made.append(FakeKafkaDestination(topic))
        return made[-1]

    destination = make_destination("kafka://failed", clients=clients, kafka_factory=factory)
    assert destination.target == "kafka://failed"
    await deliver_with_retry(destination, {"a": 1}, stop=lambda: False, message_key=b"k")
    assert made[0].sent == [(b"k", b'{"a":1}')]
    with pytest.raises(ValueError, match="Kafka"):
        make_destination("kafka://failed", clients=clients)
