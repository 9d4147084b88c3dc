"""Test handlers for the stream sources: they write what they receive to a JSON-lines
file (``RECORD_FILE``), one line per invocation, so tests can check delivery, order,
duplicates and concurrency from outside the worker processes."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any


def record_items(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a Kinesis or DynamoDB Streams event, reduced to what tests check."""
    items = []
    for record in event.get("Records", []):
        if "kinesis" in record:
            kinesis = record["kinesis"]
            data = json.loads(base64.b64decode(kinesis["data"]))
            items.append(
                {
                    "seq": kinesis["sequenceNumber"],
                    "shard": record["eventID"].split(":", 1)[0],
                    "key": kinesis["partitionKey"],
                    "k": data.get("k"),
                    "i": data.get("i"),
                    "case": data.get("case"),
                    "poison": bool(data.get("poison")),
                    **({"record": record} if os.environ.get("FULL_RECORDS") else {}),
                }
            )
        else:
            change = record["dynamodb"]
            image = change.get("NewImage") or {}
            items.append(
                {
                    "seq": change["SequenceNumber"],
                    "event": record["eventName"],
                    "record": record,
                    "poison": image.get("poison") == {"BOOL": True},
                }
            )
    return items


def log(entry: dict[str, Any]) -> None:
    """Append one line atomically (one write on an O_APPEND descriptor)."""
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def handler(event: dict[str, Any], context: Any) -> Any:
    """Record the batch; raise when it holds a record whose data says ``poison``."""
    started = time.time()
    items = record_items(event)
    pause = float(os.environ.get("SLEEP_SECONDS", "0") or 0)
    if pause:
        time.sleep(pause)
    poison = any(item.get("poison") for item in items)
    log(
        {
            "t0": started,
            "t1": time.time(),
            "pid": os.getpid(),
            "replica": os.environ.get("REPLICA"),
            "request": context.aws_request_id,
            "items": items,
            "poison": poison,
        }
    )
    if poison:
        raise ValueError("poison record in the batch")
    return None


def noop(event: dict[str, Any], context: Any) -> None:
    """Does nothing (throughput benchmark)."""
    return None
