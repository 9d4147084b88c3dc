"""Lambda record shapes built from botocore / Kafka client data, and the sample events."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aws_lambda_powertools.utilities.data_classes import (
    DynamoDBStreamEvent,
    KafkaEvent,
    KinesisStreamEvent,
    SQSEvent,
)

from pumphouse.pollers import shapes
from pumphouse.testing import SOURCES, sample_event

QUEUE_ARN = "arn:aws:sqs:us-east-2:123456789012:my-queue"


def received_message(**extra: Any) -> dict[str, Any]:
    """A message as botocore's ReceiveMessage returns it (AttributeNames=All)."""
    return {
        "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "MD5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "Body": "Test message.",
        "Attributes": {
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
        },
        **extra,
    }


def test_sqs_record_matches_lambdas_sample() -> None:
    record = shapes.sqs_record(received_message(), queue_arn=QUEUE_ARN, region="us-east-2")
    assert record == {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": "Test message.",
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-2",
    }
    assert "md5OfMessageAttributes" not in record  # only when there are attributes


def test_sqs_message_attributes_and_fifo() -> None:
    message = received_message(
        MessageAttributes={
            "Author": {"StringValue": "John", "DataType": "String"},
            "Blob": {"BinaryValue": b"\x00\x01", "DataType": "Binary"},
            "Count": {"StringValue": "42", "DataType": "Number.int"},
        },
        MD5OfMessageAttributes="server-digest",
    )
    message["Attributes"].update(
        {"SequenceNumber": "18849496460467696128", "MessageGroupId": "g1",
         "MessageDeduplicationId": "d1", "AWSTraceHeader": "Root=1-abc"}
    )
    record = shapes.sqs_record(message, queue_arn=QUEUE_ARN + ".fifo", region="us-east-2")
    assert record["messageAttributes"] == {
        "Author": {"stringValue": "John", "stringListValues": [], "binaryListValues": [],
                   "dataType": "String"},
        "Blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [],
                 "dataType": "Binary"},
        "Count": {"stringValue": "42", "stringListValues": [], "binaryListValues": [],
                  "dataType": "Number.int"},
    }
    assert record["md5OfMessageAttributes"] == "server-digest"
    assert record["attributes"]["MessageGroupId"] == "g1"
    assert record["attributes"]["SequenceNumber"] == "18849496460467696128"
    assert record["attributes"]["MessageDeduplicationId"] == "d1"
    assert record["attributes"]["AWSTraceHeader"] == "Root=1-abc"
    assert list(record) == [
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes",
        "md5OfMessageAttributes", "md5OfBody", "eventSource", "eventSourceARN", "awsRegion",
    ]


def test_sqs_md5_of_message_attributes_follows_sqs() -> None:
    # Reference digests computed by moto's implementation of SQS's algorithm.
    assert shapes.md5_of_message_attributes(
        {"Author": {"DataType": "String", "StringValue": "John"}}
    ) == "88c00aa79fe478b6e6fb7ded7586b6d7"
    assert shapes.md5_of_message_attributes(
        {
            "Num": {"DataType": "Number", "StringValue": "42"},
            "Bin": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        }
    ) == "19e9a6d75925c7f06ff7cf3c0c46bf7a"
    message = received_message(
        MessageAttributes={"Author": {"StringValue": "John", "DataType": "String"}}
    )
    record = shapes.sqs_record(message, queue_arn=QUEUE_ARN, region="us-east-2")
    assert record["md5OfMessageAttributes"] == "88c00aa79fe478b6e6fb7ded7586b6d7"


def test_sqs_body_is_passed_byte_for_byte() -> None:
    body = '{"b": 1,   "a": [2.50, "é"]}'
    record = shapes.sqs_record(received_message(Body=body, MD5OfBody=None),
                               queue_arn=QUEUE_ARN, region="us-east-2")
    assert record["body"] == body
    assert len(record["md5OfBody"]) == 32


def test_kinesis_record_matches_lambdas_sample() -> None:
    arrival = datetime(2018, 12, 17, 22, 10, 50, 987000, tzinfo=UTC)
    record = shapes.kinesis_record(
        {
            "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "ApproximateArrivalTimestamp": arrival,
            "Data": b"Hello, this is a test.",
            "PartitionKey": "1",
        },
        shard_id="shardId-000000000006",
        stream_arn="arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
        region="us-east-2",
        invoke_identity_arn="arn:aws:iam::123456789012:role/lambda-role",
    )
    assert record == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "1",
            "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            "approximateArrivalTimestamp": 1545084650.987,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": "shardId-000000000006:"
        "49590338271490256608559692538361571095921575989136588898",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-2",
        "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
    }
    assert orjson.dumps(record["kinesis"]["approximateArrivalTimestamp"]) == b"1545084650.987"


