"""Recorded scenarios that involve the source (deletes, redelivery, the queue's DLQ,
checkpoints, destinations), run end to end: the real Service against moto and
kinesis-mock, with handlers that behave like the recorded ones
(``tests/handlers/conformance``), and AWS's recorded facts as the expected outcome."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conformance_support import scenario
from handlers.streams import support as s

from pumphouse.config import parse_config
from pumphouse.devstack import KinesisMock, MotoServer
from pumphouse.pollers.base import MappingContext
from pumphouse.pollers.sqs import SqsPoller
from pumphouse.service import PollerFactory, Service, poller_factory
from pumphouse.telemetry.metrics import Metrics

pytestmark = pytest.mark.slow

HANDLERS = Path(__file__).resolve().parent.parent / "handlers" / "conformance"


def _function(handler: str, record_file: Path, *, timeout: int = 30, **env: str) -> dict[str, Any]:
    return {
        "Handler": f"conformance_handlers.{handler}",
        "CodeUri": str(HANDLERS),
        "Timeout": timeout,
        "MemorySize": 512,
        "Environment": {"Variables": {"RECORD_FILE": str(record_file), **env}},
    }


def _config(
    tmp_path: Path,
    *,
    function: dict[str, Any],
    mapping: dict[str, Any],
    moto: MotoServer,
    kinesis: KinesisMock | None = None,
) -> str:
    return s.config_yaml(
        settings=s.settings(
            state_store=f"sqlite:///{tmp_path}/state.db",
            moto_url=moto.url,
            kinesis_url=kinesis.url if kinesis else None,
        ),
        functions={"f": function},
        mappings=[{"FunctionName": "f", **mapping}],
    )


async def _queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    reply = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(url), str(reply["Attributes"]["QueueArn"])


async def _counts(sqs: Any, url: str) -> tuple[int, int]:
    reply = await sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes = reply["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def _one_receive_loop(source: str) -> PollerFactory:
    """SQS with one receive loop: moto's SQS is not thread-safe, and two receives racing
    on one queue now and then both get the same message — a duplicate SQS allows, but
    one that would blur the recorded delivery counts."""
    if source != "sqs":
        return poller_factory(source)

    def build(ctx: MappingContext) -> SqsPoller:
        return SqsPoller(ctx, initial_pollers=1, max_pollers=1)

    return build


@contextlib.asynccontextmanager
async def _running(config_text: str) -> AsyncIterator[Service]:
    service = Service(
        parse_config(config_text, base_dir=HANDLERS), metrics=Metrics(), factory=_one_receive_loop
    )
    await service.start()
    try:
        yield service
    finally:
        service.stopping.set()
        await service.shutdown()


def _invocations(record_file: Path) -> list[dict[str, Any]]:
    return s.read_lines(record_file)


# --- SQS ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario_id", ["sqs.filter.and", "sqs.filter.numeric-range", "sqs.filter.valid-json-filter"])
async def test_sqs_filter_delivers_the_match_and_deletes_the_rest(
    scenario_id: str, moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    case = scenario(scenario_id)
    setup, facts = case["setup"], case["facts"]
    record_file = tmp_path / "records.jsonl"
    async with s.client("sqs", moto_server.url) as sqs:
        url, arn = await _queue(sqs, unique_name, VisibilityTimeout="30")
        for body in setup["bodies"]:
            await sqs.send_message(QueueUrl=url, MessageBody=body)
        config = _config(
            tmp_path,
            function=_function("sqs_fail_attempts", record_file),
            mapping={
                "EventSourceArn": arn,
                "MaximumBatchingWindowInSeconds": setup["batching_window"],
                "FilterCriteria": {"Filters": [{"Pattern": json.dumps(setup["pattern"])}]},
            },
            moto=moto_server,
        )
        async with _running(config):
            await s.wait_for(lambda: len(_invocations(record_file)) >= 1, what="the invocation")

            async def empty() -> bool:
                return await _counts(sqs, url) == (0, 0)

            await s.wait_for(empty, what="both messages deleted")
    invocations = _invocations(record_file)
    assert len(invocations) == facts["invocations"]
    bodies = [json.loads(r["body"]) for r in invocations[0]["records"]]
    assert bodies == facts["delivered_bodies"]
    assert facts["queue_empty_after"]


async def test_sqs_batch_size_15_with_a_window_delivers_all_with_null_md5(
    moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    case = scenario("sqs.batch_size_15")
    setup, facts = case["setup"], case["facts"]
    record_file = tmp_path / "records.jsonl"
    async with s.client("sqs", moto_server.url) as sqs:
        url, arn = await _queue(sqs, unique_name, VisibilityTimeout="30")
        for i in range(setup["messages"]):
            await sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"i": i}))
        config = _config(
            tmp_path,
            function=_function("sqs_fail_attempts", record_file),
            mapping={
                "EventSourceArn": arn,
                "BatchSize": setup["batch_size"],
                "MaximumBatchingWindowInSeconds": setup["batching_window"],
            },
            moto=moto_server,
        )
        async with _running(config):

            def delivered() -> int:
                return sum(len(line["records"]) for line in _invocations(record_file))

            await s.wait_for(lambda: delivered() >= 15, within=40, what="15 messages")

            async def empty() -> bool:
                return await _counts(sqs, url) == (0, 0)

            await s.wait_for(empty, what="all deleted")
    records = [r for line in _invocations(record_file) for r in line["records"]]
    assert len(records) == facts["records_delivered"]
    assert sorted(json.loads(r["body"])["i"] for r in records) == list(range(15))
    for record in records:
        assert sorted(record) in [list(keys) for keys in facts["record_key_sets"]]
        assert record["md5OfMessageAttributes"] is None  # AWS: null with a window


async def test_sqs_fifo_partial_batch_response_deletes_retries_and_dead_letters(
    moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    case = scenario("sqs.report_batch_item_failures_fifo")
    setup, facts = case["setup"], case["facts"]
    record_file = tmp_path / "records.jsonl"
    async with s.client("sqs", moto_server.url) as sqs:
        dlq_url, dlq_arn = await _queue(sqs, f"{unique_name}-dlq.fifo", FifoQueue="true")
        url, arn = await _queue(
            sqs,
            f"{unique_name}.fifo",
            FifoQueue="true",
            VisibilityTimeout="2",
            RedrivePolicy=json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": setup["max_receive_count"]}
            ),
        )
        await sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {
                    "Id": f"message-{n}",
                    "MessageBody": json.dumps({"message": n, "fail_attempts": fails}),
                    "MessageGroupId": "1",
                    "MessageDeduplicationId": f"dedup-{n}",
                }
                for n, fails in enumerate(setup["fail_attempts"], start=1)
            ],
        )
        config = _config(
            tmp_path,
            function=_function("sqs_fail_attempts", record_file, timeout=2, REPORT="1"),
            mapping={
                "EventSourceArn": arn,
                "BatchSize": setup["batch_size"],
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            },
            moto=moto_server,
        )
        async with _running(config):

            async def settled() -> bool:
                return await _counts(sqs, dlq_url) == (1, 0) and await _counts(sqs, url) == (0, 0)

            await s.wait_for(settled, within=40, what="message 4 in the DLQ, the queue empty")
        dead = (await sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10))["Messages"]
    invocations = _invocations(record_file)
    numbers = [[json.loads(r["body"])["message"] for r in line["records"]] for line in invocations]
    assert numbers == facts["invocations"]
    counts = [[r["attributes"]["ApproximateReceiveCount"] for r in line["records"]] for line in invocations]
    assert counts == facts["receive_counts"]
    by_id = {r["messageId"]: json.loads(r["body"])["message"] for r in invocations[0]["records"]}
    assert [[by_id[m] for m in line["failed"]] for line in invocations] == facts["reported"]
    assert [json.loads(m["Body"])["message"] for m in dead] == facts["dead_lettered"]
    assert not facts["third_invocation"] and len(invocations) == 2


@pytest.mark.parametrize("scenario_id", ["sqs.retry_after_visibility_timeout", "sqs.redrive_policy"])
async def test_sqs_failure_comes_back_after_the_visibility_timeout(
    scenario_id: str, moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    case = scenario(scenario_id)
    setup, facts = case["setup"], case["facts"]
    record_file = tmp_path / "records.jsonl"
    body = json.dumps({"destination": "q", "fail_attempts": setup["fail_attempts"]})
    async with s.client("sqs", moto_server.url) as sqs:
        dlq_url, dlq_arn = await _queue(sqs, f"{unique_name}-dlq")
        url, arn = await _queue(
            sqs,
            unique_name,
            VisibilityTimeout="2",
            RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        )
        await sqs.send_message(QueueUrl=url, MessageBody=body)
        config = _config(
            tmp_path,
            function=_function("sqs_fail_attempts", record_file, timeout=2),
            mapping={"EventSourceArn": arn, "BatchSize": 1},
            moto=moto_server,
        )
        dead_expected = facts.get("dead_lettered_bodies", 0)
        async with _running(config):

            async def settled() -> bool:
                return (
                    await _counts(sqs, url) == (0, 0)
                    and (await _counts(sqs, dlq_url))[0] == dead_expected
                )

            await s.wait_for(settled, within=40, what="the message deleted or dead-lettered")
        dead = (await sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)).get(
            "Messages", []
        )
    invocations = _invocations(record_file)
    counts = [line["records"][0]["attributes"]["ApproximateReceiveCount"] for line in invocations]
    assert counts == facts["receive_counts"]
    assert [m["Body"] for m in dead] == [body] * dead_expected


async def test_sqs_function_error_with_partial_responses_fails_the_whole_batch(
    moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    """The function raises (one body is not JSON) although the mapping reports batch item
    failures: neither message is deleted, and both reach the queue's DLQ."""
    case = scenario("sqs.rbif_function_error")
    setup, facts = case["setup"], case["facts"]
    record_file = tmp_path / "records.jsonl"
    async with s.client("sqs", moto_server.url) as sqs:
        dlq_url, dlq_arn = await _queue(sqs, f"{unique_name}-dlq")
        url, arn = await _queue(
            sqs,
            unique_name,
            VisibilityTimeout="2",
            RedrivePolicy=json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": setup["max_receive_count"]}
            ),
        )
        await sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(setup["bodies"])],
        )
        config = _config(
            tmp_path,
            function=_function("sqs_fail_attempts", record_file, timeout=2),
            mapping={
                "EventSourceArn": arn,
                "BatchSize": setup["batch_size"],
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            },
            moto=moto_server,
        )
        async with _running(config):

            async def settled() -> bool:
                return await _counts(sqs, dlq_url) == (2, 0) and await _counts(sqs, url) == (0, 0)

            await s.wait_for(settled, within=40, what="both messages in the DLQ")
        dead = (await sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10))["Messages"]
    expected = [b if isinstance(b, str) else json.dumps(b) for b in facts["dead_lettered"]]
    assert sorted(m["Body"] for m in dead) == sorted(expected)
    delivered = [r["body"] for line in _invocations(record_file) for r in line["records"]]
    assert delivered.count(setup["bodies"][1]) == setup["max_receive_count"]


