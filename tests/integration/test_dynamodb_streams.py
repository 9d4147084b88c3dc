"""DynamoDB Streams on moto: record shapes per StreamViewType, filters on typed values,
on-failure records with ``DDBStreamBatchInfo``, and a Powertools handler."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from handlers.streams import support as s

from pumphouse.devstack import MotoServer

pytestmark = pytest.mark.slow

VIEW_TYPES = ["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"]


async def _table(ddb: Any, name: str, view_type: str = "NEW_AND_OLD_IMAGES") -> str:
    await ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
    )
    table = (await ddb.describe_table(TableName=name))["Table"]
    return str(table["LatestStreamArn"])


def _settings(tmp_path: Path, moto: MotoServer) -> dict[str, Any]:
    return s.settings(state_store=f"sqlite:///{tmp_path}/state.db", moto_url=moto.url)


async def test_insert_modify_remove_with_the_images_of_each_view_type(
    moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with s.client("dynamodb", moto_server.url) as ddb:
        arns = {
            view: await _table(ddb, f"{unique_name}-{n}", view)
            for n, view in enumerate(VIEW_TYPES)
        }
        config = s.config_yaml(
            settings=_settings(tmp_path, moto_server),
            functions={"f": s.function("recorder.handler", record_file)},
            mappings=[
                {"FunctionName": "f", "EventSourceArn": arn, "StartingPosition": "TRIM_HORIZON"}
                for arn in arns.values()
            ],
        )
        async with s.running(config):
            for n in range(len(VIEW_TYPES)):
                table = f"{unique_name}-{n}"
                await ddb.put_item(TableName=table, Item={"id": {"S": "a"}, "n": {"N": "1"}})
                await ddb.update_item(
                    TableName=table,
                    Key={"id": {"S": "a"}},
                    UpdateExpression="SET n = :n",
                    ExpressionAttributeValues={":n": {"N": "2"}},
                )
                await ddb.delete_item(TableName=table, Key={"id": {"S": "a"}})
            await s.wait_for(
                lambda: len(s.delivered(record_file)) >= 3 * len(VIEW_TYPES), what="12 records"
            )
    records: dict[str, list[dict[str, Any]]] = {}
    for item in s.delivered(record_file):
        records.setdefault(item["record"]["eventSourceARN"], []).append(item["record"])
    keys = {"id": {"S": "a"}}
    v1 = {"id": {"S": "a"}, "n": {"N": "1"}}
    v2 = {"id": {"S": "a"}, "n": {"N": "2"}}
    images = {  # (NewImage, OldImage) per event, by view type
        "NEW_AND_OLD_IMAGES": [(v1, None), (v2, v1), (None, v2)],
        "NEW_IMAGE": [(v1, None), (v2, None), (None, None)],
        "OLD_IMAGE": [(None, None), (None, v1), (None, v2)],
        "KEYS_ONLY": [(None, None), (None, None), (None, None)],
    }
    for view, arn in arns.items():
        got = records[arn]
        assert [r["eventName"] for r in got] == ["INSERT", "MODIFY", "REMOVE"], view
        for record, (new, old) in zip(got, images[view], strict=True):
            assert record["eventVersion"] == "1.1"
            assert record["eventSource"] == "aws:dynamodb"
            assert record["awsRegion"] == "us-east-1"
            assert re.fullmatch(r"[0-9a-f]{32}", record["eventID"])
            change = record["dynamodb"]
            assert change["Keys"] == keys
            assert change["StreamViewType"] == view
            assert isinstance(change["ApproximateCreationDateTime"], int | float)
            assert isinstance(change["SizeBytes"], int)
            assert change.get("NewImage") == new, (view, record["eventName"])
            assert change.get("OldImage") == old, (view, record["eventName"])
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in got]
        assert seqs == sorted(seqs)


async def test_filters_on_typed_values_and_ddb_failure_records(
    moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with (
        s.client("dynamodb", moto_server.url) as ddb,
        s.client("sqs", moto_server.url) as sqs,
    ):
        arn = await _table(ddb, unique_name)
        queue_url, queue_arn = await s.create_queue(sqs, f"{unique_name}-dlq")
        items = [
            {"id": {"S": "a"}, "kind": {"S": "keep"}, "n": {"N": "1"}},
            {"id": {"S": "b"}, "kind": {"S": "drop"}, "n": {"N": "2"}},
            {"id": {"S": "c"}, "kind": {"S": "keep"}, "n": {"N": "3"}, "poison": {"BOOL": True}},
            {"id": {"S": "d"}, "kind": {"S": "other"}, "n": {"N": "150"}},
            {"id": {"S": "e"}, "kind": {"S": "keep"}, "n": {"N": "5"}},
        ]
        for item in items:
            await ddb.put_item(TableName=unique_name, Item=item)
        patterns = [
            {"dynamodb": {"NewImage": {"kind": {"S": ["keep"]}}}},
            {"dynamodb": {"NewImage": {"n": {"N": ["150"]}}}, "eventName": ["INSERT"]},
        ]
        config = s.config_yaml(
            settings=_settings(tmp_path, moto_server),
            functions={"f": s.function("recorder.handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 1,
                    "MaximumRetryAttempts": 0,
                    "FilterCriteria": {"Filters": [{"Pattern": json.dumps(p)} for p in patterns]},
                    "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
                }
            ],
        )
        async with s.running(config) as service:
            failures = await s.drain_queue(sqs, queue_url, expect=1)
            await s.wait_for(
                lambda: "e" in _ids(s.delivered(record_file)), what="the last kept record"
            )
            filtered = s.metric(service, "pumphouse_filtered_out_events_total")
    delivered = s.delivered(record_file)
    assert _ids(delivered) == ["a", "c", "d", "e"], "b matched no filter"
    assert filtered == 1
    poison = next(x for x in delivered if x["poison"])
    assert len(failures) == 1
    failure = failures[0]
    assert "KinesisBatchInfo" not in failure
    info = failure["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == poison["seq"] == info["endSequenceNumber"]
    assert info["batchSize"] == 1
    assert info["streamArn"] == arn
    assert info["shardId"].startswith("shardId-")
    for key in ("approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info[key]), info[key]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 1
    assert failure["responseContext"]["functionError"] == "Unhandled"


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [x["record"]["dynamodb"]["Keys"]["id"]["S"] for x in items]


async def test_powertools_dynamodb_batch_processor_unmodified(
    moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with s.client("dynamodb", moto_server.url) as ddb:
        arn = await _table(ddb, unique_name)
        for name in ("a", "b", "poison", "c"):
            await ddb.put_item(TableName=unique_name, Item={"id": {"S": name}})
        config = s.config_yaml(
            settings=_settings(tmp_path, moto_server),
            functions={"f": s.function("powertools_handler.dynamodb_handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "MaximumRetryAttempts": 1,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                }
            ],
        )
        async with s.running(config) as service:
            await s.wait_for(
                lambda: s.metric(service, "pumphouse_dropped_events_total") >= 2,
                what="the failed remainder given up",
            )
    seen: dict[str, int] = {}
    for line in s.read_lines(record_file):
        seen[line["keys"]["id"]] = seen.get(line["keys"]["id"], 0) + 1
        assert line["event"] == "INSERT"
    # Powertools reported "poison": the records before it are done at once; the
    # remainder (poison, c) is a new batch (no retry spent), fails again, is retried
    # once and then given up — as AWS records it (docs/conformance.md).
    assert seen == {"a": 1, "b": 1, "poison": 3, "c": 3}


async def test_ddb_failure_record_through_an_sns_topic(
    moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with (
        s.client("dynamodb", moto_server.url) as ddb,
        s.client("sns", moto_server.url) as sns,
        s.client("sqs", moto_server.url) as sqs,
    ):
        arn = await _table(ddb, unique_name)
        topic_arn = (await sns.create_topic(Name=f"{unique_name}-failures"))["TopicArn"]
        queue_url, queue_arn = await s.create_queue(sqs, f"{unique_name}-sub")
        await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        await ddb.put_item(TableName=unique_name, Item={"id": {"S": "a"}})
        await ddb.put_item(TableName=unique_name, Item={"id": {"S": "p"}, "poison": {"BOOL": True}})
        await ddb.put_item(TableName=unique_name, Item={"id": {"S": "z"}})
        config = s.config_yaml(
            settings=_settings(tmp_path, moto_server),
            functions={"f": s.function("recorder.handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 3,
                    "BisectBatchOnFunctionError": True,
                    "MaximumRetryAttempts": 1,
                    "DestinationConfig": {"OnFailure": {"Destination": topic_arn}},
                }
            ],
        )
        async with s.running(config) as service:
            failures = await s.drain_queue(sqs, queue_url, expect=1)
            await s.wait_for(
                lambda: "z" in _succeeded_ids(record_file), what="the record after the poison"
            )
            delivered_metric = s.metric(
                service, "pumphouse_destination_deliveries_total", destination_type="sns"
            )
    poison = next(x for x in s.delivered(record_file) if x["poison"])
    assert _succeeded_ids(record_file) == ["a", "z"]
    assert len(failures) == 1, "one failure record, the poison item alone"
    failure = failures[0]
    assert set(failure) == {
        "requestContext", "responseContext", "version", "timestamp", "DDBStreamBatchInfo"
    }
    info = failure["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == poison["seq"] == info["endSequenceNumber"]
    assert (info["batchSize"], info["streamArn"]) == (1, arn)
    assert info["shardId"].startswith("shardId-")
    for key in ("approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"):
        # DynamoDB Streams: whole seconds, no milliseconds (Kinesis has them).
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info[key]), info[key]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", failure["timestamp"])
    assert failure["version"] == "1.0"
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["requestContext"]["functionArn"].endswith(":function:f")
    assert failure["responseContext"] == {
        "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"
    }
    assert delivered_metric == 1


def _succeeded_ids(record_file: Path) -> list[str]:
    return [
        item["record"]["dynamodb"]["Keys"]["id"]["S"]
        for line in s.read_lines(record_file)
        if not line["poison"]
        for item in line["items"]
    ]