def test_kinesis_encryption_type_is_kept() -> None:
    record = shapes.kinesis_record(
        {"SequenceNumber": "1", "ApproximateArrivalTimestamp": 1.5, "Data": b"",
         "PartitionKey": "k", "EncryptionType": "KMS"},
        shard_id="s", stream_arn="arn", region="r", invoke_identity_arn="role",
    )
    assert record["kinesis"]["encryptionType"] == "KMS"
    assert record["kinesis"]["approximateArrivalTimestamp"] == 1.5


def test_dynamodb_record_from_botocore() -> None:
    record = shapes.dynamodb_record(
        {
            "eventID": "f07f8ca4b0b26cb9c4e5e77e69f274ee",
            "eventName": "REMOVE",
            "eventVersion": "1.0",  # what the server says; Lambda always sends 1.1
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": datetime(2016, 12, 2, 1, 27, tzinfo=UTC),
                "Keys": {"Id": {"N": "101"}},
                "OldImage": {
                    "Id": {"N": "101"},
                    "Blob": {"B": b"\x00\x01"},
                    "Blobs": {"BS": [b"\x01"]},
                    "Nested": {"M": {"L": {"L": [{"S": "a"}, {"B": b"\x02"}]}}},
                    "Flag": {"BOOL": True},
                    "Nothing": {"NULL": True},
                    "Tags": {"SS": ["x", "y"]},
                },
                "SequenceNumber": "111",
                "SizeBytes": 26,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "userIdentity": {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},
            "unexpected": "server extra",
        },
        stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2016-12-01T00:00:00.000",
        region="us-east-1",
    )
    assert record == {
        "eventID": "f07f8ca4b0b26cb9c4e5e77e69f274ee",
        "eventName": "REMOVE",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1480642020.0,
            "Keys": {"Id": {"N": "101"}},
            "OldImage": {
                "Id": {"N": "101"},
                "Blob": {"B": "AAE="},
                "Blobs": {"BS": ["AQ=="]},
                "Nested": {"M": {"L": {"L": [{"S": "a"}, {"B": "Ag=="}]}}},
                "Flag": {"BOOL": True},
                "Nothing": {"NULL": True},
                "Tags": {"SS": ["x", "y"]},
            },
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/"
        "2016-12-01T00:00:00.000",
    }
    # A float even for whole seconds, as AWS delivers it (1693997155.0).
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)


def test_kafka_record_and_event() -> None:
    record = shapes.kafka_record(
        topic="mytopic",
        partition=0,
        offset=15,
        timestamp_ms=1545084650987,
        timestamp_type=0,
        key=b"abc",
        value=b"Hello, this is a test.",
        headers=[("headerKey", b"header")],
    )
    assert record == {
        "topic": "mytopic",
        "partition": 0,
        "offset": 15,
        "timestamp": 1545084650987,
        "timestampType": "CREATE_TIME",
        "key": "YWJj",
        "value": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
        "headers": [{"headerKey": [104, 101, 97, 100, 101, 114]}],
    }
    tombstone = shapes.kafka_record(
        topic="t", partition=1, offset=0, timestamp_ms=0, timestamp_type="LOG_APPEND_TIME",
        key=None, value=None, headers=[],
    )
    assert "key" not in tombstone and "value" not in tombstone
    assert tombstone["timestampType"] == "LOG_APPEND_TIME"
    self_managed = shapes.kafka_event(
        {"mytopic-0": [record]}, bootstrap_servers="b-1:9092,b-2:9092",
        event_source="SelfManagedKafka",
    )
    assert self_managed == {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "b-1:9092,b-2:9092",
        "records": {"mytopic-0": [record]},
    }
    msk = shapes.kafka_event({"mytopic-0": [record]}, bootstrap_servers="b:9092",
                             event_source="aws:kafka", event_source_arn="arn:aws:kafka:x")
    assert list(msk) == ["eventSource", "eventSourceArn", "bootstrapServers", "records"]
    with pytest.raises(ValueError, match="event_source_arn"):
        shapes.kafka_event({}, bootstrap_servers="b:9092", event_source="aws:kafka")


# -- sample events -------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_sample_events_are_deterministic_json(source: str) -> None:
    event = sample_event(source, records=3)
    assert event == sample_event(source, records=3)
    assert orjson.loads(orjson.dumps(event)) == event


