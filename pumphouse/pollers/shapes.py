"""The exact Lambda record shapes (docs/behaviour.md §2), built from source-native data.

The single place these shapes are defined: pollers build every record with these
functions, and ``pumphouse.testing.sample_event`` builds its samples with them too. Pure
functions, no I/O. Every field is built explicitly — never a server's dict copied
wholesale — so that what a handler sees does not depend on which server (AWS, moto,
LocalStack, ...) answered.

Inputs are what the clients return:

* SQS: a message of botocore's ``ReceiveMessage`` (``AttributeNames=["All"]``,
  ``MessageAttributeNames=["All"]``): ``MessageId``, ``ReceiptHandle``, ``Body``,
  ``MD5OfBody``, ``Attributes``, ``MessageAttributes`` (``BinaryValue`` as bytes),
  ``MD5OfMessageAttributes``;
* Kinesis: a record of botocore's ``GetRecords``: ``Data`` (bytes), ``PartitionKey``,
  ``SequenceNumber``, ``ApproximateArrivalTimestamp`` (datetime), ``EncryptionType``;
* DynamoDB Streams: a record of botocore's ``dynamodbstreams`` ``GetRecords``
  (``ApproximateCreationDateTime`` as datetime, binary attribute values as bytes);
* Kafka: the fields of a consumer record (aiokafka's ``ConsumerRecord``).

Binary values become base64 text, timestamps epoch numbers, as Lambda delivers them.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from array import array
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

SQS_EVENT_SOURCE = "aws:sqs"
KINESIS_EVENT_SOURCE = "aws:kinesis"
DYNAMODB_EVENT_SOURCE = "aws:dynamodb"
SELF_MANAGED_KAFKA = "SelfManagedKafka"
MSK = "aws:kafka"

KafkaEventSource = Literal["SelfManagedKafka", "aws:kafka"]

# Lambda lists a message's system attributes in this order; others follow as received.
_SQS_ATTRIBUTE_ORDER = (
    "ApproximateReceiveCount",
    "AWSTraceHeader",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
    "DeadLetterQueueSourceArn",
)
_KAFKA_TIMESTAMP_TYPES = {-1: "NO_TIMESTAMP_TYPE", 0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}


def _b64(data: bytes | bytearray | memoryview | str) -> str:
    """Base64 text of binary data; ``str`` is taken to be base64 already."""
    if isinstance(data, str):
        return data
    return base64.b64encode(data).decode("ascii")


def _epoch(value: datetime | float | int) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


# ---------------------------------------------------------------------------------------
# SQS


def sqs_record(
    message: Mapping[str, Any],
    *,
    queue_arn: str,
    region: str,
    batching_window: float = 0.0,
) -> dict[str, Any]:
    """One record of an SQS event from one received message.

    ``md5OfMessageAttributes`` is the digest when the message has attributes (computed
    with SQS's algorithm when the server did not send it). Without attributes it depends
    on the mapping's ``MaximumBatchingWindowInSeconds`` (``batching_window``), as every
    AWS-recorded event shows: ``null`` with a window of 1 s or more, absent with a
    window of 0 — a handler reading ``record["md5OfMessageAttributes"]`` works on AWS
    with a window, so it must here too. FIFO queues' attributes
    (``SequenceNumber``, ``MessageGroupId``, ``MessageDeduplicationId``) come with the
    other system attributes. The body is passed byte for byte.
    """
    body = message.get("Body", "")
    system = message.get("Attributes") or {}
    attributes = {name: str(system[name]) for name in _SQS_ATTRIBUTE_ORDER if name in system}
    for name, value in system.items():
        if name not in attributes:
            attributes[name] = str(value)
    user_attributes = message.get("MessageAttributes") or {}
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": attributes,
        "messageAttributes": {
            name: sqs_message_attribute(value) for name, value in user_attributes.items()
        },
    }
    if user_attributes:
        record["md5OfMessageAttributes"] = message.get(
            "MD5OfMessageAttributes"
        ) or md5_of_message_attributes(user_attributes)
    elif batching_window > 0:
        record["md5OfMessageAttributes"] = None
    record["md5OfBody"] = message.get("MD5OfBody") or hashlib.md5(
        body.encode("utf-8"), usedforsecurity=False
    ).hexdigest()
    record["eventSource"] = SQS_EVENT_SOURCE
    record["eventSourceARN"] = queue_arn
    record["awsRegion"] = region
    return record


def sqs_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """A message attribute as Lambda shows it: camelCase, binary as base64, both list
    fields always present."""
    out: dict[str, Any] = {}
    if value.get("StringValue") is not None:
        out["stringValue"] = value["StringValue"]
    if value.get("BinaryValue") is not None:
        out["binaryValue"] = _b64(value["BinaryValue"])
    out["stringListValues"] = list(value.get("StringListValues") or [])
    out["binaryListValues"] = [_b64(v) for v in value.get("BinaryListValues") or []]
    out["dataType"] = value["DataType"]
    return out


def md5_of_message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """SQS's MD5 of message attributes: names sorted; each as length-prefixed name,
    length-prefixed data type, a transport byte (1 string, 2 binary) and the
    length-prefixed value."""
    digest = hashlib.md5(usedforsecurity=False)

    def put(data: bytes) -> None:
        digest.update(struct.pack("!I", len(data)))
        digest.update(data)

    for name in sorted(attributes):
        value = attributes[name]
        put(name.encode("utf-8"))
        put(str(value["DataType"]).encode("utf-8"))
        if value.get("StringValue") is not None:
            digest.update(b"\x01")
            put(str(value["StringValue"]).encode("utf-8"))
        elif value.get("BinaryValue") is not None:
            digest.update(b"\x02")
            binary = value["BinaryValue"]
            put(base64.b64decode(binary) if isinstance(binary, str) else bytes(binary))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Kinesis


def kinesis_record(
    record: Mapping[str, Any],
    *,
    shard_id: str,
    stream_arn: str,
    region: str,
    invoke_identity_arn: str,
) -> dict[str, Any]:
    """One record of a Kinesis event. ``approximateArrivalTimestamp`` is epoch seconds
    with milliseconds (a float); ``data`` is base64; ``eventID`` is
    ``<shardId>:<sequenceNumber>``; ``encryptionType`` only for an encrypted stream."""
    sequence_number = record["SequenceNumber"]
    kinesis: dict[str, Any] = {
        "kinesisSchemaVersion": "1.0",
        "partitionKey": record["PartitionKey"],
        "sequenceNumber": sequence_number,
        "data": _b64(record["Data"]),
        "approximateArrivalTimestamp": round(_epoch(record["ApproximateArrivalTimestamp"]), 3),
    }
    encryption = record.get("EncryptionType")
    if encryption and encryption != "NONE":
        # AWS delivers no ``encryptionType`` for an unencrypted stream (every recorded
        # event), although GetRecords may say "NONE"; "KMS" is passed on.
        kinesis["encryptionType"] = encryption
    return {
        "kinesis": kinesis,
        "eventSource": KINESIS_EVENT_SOURCE,
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


# ---------------------------------------------------------------------------------------
# DynamoDB Streams


def dynamodb_record(
    record: Mapping[str, Any], *, stream_arn: str, region: str
) -> dict[str, Any]:
    """One record of a DynamoDB Streams event: ``eventVersion`` "1.1",
    ``ApproximateCreationDateTime`` in epoch seconds as a float, images present as the stream's
    view type provides them, binary values in base64, ``userIdentity`` (TTL deletes)
    with Lambda's lowercase keys."""
    stream_record = record.get("dynamodb") or {}
    dynamodb: dict[str, Any] = {}
    created = stream_record.get("ApproximateCreationDateTime")
    if created is not None:
        # Always a float, whole seconds included (AWS delivers ``1693997155.0``): a typed
        # handler or a schema that expects a number with a fraction must not get an int.
        dynamodb["ApproximateCreationDateTime"] = _epoch(created)
    for image in ("Keys", "NewImage", "OldImage"):
        if stream_record.get(image) is not None:
            dynamodb[image] = attribute_map(stream_record[image])
    for field in ("SequenceNumber", "SizeBytes", "StreamViewType"):
        if stream_record.get(field) is not None:
            dynamodb[field] = stream_record[field]
    out: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": DYNAMODB_EVENT_SOURCE,
        "awsRegion": region,
        "dynamodb": dynamodb,
    }
    identity = record.get("userIdentity")
    if identity:
        out["userIdentity"] = {
            "type": identity.get("Type", identity.get("type")),
            "principalId": identity.get("PrincipalId", identity.get("principalId")),
        }
    out["eventSourceARN"] = stream_arn
    return out


