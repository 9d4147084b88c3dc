"""Helpers for testing handlers: sample events, and invoking a handler locally.

* :func:`sample_event` — an event of the exact shape Lambda delivers for ``sqs``,
  ``kinesis``, ``dynamodb`` or ``kafka`` (built with :mod:`pumphouse.pollers.shapes`, the
  code the pollers use). Deterministic: the same arguments give the same event.
* :func:`invoke_handler` — call a handler in this process with a Lambda ``context``
  and get back what a synchronous invoke would return (the result after a JSON round
  trip); exceptions propagate. Fast, for unit tests.
* :class:`LocalInvoker` — run a handler in real pumphouse worker processes, with
  timeouts, the memory limit, environment isolation and captured logs, and get
  :class:`~pumphouse.runtime.InvocationResult` objects.

::

    from pumphouse.testing import invoke_handler, sample_event

    def test_handler_reports_no_failures():
        event = sample_event("sqs", records=3, body='{"order": 1}')
        assert invoke_handler(app.handler, event) == {"batchItemFailures": []}
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from pumphouse.pollers import shapes
from pumphouse.runtime.context import LambdaContext
from pumphouse.runtime.engine import Runtime
from pumphouse.runtime.environment import DEFAULT_PASS_ENVIRONMENT
from pumphouse.runtime.process import FunctionLogLine
from pumphouse.runtime.result import InvocationResult
from pumphouse.runtime.spec import FunctionSpec
from pumphouse.runtime.worker import load_handler
from pumphouse.telemetry.metrics import Metrics

__all__ = ["SOURCES", "LocalInvoker", "invoke_handler", "sample_event"]

SOURCES = ("sqs", "kinesis", "dynamodb", "kafka")

_REGION = "us-east-1"
_ACCOUNT = "123456789012"
_BASE_TIME = 1545082649.183  # the timestamp of AWS's own sample events
_NAMESPACE = uuid.UUID("8a1f3e5c-7f0b-4d2e-9c61-3b5d7a9e0f42")


def _ids(kind: str, index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}-{index}"))


def sample_event(source: str, *, records: int = 1, **overrides: Any) -> dict[str, Any]:
    """A sample event of ``source`` with ``records`` records.

    Overrides, by source (every one optional):

    * ``sqs``: ``body`` (str, or a callable of the record index), ``queue_arn``,
      ``region``, ``message_attributes`` (botocore shape: ``{"Name": {"DataType":
      "String", "StringValue": "x"}}``), ``fifo`` (adds ``MessageGroupId`` /
      ``SequenceNumber`` / ``MessageDeduplicationId``), ``message_group_id``,
      ``timestamp`` (epoch seconds), ``batching_window`` (the mapping's
      ``MaximumBatchingWindowInSeconds``: with 1 or more, a record without attributes
      carries ``"md5OfMessageAttributes": null``, as on AWS);
    * ``kinesis``: ``data`` (bytes, str, JSON-able value, or a callable of the index),
      ``partition_key``, ``stream_arn``, ``shard_id``, ``region``,
      ``invoke_identity_arn``, ``timestamp``;
    * ``dynamodb``: ``event_name`` (INSERT, MODIFY, REMOVE), ``keys``, ``new_image``,
      ``old_image`` (typed attribute maps: ``{"Id": {"N": "1"}}``),
      ``stream_view_type``, ``stream_arn``, ``region``, ``timestamp``;
    * ``kafka``: ``topic``, ``partition``, ``value`` (bytes, str, JSON-able value, or a
      callable of the index), ``key``, ``headers`` (``[("name", b"value")]``),
      ``bootstrap_servers``, ``event_source`` (``SelfManagedKafka`` or ``aws:kafka``),
      ``event_source_arn``, ``timestamp``.
    """
    builders: dict[str, Callable[[int, dict[str, Any]], dict[str, Any]]] = {
        "sqs": _sample_sqs,
        "kinesis": _sample_kinesis,
        "dynamodb": _sample_dynamodb,
        "kafka": _sample_kafka,
    }
    builder = builders.get(source)
    if builder is None:
        raise ValueError(f"unknown source {source!r}: one of {', '.join(SOURCES)}")
    if records < 1:
        raise ValueError("records must be at least 1")
    return builder(records, dict(overrides))


def _take(overrides: dict[str, Any], allowed: Sequence[str], source: str) -> None:
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown override(s) for {source}: {', '.join(unknown)} "
            f"(allowed: {', '.join(allowed)})"
        )


def _per_record(value: Any, index: int) -> Any:
    return value(index) if callable(value) else value


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value)


def _sample_sqs(count: int, o: dict[str, Any]) -> dict[str, Any]:
    _take(o, ("body", "queue_arn", "region", "message_attributes", "fifo",
              "message_group_id", "timestamp", "batching_window"), "sqs")
    region = o.get("region", _REGION)
    fifo = bool(o.get("fifo", False))
    queue_arn = o.get(
        "queue_arn", f"arn:aws:sqs:{region}:{_ACCOUNT}:my-queue{'.fifo' if fifo else ''}"
    )
    sent_ms = int(o.get("timestamp", _BASE_TIME) * 1000)
    out = []
    for i in range(count):
        body = _per_record(o.get("body", "Test message."), i)
        attributes: dict[str, str] = {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(sent_ms + i),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(sent_ms + i + 2),
        }
        if fifo:
            attributes["SequenceNumber"] = str(18849496460467696128 + i)
            attributes["MessageGroupId"] = o.get("message_group_id", "1")
            attributes["MessageDeduplicationId"] = _ids("sqs-dedup", i)
        message: dict[str, Any] = {
            "MessageId": _ids("sqs", i),
            "ReceiptHandle": "AQEB" + _ids("sqs-receipt", i).replace("-", ""),
            "Body": body,
            "Attributes": attributes,
        }
        if o.get("message_attributes"):
            message["MessageAttributes"] = o["message_attributes"]
        out.append(shapes.sqs_record(
            message,
            queue_arn=queue_arn,
            region=region,
            batching_window=float(o.get("batching_window", 0)),
        ))
    return {"Records": out}


def _sample_kinesis(count: int, o: dict[str, Any]) -> dict[str, Any]:
    _take(o, ("data", "partition_key", "stream_arn", "shard_id", "region",
              "invoke_identity_arn", "timestamp"), "kinesis")
    region = o.get("region", _REGION)
    stream_arn = o.get("stream_arn", f"arn:aws:kinesis:{region}:{_ACCOUNT}:stream/my-stream")
    shard_id = o.get("shard_id", "shardId-000000000000")
    identity = o.get("invoke_identity_arn", f"arn:aws:iam::{_ACCOUNT}:role/lambda-role")
    base = float(o.get("timestamp", _BASE_TIME))
    out = []
    for i in range(count):
        data = _per_record(o.get("data", {"message": "Hello, this is a test.", "index": i}), i)
        record = {
            "SequenceNumber": str(49590338271490256608559692538361571095921575989136588898 + i),
            "ApproximateArrivalTimestamp": base + i / 1000,
            "Data": _as_bytes(data),
            "PartitionKey": str(_per_record(o.get("partition_key", "1"), i)),
        }
        out.append(shapes.kinesis_record(record, shard_id=shard_id, stream_arn=stream_arn,
                                         region=region, invoke_identity_arn=identity))
    return {"Records": out}


def _sample_dynamodb(count: int, o: dict[str, Any]) -> dict[str, Any]:
    _take(o, ("event_name", "keys", "new_image", "old_image", "stream_view_type",
              "stream_arn", "region", "timestamp"), "dynamodb")
    region = o.get("region", _REGION)
    stream_arn = o.get(
        "stream_arn",
        f"arn:aws:dynamodb:{region}:{_ACCOUNT}:table/my-table/stream/2016-12-01T00:00:00.000",
    )
    event_name = o.get("event_name", "INSERT")
    view = o.get("stream_view_type", "NEW_AND_OLD_IMAGES")
    created = int(o.get("timestamp", _BASE_TIME))
    out = []
    for i in range(count):
        keys = _per_record(o.get("keys", {"Id": {"N": str(101 + i)}}), i)
        new_image = _per_record(o.get("new_image", {**keys, "Message": {"S": "New item!"}}), i)
        old_image = _per_record(o.get("old_image", {**keys, "Message": {"S": "Old item!"}}), i)
        stream_record: dict[str, Any] = {
            "ApproximateCreationDateTime": created,
            "Keys": keys,
            "SequenceNumber": str(111 + i),
            "StreamViewType": view,
        }
        if event_name != "REMOVE" and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            stream_record["NewImage"] = new_image
        if event_name != "INSERT" and view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
            stream_record["OldImage"] = old_image
        stream_record["SizeBytes"] = len(orjson.dumps(
            [stream_record.get(k) for k in ("Keys", "NewImage", "OldImage")]
        ))
        record = {"eventID": uuid.uuid5(_NAMESPACE, f"ddb-{i}").hex, "eventName": event_name,
                  "dynamodb": stream_record}
        out.append(shapes.dynamodb_record(record, stream_arn=stream_arn, region=region))
    return {"Records": out}


def _sample_kafka(count: int, o: dict[str, Any]) -> dict[str, Any]:
    _take(o, ("topic", "partition", "value", "key", "headers", "bootstrap_servers",
              "event_source", "event_source_arn", "timestamp"), "kafka")
    topic = o.get("topic", "mytopic")
    partition = int(o.get("partition", 0))
    event_source = o.get("event_source", shapes.SELF_MANAGED_KAFKA)
    arn = o.get("event_source_arn")
    if event_source == shapes.MSK and arn is None:
        arn = f"arn:aws:kafka:{_REGION}:{_ACCOUNT}:cluster/my-cluster/{_ids('msk', 0)}-1"
    base_ms = int(o.get("timestamp", _BASE_TIME) * 1000)
    records = []
    for i in range(count):
        value = _per_record(o.get("value", {"message": "Hello, this is a test.", "index": i}), i)
        key = _per_record(o.get("key", f"key-{i}"), i)
        records.append(shapes.kafka_record(
            topic=topic,
            partition=partition,
            offset=i,
            timestamp_ms=base_ms + i,
            timestamp_type="CREATE_TIME",
            key=None if key is None else _as_bytes(key),
            value=None if value is None else _as_bytes(value),
            headers=list(o.get("headers", [("headerKey", b"headerValue")])),
        ))
    return shapes.kafka_event(
        {shapes.kafka_partition_key(topic, partition): records},
        bootstrap_servers=o.get("bootstrap_servers", "localhost:9092"),
        event_source=event_source,
        event_source_arn=arn,
    )


# ---------------------------------------------------------------------------------------
# Invoking


def invoke_handler(
    handler: Callable[[Any, Any], Any] | str,
    event: Any,
    *,
    code_uri: str | Path | None = None,
    function_name: str = "test-function",
    memory_size: int = 128,
    timeout: float = 3.0,
    request_id: str | None = None,
) -> Any:
    """Call ``handler(event, context)`` in this process and return what Lambda would
    return to a synchronous caller: the result after a JSON round trip (``Decimal``
    numbers allowed). A result Lambda could not serialize raises ``TypeError``
    (Lambda's ``Runtime.MarshalError``); the handler's own exceptions propagate.

    ``handler`` is a callable, or a ``"module.function"`` name imported from
    ``code_uri`` (default: the working directory); async handlers are run with
    ``asyncio.run``. For isolation, limits and logs, use :class:`LocalInvoker`.
    """
    if isinstance(handler, str):
        root = Path(code_uri) if code_uri is not None else Path.cwd()
        function: Callable[[Any, Any], Any] = _load_from(root, handler)
    else:
        function = handler
    context = LambdaContext(
        aws_request_id=request_id or str(uuid.uuid4()),
        deadline_ms=int(time.time() * 1000 + timeout * 1000),
        invoked_function_arn=f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:{function_name}",
        function_name=function_name,
        function_version="$LATEST",
        memory_limit_in_mb=str(memory_size),
        log_group_name=f"/aws/lambda/{function_name}",
        log_stream_name=f"2024/01/01/[$LATEST]{uuid.uuid4().hex}",
    )
    event = orjson.loads(orjson.dumps(event))
    result = function(event, context)
    if hasattr(result, "__await__"):
        result = asyncio.run(_await(result))
    if isinstance(result, bytes | bytearray):
        return bytes(result)
    from pumphouse.runtime.worker import _json_default

    try:
        body = orjson.dumps(
            result,
            default=_json_default,
            option=orjson.OPT_NON_STR_KEYS
            | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS,
        )
    except TypeError as err:
        cause = err.__cause__ if err.__cause__ is not None else err
        raise TypeError(f"Unable to marshal response: {cause}") from err
    return orjson.loads(body)


def _load_from(root: Path, handler: str) -> Any:
    """Import ``handler`` from ``root`` as a worker would, even when a module of the
    same name is already imported from elsewhere (a test package called ``handlers``,
    say): that one is set aside while this one loads, then put back."""
    top = handler.split(".", 1)[0]
    clashing = {
        name: module
        for name, module in sys.modules.items()
        if (name == top or name.startswith(top + "."))
        and not _is_under(getattr(module, "__file__", None), root)
    }
    for name in clashing:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        return load_handler(handler)
    finally:
        sys.path.remove(str(root))
        if clashing:
            for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                del sys.modules[name]
            sys.modules.update(clashing)


def _is_under(path: str | None, root: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(root.resolve())


async def _await(awaitable: Any) -> Any:
    return await awaitable


class LocalInvoker:
    """A handler in real worker processes, for tests::

        async with LocalInvoker("app.handler", code_uri=tmp_path) as invoker:
            result = await invoker.invoke(sample_event("sqs"))
            assert result.ok, result.error
            assert any("processed" in line.message for line in invoker.logs)
    """

    def __init__(
        self,
        handler: str,
        *,
        code_uri: str | Path,
        function_name: str = "test-function",
        memory_size: int = 128,
        timeout: float = 3.0,
        environment: Mapping[str, str] | None = None,
        pass_environment: Sequence[str] = DEFAULT_PASS_ENVIRONMENT,
        max_concurrency: int = 4,
    ) -> None:
        self.spec = FunctionSpec(
            name=function_name,
            handler=handler,
            code_uri=Path(code_uri),
            memory_size=memory_size,
            timeout=timeout,
            environment=dict(environment or {}),
        )
        self.logs: list[FunctionLogLine] = []
        self.runtime = Runtime(
            {function_name: self.spec},
            max_concurrency=max_concurrency,
            pass_environment=pass_environment,
            metrics=Metrics(),
            log_sink=self.logs.append,
        )

    async def invoke(self, event: Any) -> InvocationResult:
        return await self.runtime.invoke(self.spec.name, event)

    async def __aenter__(self) -> LocalInvoker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.runtime.stop(timeout=5.0)