def test_sample_sqs_reads_with_powertools() -> None:
    event = SQSEvent(sample_event("sqs", records=2, body=lambda i: f"body {i}",
                                  message_attributes={"A": {"DataType": "String",
                                                            "StringValue": "v"}}))
    records = list(event.records)
    assert [r.body for r in records] == ["body 0", "body 1"]
    assert records[0].message_id != records[1].message_id
    assert records[0].message_attributes["A"].string_value == "v"
    assert records[0].event_source == "aws:sqs"
    assert records[0].attributes.approximate_receive_count == "1"


def test_sample_sqs_fifo() -> None:
    event = sample_event("sqs", fifo=True, message_group_id="orders")
    record = event["Records"][0]
    assert record["eventSourceARN"].endswith(".fifo")
    assert record["attributes"]["MessageGroupId"] == "orders"


def test_sample_kinesis_reads_with_powertools() -> None:
    event = KinesisStreamEvent(sample_event("kinesis", records=2, data=b"raw"))
    records = list(event.records)
    assert [r.kinesis.data_as_bytes() for r in records] == [b"raw", b"raw"]
    assert records[0].event_id.startswith("shardId-000000000000:")
    default = sample_event("kinesis")["Records"][0]["kinesis"]["data"]
    assert orjson.loads(base64.b64decode(default))["index"] == 0


def test_sample_dynamodb_reads_with_powertools() -> None:
    event = DynamoDBStreamEvent(sample_event("dynamodb", event_name="MODIFY"))
    record = next(iter(event.records))
    assert record.event_name is not None and record.event_name.name == "MODIFY"
    assert record.dynamodb is not None
    assert record.dynamodb.new_image["Message"] == "New item!"
    assert record.dynamodb.old_image["Message"] == "Old item!"
    insert = sample_event("dynamodb")["Records"][0]["dynamodb"]
    assert "OldImage" not in insert and "NewImage" in insert


def test_sample_kafka_reads_with_powertools() -> None:
    event = KafkaEvent(sample_event("kafka", records=2, value="v", key=None, topic="orders",
                                    partition=3))
    records = list(event.records)
    assert [r.decoded_value for r in records] == [b"v", b"v"]
    assert [r.offset for r in records] == [0, 1]
    assert records[0].topic == "orders" and records[0].partition == 3
    assert records[0].decoded_headers == {"headerKey": b"headerValue"}
    assert "key" not in sample_event("kafka", key=None)["records"]["mytopic-0"][0]
    msk = sample_event("kafka", event_source="aws:kafka")
    assert msk["eventSourceArn"].startswith("arn:aws:kafka:")


def test_sample_event_refuses_unknown_sources_and_overrides() -> None:
    with pytest.raises(ValueError, match="unknown source"):
        sample_event("s3")
    with pytest.raises(TypeError, match="unknown override"):
        sample_event("sqs", data=b"x")


def test_kinesis_encryption_type_none_is_left_out() -> None:
    """AWS delivers no ``encryptionType`` for an unencrypted stream; GetRecords may say
    "NONE" (kinesis-mock does)."""
    record = shapes.kinesis_record(
        {"SequenceNumber": "1", "ApproximateArrivalTimestamp": 1.5, "Data": b"",
         "PartitionKey": "k", "EncryptionType": "NONE"},
        shard_id="s", stream_arn="arn", region="r", invoke_identity_arn="role",
    )
    assert "encryptionType" not in record["kinesis"]


@pytest.mark.parametrize(("window", "present"), [(0, False), (1, True), (30, True)])
def test_sqs_md5_of_message_attributes_is_null_with_a_batching_window(
    window: int, present: bool
) -> None:
    """AWS-recorded: without attributes, ``"md5OfMessageAttributes": null`` with a window
    of 1 s or more, no key with a window of 0; with attributes, the digest either way."""
    message = {"MessageId": "m", "ReceiptHandle": "r", "Body": "b", "Attributes": {}}
    record = shapes.sqs_record(message, queue_arn="arn", region="r", batching_window=window)
    assert ("md5OfMessageAttributes" in record) is present
    if present:
        assert record["md5OfMessageAttributes"] is None
        keys = list(record)
        assert keys.index("md5OfMessageAttributes") == keys.index("messageAttributes") + 1
    with_attributes = shapes.sqs_record(
        {**message, "MessageAttributes": {"Author": {"DataType": "String", "StringValue": "x"}}},
        queue_arn="arn", region="r", batching_window=window,
    )
    assert isinstance(with_attributes["md5OfMessageAttributes"], str)


def test_sample_sqs_event_follows_the_batching_window() -> None:
    record = sample_event("sqs", batching_window=1)["Records"][0]
    assert record["md5OfMessageAttributes"] is None
    assert "md5OfMessageAttributes" not in sample_event("sqs")["Records"][0]
