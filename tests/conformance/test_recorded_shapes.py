"""Recorded record shapes, rebuilt by pumphouse's one shape module (``pollers/shapes.py``)
from what the source clients return, and compared with what AWS delivered."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from conformance_support import params, same_keys

from pumphouse.pollers import shapes
from pumphouse.pollers.kafka_records import FragmentEncoder
from pumphouse.testing import sample_event

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:q"


def _sqs_message(attributes: dict[str, Any]) -> dict[str, Any]:
    """A message as botocore's ReceiveMessage returns it (AttributeNames All)."""
    message: dict[str, Any] = {
        "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "ReceiptHandle": "AQEBwJnK",
        "MD5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "Body": '{"destination": "q", "fail_attempts": 0}',
        "Attributes": {
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
        },
    }
    if attributes:
        message["MessageAttributes"] = attributes
    return message


@pytest.mark.parametrize("case", params("shape", source="sqs"))
def test_sqs_record(case: dict[str, Any]) -> None:
    setup, facts = case["setup"], case["facts"]
    record = shapes.sqs_record(
        _sqs_message(setup["message_attributes"]),
        queue_arn=QUEUE_ARN,
        region="us-east-1",
        batching_window=setup["batching_window"],
    )
    if "record_keys" in facts:
        same_keys(facts["record_keys"], list(record))
    for key_set in facts.get("record_key_sets", []):
        assert sorted(record) == sorted(key_set)
    if "attribute_keys" in facts:
        same_keys(facts["attribute_keys"], list(record["attributes"]))
    if "messageAttributes" in facts:
        assert record["messageAttributes"] == facts["messageAttributes"]
    if "md5OfMessageAttributes" in facts:
        recorded = facts["md5OfMessageAttributes"]
        # batch-size scenarios list the distinct values, JSON-encoded
        expected = json.loads(recorded[0]) if isinstance(recorded, list) else recorded
        assert record["md5OfMessageAttributes"] == expected
    if "eventSource" in facts:
        assert record["eventSource"] == facts["eventSource"]


@pytest.mark.parametrize("case", params("shape", source="kinesis"))
def test_kinesis_record(case: dict[str, Any]) -> None:
    facts = case["facts"]
    record = shapes.kinesis_record(
        {
            "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "ApproximateArrivalTimestamp": datetime(2018, 12, 17, 22, 10, 50, 987000, UTC),
            "Data": b'{"k": 1}',
            "PartitionKey": "test_0",
            # What GetRecords says for an unencrypted stream on the servers we run on.
            "EncryptionType": case["setup"]["encryption_type_from_server"],
        },
        shard_id="shardId-000000000000",
        stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
        region="us-east-1",
        invoke_identity_arn="arn:aws:iam::123456789012:role/r",
    )
    for order in facts["record_key_orders"]:
        same_keys(order, list(record))
    for order in facts["kinesis_key_orders"]:
        same_keys(order, list(record["kinesis"]))
    assert ("encryptionType" in record["kinesis"]) is facts["encryptionType_present"]
    assert [record["eventVersion"]] == facts["eventVersion"]
    assert [record["kinesis"]["kinesisSchemaVersion"]] == facts["kinesisSchemaVersion"]
    assert [record["eventName"]] == facts["eventName"]
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)


def test_dynamodb_insert_record() -> None:
    (case,) = params("shape", prefix="dynamodb.record.insert_new_image")
    setup, facts = case.values[0]["setup"], case.values[0]["facts"]
    binary = base64.b64decode(setup["new_image"]["binary_key"]["B"])
    record = shapes.dynamodb_record(
        {
            "eventID": "f07f8ca4b0b26cb9c4e5e77e69f274ee",
            "eventName": setup["event_name"],
            "eventVersion": "1.0",  # moto's; AWS delivers 1.1
            "dynamodb": {
                "ApproximateCreationDateTime": datetime(2023, 9, 6, 10, 45, 55, tzinfo=UTC),
                "Keys": setup["keys"],
                "NewImage": {**setup["new_image"], "binary_key": {"B": binary}},
                "SequenceNumber": "111",
                "SizeBytes": 70,
                "StreamViewType": setup["stream_view_type"],
            },
        },
        stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2016-12-01T00:00:00.000",
        region="us-east-1",
    )
    same_keys(facts["record_keys"], list(record))
    same_keys(facts["dynamodb_keys"], list(record["dynamodb"]))
    assert record["eventVersion"] == facts["eventVersion"]
    assert record["dynamodb"]["NewImage"]["binary_key"] == facts["binary_value"]


def test_dynamodb_creation_time_is_a_float() -> None:
    (case,) = params("shape", prefix="dynamodb.sample.creation_time_float")
    facts = case.values[0]["facts"]
    created = datetime.fromtimestamp(case.values[0]["setup"]["created"], UTC)
    record = shapes.dynamodb_record(
        {"eventID": "1", "eventName": "INSERT", "dynamodb": {"ApproximateCreationDateTime": created}},
        stream_arn="arn",
        region="us-east-1",
    )
    value = record["dynamodb"]["ApproximateCreationDateTime"]
    assert isinstance(value, float)
    assert orjson.dumps(value).decode() == facts["value_json"]
    sample = sample_event("dynamodb")["Records"][0]["dynamodb"]["ApproximateCreationDateTime"]
    assert isinstance(sample, float)


@pytest.mark.parametrize("case", params("shape", prefix="kafka.headers"))
def test_kafka_header_bytes_are_signed(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["setup"]["header_bytes_hex"])
    expected = [{"headerKey": case["facts"]["headerKey"]}]
    record = shapes.kafka_record(
        topic="t", partition=0, offset=1, timestamp_ms=1, timestamp_type=0,
        key=None, value=b"v", headers=[("headerKey", data)],
    )
    assert record["headers"] == expected

    class Message:
        topic, partition, offset, timestamp, timestamp_type = "t", 0, 1, 1, 0
        key, value, headers = None, b"v", (("headerKey", data),)

    assert orjson.loads(FragmentEncoder("t", 0).encode(Message()))["headers"] == expected


@pytest.mark.parametrize("case", params("shape", prefix="kafka.event"))
def test_kafka_event(case: dict[str, Any]) -> None:
    setup, facts = case["setup"], case["facts"]
    arn = "arn:aws:kafka:us-east-1:123456789012:cluster/c/x" if setup["event_source"] == "aws:kafka" else None
    event = sample_event(
        "kafka", topic=setup["topic"], partition=setup["partition"],
        event_source=setup["event_source"], event_source_arn=arn,
    )
    same_keys(facts["event_keys"], list(event))
    assert list(event["records"]) == [facts["partition_key"]]
    record = event["records"][facts["partition_key"]][0]
    same_keys(facts["record_keys"], list(record))
    assert record["timestampType"] == facts["timestampType"]
