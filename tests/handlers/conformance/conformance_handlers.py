"""Handlers that behave like the handlers of the recorded AWS scenarios (see
``tests/conformance``). Each writes one JSON line per invocation to ``RECORD_FILE``."""

from __future__ import annotations

import base64
import json
import os
from typing import Any


def _log(entry: dict[str, Any]) -> None:
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def sqs_fail_attempts(event: dict[str, Any], context: Any) -> Any:
    """A message fails while its body's ``fail_attempts`` >= its ApproximateReceiveCount
    (a body that is not JSON always fails). With ``REPORT=1`` the failures are reported
    as batch item failures, otherwise the handler raises when any message failed."""
    failed = []
    for record in event["Records"]:
        try:
            fail_attempts = json.loads(record["body"]).get("fail_attempts", 0)
        except ValueError:
            fail_attempts = 1 << 30
        if fail_attempts >= int(record["attributes"]["ApproximateReceiveCount"]):
            failed.append(record["messageId"])
    _log({"records": event["Records"], "failed": failed})
    if os.environ.get("REPORT"):
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
    if failed:
        raise RuntimeError(f"{len(failed)} message(s) failed")
    return None


def _stream_items(event: dict[str, Any]) -> list[tuple[str, int, bool]]:
    """(sequence number, index, should_fail) of each Kinesis or DynamoDB record."""
    items = []
    for record in event["Records"]:
        if "kinesis" in record:
            data = json.loads(base64.b64decode(record["kinesis"]["data"]))
            items.append((record["kinesis"]["sequenceNumber"], data["i"], data["should_fail"]))
        else:
            image = record["dynamodb"]["NewImage"]
            items.append(
                (
                    record["dynamodb"]["SequenceNumber"],
                    int(image["my_partition_key"]["S"].removeprefix("testId")),
                    image["should_fail"]["BOOL"],
                )
            )
    return items


def stream_report_should_fail(event: dict[str, Any], context: Any) -> Any:
    """Report every record whose data says ``should_fail`` (the recorded handler)."""
    items = _stream_items(event)
    _log({"indices": [i for _, i, _ in items]})
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq, _, bad in items if bad]}


def stream_raise(event: dict[str, Any], context: Any) -> Any:
    """Always fail (the recorded ``raise_error`` handler)."""
    _log({"indices": [i for _, i, _ in _stream_items(event)]})
    raise RuntimeError("the handler failed on purpose")
