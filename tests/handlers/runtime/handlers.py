"""Handlers the runtime tests invoke in real worker processes (code_uri = this folder)."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from typing import Any

INIT_PID = os.getpid()
INIT_AT = time.time()
INVOCATIONS = 0

print("init: loading handlers", INIT_PID)
# A no-op under Lambda's runtime, which has configured the root logger already.
logging.basicConfig(format="BASIC %(message)s", level=logging.INFO)


def echo(event: Any, context: Any) -> Any:
    return event


def counter(event: Any, context: Any) -> dict[str, Any]:
    global INVOCATIONS  # noqa: PLW0603 - state kept across warm invocations is the point
    INVOCATIONS += 1
    return {"pid": os.getpid(), "init_pid": INIT_PID, "init_at": INIT_AT, "count": INVOCATIONS}


def context_info(event: Any, context: Any) -> dict[str, Any]:
    names = event.get("env", [])
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": [context.identity.cognito_identity_id,
                     context.identity.cognito_identity_pool_id],
        "client_context": context.client_context,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": {name: os.environ.get(name) for name in names},
        "environ_keys": sorted(os.environ),
        "cwd": os.getcwd(),
        "sys_path0": sys.path[0],
        "tmpdir": tempfile.gettempdir(),
        "argv": sys.argv,
    }


def fail(event: Any, context: Any) -> Any:
    raise ValueError(f"boom {event.get('n')}")


def not_serializable(event: Any, context: Any) -> Any:
    return {"values": {1, 2}}


def decimal_result(event: Any, context: Any) -> Any:
    return {"price": Decimal("1.10"), 1: "int key"}


def raw_bytes(event: Any, context: Any) -> Any:
    return b"not json"


def too_large(event: Any, context: Any) -> Any:
    return "x" * (7 * 1024 * 1024)


def sleep(event: Any, context: Any) -> dict[str, Any]:
    start = time.time()
    time.sleep(event["seconds"])
    return {"pid": os.getpid(), "start": start, "end": time.time()}


def allocate(event: Any, context: Any) -> int:
    data = bytearray(event["mb"] * 1024 * 1024)
    time.sleep(event.get("hold", 0))
    return len(data)


def exit_now(event: Any, context: Any) -> Any:
    os._exit(event.get("status", 3))


def segfault(event: Any, context: Any) -> Any:
    return ctypes.string_at(0)


def printer(event: Any, context: Any) -> str:
    print("handler says", context.aws_request_id)
    print("to stderr", file=sys.stderr)
    logging.getLogger("app").warning("logged warning")
    print("no newline at the end", end="")
    return "ok"


async def async_echo(event: Any, context: Any) -> Any:
    await asyncio.sleep(0.01)
    return {"async": event, "remaining": context.get_remaining_time_in_millis() > 0}


def spawn_child(event: Any, context: Any) -> int:
    child = subprocess.Popen(["sleep", "60"])
    return child.pid


def write_tmp(event: Any, context: Any) -> str:
    path = os.path.join(tempfile.gettempdir(), "scratch.txt")
    with open(path, "w") as f:
        f.write("data")
    return path