# --- Kinesis and DynamoDB Streams ---------------------------------------------------


async def _put_kinesis(kinesis: Any, name: str, count: int, fail: set[int]) -> str:
    arn = await s.create_stream(kinesis, name, 1)
    await s.put_records(
        kinesis, name, [(f"test_{i}", {"i": i, "should_fail": i in fail}) for i in range(count)]
    )
    return arn


async def _put_dynamodb(ddb: Any, name: str, count: int, fail: set[int]) -> str:
    await ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "my_partition_key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "my_partition_key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    arn = str((await ddb.describe_table(TableName=name))["Table"]["LatestStreamArn"])
    for i in range(count):
        await ddb.put_item(
            TableName=name,
            Item={"my_partition_key": {"S": f"testId{i}"}, "should_fail": {"BOOL": i in fail}},
        )
    return arn


@pytest.mark.parametrize(
    "scenario_id",
    ["kinesis.report_batch_item_failures_progress", "dynamodb.report_batch_item_failures_progress"],
)
async def test_partial_response_after_progress_has_a_fresh_retry_budget(
    scenario_id: str,
    kinesis_mock: KinesisMock,
    moto_server: MotoServer,
    tmp_path: Path,
    unique_name: str,
) -> None:
    case = scenario(scenario_id)
    setup, facts = case["setup"], case["facts"]
    record_file = tmp_path / "records.jsonl"
    kinesis_source = scenario_id.startswith("kinesis")
    async with (
        s.client("kinesis", kinesis_mock.url) as kinesis,
        s.client("dynamodb", moto_server.url) as ddb,
        s.client("sqs", moto_server.url) as sqs,
    ):
        queue_url, queue_arn = await _queue(sqs, f"{unique_name}-failures")
        fail = set(setup["report"])
        if kinesis_source:
            arn = await _put_kinesis(kinesis, unique_name, setup["records"], fail)
        else:
            arn = await _put_dynamodb(ddb, unique_name, setup["records"], fail)
        config = _config(
            tmp_path,
            function=_function("stream_report_should_fail", record_file),
            mapping={
                "EventSourceArn": arn,
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": setup["batch_size"],
                "MaximumBatchingWindowInSeconds": 1,
                "MaximumRetryAttempts": setup["max_retry_attempts"],
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
            },
            moto=moto_server,
            kinesis=kinesis_mock,
        )
        async with _running(config):
            (failure,) = await s.drain_queue(sqs, queue_url, expect=1, within=40)
    runs = [line["indices"] for line in _invocations(record_file)]
    deliveries = [sum(run.count(i) for run in runs) for i in range(setup["records"])]
    assert deliveries == facts["deliveries_per_record"]
    recorded = facts["failure"]
    assert list(failure) == recorded["keys"]
    assert failure["requestContext"]["condition"] == recorded["condition"]
    assert failure["requestContext"]["approximateInvokeCount"] == recorded["approximateInvokeCount"]
    assert failure["responseContext"] == recorded["responseContext"]
    assert failure[recorded["batch_info_key"]]["batchSize"] == recorded["batchSize"]


