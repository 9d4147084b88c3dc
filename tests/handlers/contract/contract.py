"""The scripted handler of the metric contract test: one behaviour per record tag, the
same for every source.

Each record's data is ``{"tag": ..., "key": ...}`` (the SQS body, the Kinesis data, the
DynamoDB item, the Kafka value). Tags:

* ``ok`` — succeeds;
* ``report-once`` — reported in ``batchItemFailures`` the first time it is seen;
* ``fail-once`` — the invocation raises ``ValueError`` the first time it is seen;
* ``poison`` — the invocation always raises ``ValueError``.

``SEEN_DIR`` holds one file per ``key`` already seen (workers may change between calls).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any


def _records(event: dict[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """``(itemIdentifier, data)`` of every record, whatever the source."""
    if "records" in event:  # Kafka
        out = []
        for key, records in event["records"].items():
            for record in records:
                data = json.loads(base64.b64decode(record["value"]))
                out.append(({"partition": key, "offset": record["offset"]}, data))
        return out
    out = []
    for record in event["Records"]:
        if "body" in record:  # SQS
            out.append((record["messageId"], json.loads(record["body"])))
        elif "kinesis" in record:
            data = json.loads(base64.b64decode(record["kinesis"]["data"]))
            out.append((record["kinesis"]["sequenceNumber"], data))
        else:  # DynamoDB Streams
            image = record["dynamodb"]["NewImage"]
            data = {"tag": image["tag"]["S"], "key": image["key"]["S"]}
            out.append((record["dynamodb"]["SequenceNumber"], data))
    return out


def _first_time(key: str) -> bool:
    marker = Path(os.environ["SEEN_DIR"]) / key
    if marker.exists():
        return False
    marker.touch()
    return True


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for identifier, data in _records(event):
        tag = data["tag"]
        if tag == "poison":
            raise ValueError(f"poison record {data['key']}")
        if tag == "fail-once" and _first_time(data["key"]):
            raise ValueError(f"first delivery of {data['key']} fails")
        if tag == "report-once" and _first_time(data["key"]):
            failures.append({"itemIdentifier": identifier})
    return {"batchItemFailures": failures}
