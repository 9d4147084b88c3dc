"""A real Lambda handler written with aws-lambda-powertools' batch utility.

The record whose body is ``"poison"`` raises on its first delivery; Powertools turns
that into ``{"batchItemFailures": [{"itemIdentifier": <its messageId>}]}``.
"""

import json
import os

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

processor = BatchProcessor(event_type=EventType.SQS)


def _log(entry):
    path = os.path.join(os.environ["OUT_DIR"], os.environ["AWS_LAMBDA_FUNCTION_NAME"] + ".jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def record_handler(record: SQSRecord):
    count = int(record.attributes.approximate_receive_count)
    if record.body == "poison" and count == 1:
        _log({"id": record.message_id, "body": record.body, "count": count, "ok": False})
        raise ValueError("poison message")
    _log({"id": record.message_id, "body": record.body, "count": count, "ok": True})


def handler(event, context):
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
