"""The exact SQS record a handler receives (docs/behaviour.md §2), standard and FIFO."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from test_sqs_support import (
    ONE_LOOP,
    REGION,
    create_queue,
    eventually,
    function,
    handler_log,
    make_config,
    queue_arn,
    running,
    sqs_client,
)

from pumphouse.devstack import MotoServer

BODY = '{"order": 17, "note": "caf\\u00e9 \u2603", "nested": {"a": [1, 2.50, null]}}  '


async def test_record_shape_with_every_kind_of_attribute(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        sent = await sqs.send_message(
            QueueUrl=url,
            MessageBody=BODY,
            MessageAttributes={
                "Author": {"DataType": "String", "StringValue": "John"},
                "Price": {"DataType": "Number", "StringValue": "12.50"},
                "Blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff\x10binary"},
                "Kind": {"DataType": "String.custom", "StringValue": "custom"},
            },
        )
        plain = await sqs.send_message(QueueUrl=url, MessageBody="plain, no attributes")
        arn = queue_arn(unique_name)
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"dump": function("sqs_handlers.full_event", tmp_path)},
            mappings=[{"FunctionName": "dump", "EventSourceArn": arn, "BatchSize": 1}],
        )
        async with running(config, factory=ONE_LOOP):
            await eventually(lambda: len(handler_log(tmp_path, "dump")) >= 2, what="2 events")
    records = {
        r["messageId"]: r for entry in handler_log(tmp_path, "dump")
        for r in entry["event"]["Records"]
    }
    record = records[sent["MessageId"]]
    assert list(record) == [
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes",
        "md5OfMessageAttributes", "md5OfBody", "eventSource", "eventSourceARN", "awsRegion",
    ]
    assert record["body"] == BODY  # byte for byte, never re-serialized
    assert record["md5OfBody"] == hashlib.md5(BODY.encode()).hexdigest() == sent["MD5OfMessageBody"]
    assert record["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert record["messageAttributes"] == {
        "Author": _attr("String", string="John"),
        "Price": _attr("Number", string="12.50"),
        "Blob": _attr("Binary", binary=base64.b64encode(b"\x00\xff\x10binary").decode()),
        "Kind": _attr("String.custom", string="custom"),
    }
    _check_system_attributes(record["attributes"])
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == REGION
    assert isinstance(record["receiptHandle"], str) and record["receiptHandle"]

    bare = records[plain["MessageId"]]
    assert bare["body"] == "plain, no attributes"
    assert bare["messageAttributes"] == {}
    assert "md5OfMessageAttributes" not in bare


async def test_fifo_record_carries_group_sequence_and_dedup_ids(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    name = f"{unique_name}.fifo"
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, name)
        sent = await sqs.send_message(
            QueueUrl=url, MessageBody="fifo body", MessageGroupId="g-1",
            MessageDeduplicationId="dedup-1",
        )
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"dump": function("sqs_handlers.full_event", tmp_path)},
            mappings=[{"FunctionName": "dump", "EventSourceArn": queue_arn(name)}],
        )
        async with running(config, factory=ONE_LOOP):
            await eventually(lambda: len(handler_log(tmp_path, "dump")) >= 1, what="1 event")
    (record,) = handler_log(tmp_path, "dump")[0]["event"]["Records"]
    attributes = record["attributes"]
    _check_system_attributes(attributes)
    assert attributes["MessageGroupId"] == "g-1"
    assert attributes["MessageDeduplicationId"] == "dedup-1"
    assert attributes["SequenceNumber"] == sent["SequenceNumber"]
    assert record["eventSourceARN"] == queue_arn(name)


def _attr(data_type: str, *, string: str | None = None, binary: str | None = None) -> Any:
    value: dict[str, Any] = {}
    if string is not None:
        value["stringValue"] = string
    if binary is not None:
        value["binaryValue"] = binary
    value.update(stringListValues=[], binaryListValues=[], dataType=data_type)
    return value


def _check_system_attributes(attributes: dict[str, Any]) -> None:
    for name in ("ApproximateReceiveCount", "SentTimestamp", "SenderId",
                 "ApproximateFirstReceiveTimestamp"):
        assert isinstance(attributes[name], str), name
    assert attributes["ApproximateReceiveCount"] == "1"
    assert attributes["SentTimestamp"].isdigit()
    assert all(isinstance(value, str) for value in attributes.values())