def attribute_map(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """DynamoDB typed attributes in their JSON form (binary as base64)."""
    return {name: attribute_value(value) for name, value in attributes.items()}


def attribute_value(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, item in value.items():
        if item is None:
            continue
        if kind == "B":
            out[kind] = _b64(item)
        elif kind == "BS":
            out[kind] = [_b64(v) for v in item]
        elif kind == "M":
            out[kind] = attribute_map(item)
        elif kind == "L":
            out[kind] = [attribute_value(v) for v in item]
        elif kind in ("SS", "NS"):
            out[kind] = list(item)
        else:  # S, N, NULL, BOOL
            out[kind] = item
    return out


# ---------------------------------------------------------------------------------------
# Kafka


def kafka_header_value(data: bytes | None) -> list[int]:
    """A Kafka header's value as Lambda delivers it: its bytes as **signed** integers
    (-128 … 127; ``ë`` is ``[-61, -85]``), the way Java's ``byte[]`` serializes. AWS's own
    event types were changed to match (aws-lambda-go ``JSONNumberBytes``/int8, #506;
    aws-lambda-dotnet ``sbyte[]``, b3fd72c), so a typed handler fails on unsigned values
    of 128 and more. A null value is an empty list."""
    return array("b", data).tolist() if data else []


def kafka_partition_key(topic: str, partition: int) -> str:
    """The key of a partition's records in a Kafka event: ``<topic>-<partition>``."""
    return f"{topic}-{partition}"


def kafka_record(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    timestamp_type: str | int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
) -> dict[str, Any]:
    """One record of a Kafka event. ``key`` is left out when the record has none, and so
    is ``value`` for a tombstone (a null value); header values are lists of signed byte
    values (:func:`kafka_header_value`).
    ``timestamp_type`` may be Kafka's number (0 create time, 1 log append time)."""
    if isinstance(timestamp_type, int):
        timestamp_type = _KAFKA_TIMESTAMP_TYPES.get(timestamp_type, "NO_TIMESTAMP_TYPE")
    record: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp_ms,
        "timestampType": timestamp_type,
    }
    if key is not None:
        record["key"] = _b64(key)
    if value is not None:
        record["value"] = _b64(value)
    record["headers"] = [{name: kafka_header_value(data)} for name, data in headers]
    return record


def kafka_event(
    records_by_partition: Mapping[str, list[dict[str, Any]]],
    *,
    bootstrap_servers: str,
    event_source: KafkaEventSource,
    event_source_arn: str | None = None,
) -> dict[str, Any]:
    """A Kafka event: one batch, records grouped by ``<topic>-<partition>``. MSK events
    (``aws:kafka``) carry ``eventSourceArn``; self-managed ones do not."""
    event: dict[str, Any] = {"eventSource": event_source}
    if event_source == MSK:
        if not event_source_arn:
            raise ValueError("an aws:kafka event needs event_source_arn (the cluster ARN)")
        event["eventSourceArn"] = event_source_arn
    event["bootstrapServers"] = bootstrap_servers
    event["records"] = {key: list(records) for key, records in records_by_partition.items()}
    return event