@pytest.mark.parametrize("scenario_id", ["kinesis.on_failure_s3", "dynamodb.on_failure_s3"])
async def test_s3_failure_object_is_written_as_aws_writes_it(
    scenario_id: str,
    kinesis_mock: KinesisMock,
    moto_server: MotoServer,
    tmp_path: Path,
    unique_name: str,
) -> None:
    case = scenario(scenario_id)
    setup, facts = case["setup"], case["facts"]
    record_file = tmp_path / "records.jsonl"
    bucket = unique_name.lower().replace("_", "-")[:60]
    async with (
        s.client("kinesis", kinesis_mock.url) as kinesis,
        s.client("dynamodb", moto_server.url) as ddb,
        s.client("s3", moto_server.url) as s3,
    ):
        await s3.create_bucket(Bucket=bucket)
        if scenario_id.startswith("kinesis"):
            arn = await _put_kinesis(kinesis, unique_name, setup["records"], {0})
        else:
            arn = await _put_dynamodb(ddb, unique_name, setup["records"], {0})
        config = _config(
            tmp_path,
            function=_function("stream_raise", record_file),
            mapping={
                "EventSourceArn": arn,
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": setup["batch_size"],
                "MaximumBatchingWindowInSeconds": 1,
                "MaximumRetryAttempts": setup["max_retry_attempts"],
                "DestinationConfig": {"OnFailure": {"Destination": f"arn:aws:s3:::{bucket}"}},
            },
            moto=moto_server,
            kinesis=kinesis_mock,
        )

        async def keys() -> list[str]:
            listing = await s3.list_objects_v2(Bucket=bucket)
            return [o["Key"] for o in listing.get("Contents", [])]

        async def one_object() -> bool:
            return len(await keys()) == 1

        async with _running(config):
            await s.wait_for(one_object, within=40, what="the S3 failure object")
        (key,) = await keys()
        raw = await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read()
    body = json.loads(raw)
    assert re.fullmatch(
        r"aws/lambda/[0-9a-f-]{36}/shardId-[^/]+/\d{4}/\d\d/\d\d/\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d-[0-9a-f-]{36}",
        key,
    )
    assert list(body) == facts["keys"]
    assert list(body["requestContext"]) == facts["requestContext_keys"]
    assert body["responseContext"] == facts["responseContext"]
    assert list(body["responseContext"]) == list(facts["responseContext"])
    assert list(body[facts["batch_info_key"]]) == facts["batch_info_keys"]
    assert body["requestContext"]["approximateInvokeCount"] == facts["approximateInvokeCount"]
    assert isinstance(body["payload"], str)
    payload = json.loads(body["payload"])
    assert list(payload) == facts["payload_keys"]
    assert list(payload["Records"][0]) == facts["payload_record_keys"]
    assert len(_invocations(record_file)) == facts["approximateInvokeCount"]
