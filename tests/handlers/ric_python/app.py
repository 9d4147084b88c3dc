"""Handlers run by AWS's Python runtime interface client (``awslambdaric``) as an
``ImageConfig`` function: ``EntryPoint: [python, -m, awslambdaric]``, ``Command: [app.X]``."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def _record(context: Any, bodies: list[str]) -> None:
    path = os.path.join(os.environ["OUT_DIR"], f"{context.function_name}.jsonl")
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"request_id": context.aws_request_id, "bodies": bodies}) + "\n")


def batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fails the messages whose body is ``fail`` (ReportBatchItemFailures)."""
    records = event["Records"]
    _record(context, [r["body"] for r in records])
    print(f"batch of {len(records)}")
    return {
        "batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in records if r["body"] == "fail"
        ]
    }


def echo(event: Any, context: Any) -> dict[str, Any]:
    print("echo", context.aws_request_id)
    return {"event": event, "function": context.function_name,
            "handler": os.environ["_HANDLER"], "remaining_ms": context.get_remaining_time_in_millis()}


def boom(event: Any, context: Any) -> None:
    raise ValueError("boom")


def sleep(event: Any, context: Any) -> None:
    time.sleep(60)


def leave(event: Any, context: Any) -> None:
    os._exit(3)


def spike(event: Any, context: Any) -> str:
    """Holds 300 MB for a moment, then returns: over a MemorySize of 128 all the same."""
    block = b"x" * (300 * 1024 * 1024)
    del block
    return "done"
