"""Reading a handler's response for ``ReportBatchItemFailures`` (docs/behaviour.md §3).

Pure logic. Only consulted when the mapping's ``FunctionResponseTypes`` holds
``ReportBatchItemFailures``; without it, any response of a successful invocation is a
whole success.

The response names failed records::

    {"batchItemFailures": [{"itemIdentifier": "<id>"}, ...]}

where ``<id>`` is the SQS ``messageId``, the Kinesis / DynamoDB ``sequenceNumber``, or for
Kafka ``{"partition": "<topic>-<partition>", "offset": N}``.

=================================================  ===================================
response                                           result
=================================================  ===================================
``null``, ``""``, ``{}``, ``[]``                   whole success
``{"batchItemFailures": []}`` / ``null``           whole success
an object without ``batchItemFailures``            whole success
any other non-object value (``"text"``, ``42``)    whole success (no key to read)
``batchItemFailures`` not a list                   whole failure
an item that is not an object, or has no           whole failure
``itemIdentifier`` (``{"foo": ...}``)
an ``itemIdentifier`` that is ``""`` or ``null``   whole failure
an ``itemIdentifier`` of the wrong shape           whole failure
an ``itemIdentifier`` not in the batch             whole failure
raw response bytes that are not valid JSON         whole failure
every item names a record of the batch             partial failure (ids in batch order)
=================================================  ===================================

**What the payload is.** Lambda reads the raw bytes the runtime returned. The Python
runtime serializes the handler's return value with ``json.dumps``, so a handler returning
the ``str`` ``"not json"`` produces the bytes ``"not json"`` (with the quotes): valid
JSON, a string value, not an object — a response without the key, hence a whole
success. Likewise a handler returning the *string* ``'{"batchItemFailures": [...]}'``
returns a JSON string, which is **not** parsed a second time (whole success). pumphouse
mirrors this: :func:`parse_batch_item_failures` takes either

* the decoded return value (``InvocationResult.payload``): any Python value, used as is —
  a ``str`` is a string value, never re-parsed; or
* the raw response body as ``bytes``: parsed as JSON first; bytes that are not valid JSON
  are a whole failure. An empty body counts as ``null`` (no return value).

**Kafka identifiers.** ``{"partition": "<topic>-<partition>", "offset": N}`` is
normalized to the tuple ``("<topic>-<partition>", N)`` by :func:`kafka_item_id`; build the
batch's ids with :func:`kafka_record_id`. The offset is accepted as a JSON integer (what
Powertools' ``KafkaItemIdentifier`` sends) or as a string of decimal digits (what
handlers that serialize 64-bit longs as strings send, e.g. Java/JavaScript); anything
else (floats, booleans, negative numbers, other strings) is a malformed identifier.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson

BATCH_ITEM_FAILURES = "batchItemFailures"
ITEM_IDENTIFIER = "itemIdentifier"


@dataclass(frozen=True)
class WholeSuccess:
    """Every record of the batch succeeded."""


@dataclass(frozen=True)
class WholeFailure:
    """The batch failed as a whole (as if the function had raised)."""

    reason: str


@dataclass(frozen=True)
class PartialFailure:
    """The function reported these records as failed; the others succeeded."""

    failed_ids: tuple[Hashable, ...]
    """Identifiers of the failed records, without duplicates, in batch order."""


BatchResponse: TypeAlias = WholeSuccess | WholeFailure | PartialFailure

WHOLE_SUCCESS = WholeSuccess()


def parse_batch_item_failures(
    payload: Any,
    *,
    batch_ids: Collection[Hashable],
    id_of: Callable[[Any], Hashable | None],
) -> BatchResponse:
    """Classify a handler's response for ``ReportBatchItemFailures``.

    ``payload`` is the decoded return value, or the raw response as ``bytes`` (see the
    module docstring). ``batch_ids`` are the identifiers of the invoked records, in batch
    order (pass a sequence: the order of ``failed_ids`` follows it). ``id_of`` turns an
    ``itemIdentifier`` value into the identifier type of ``batch_ids``, or returns None
    when the value is malformed (:func:`sqs_item_id`, :func:`stream_item_id`,
    :func:`kafka_item_id`).
    """
    failures = _failures(payload)
    if not isinstance(failures, list):
        return failures
    in_batch = batch_ids if isinstance(batch_ids, set | frozenset) else set(batch_ids)
    failed: set[Hashable] = set()
    for index, item in enumerate(failures):
        ident = _failed_id(index, item, in_batch=in_batch, id_of=id_of)
        if isinstance(ident, WholeFailure):
            return ident
        failed.add(ident)
    ordered = tuple(ident for ident in batch_ids if ident in failed)
    return PartialFailure(failed_ids=ordered)


def _failures(payload: Any) -> list[Any] | WholeSuccess | WholeFailure:
    """The non-empty ``batchItemFailures`` list of a response, or what the response
    means without one."""
    if isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
        if not raw.strip():
            return WHOLE_SUCCESS
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return WholeFailure("the function's response is not valid JSON")
    if not isinstance(payload, Mapping):
        # null, "", [], a string, a number: no batchItemFailures key to read.
        return WHOLE_SUCCESS
    failures = payload.get(BATCH_ITEM_FAILURES)
    if failures is None:
        return WHOLE_SUCCESS
    if not isinstance(failures, list):
        return WholeFailure(f"batchItemFailures is a {type(failures).__name__}, not a list")
    return failures if failures else WHOLE_SUCCESS


def _failed_id(
    index: int,
    item: Any,
    *,
    in_batch: Collection[Hashable],
    id_of: Callable[[Any], Hashable | None],
) -> Hashable | WholeFailure:
    """The record one ``batchItemFailures`` entry names, or why the batch failed whole."""
    if not isinstance(item, Mapping) or ITEM_IDENTIFIER not in item:
        return WholeFailure(f"batchItemFailures[{index}] has no itemIdentifier")
    raw_id = item[ITEM_IDENTIFIER]
    if raw_id is None or raw_id == "":
        return WholeFailure(f"batchItemFailures[{index}].itemIdentifier is empty")
    ident = id_of(raw_id)
    if ident is None:
        return WholeFailure(f"batchItemFailures[{index}].itemIdentifier is malformed")
    if ident not in in_batch:
        return WholeFailure(
            f"batchItemFailures[{index}].itemIdentifier names no record of the batch"
        )
    return ident


# --- identifiers per source ----------------------------------------------------------


def sqs_item_id(value: Any) -> str | None:
    """An SQS ``itemIdentifier``: the record's ``messageId`` (a non-empty string)."""
    return value if isinstance(value, str) and value else None


def stream_item_id(value: Any) -> str | None:
    """A Kinesis / DynamoDB Streams ``itemIdentifier``: the record's ``sequenceNumber``
    (a non-empty string)."""
    return value if isinstance(value, str) and value else None


KafkaItemId: TypeAlias = tuple[str, int]
"""``("<topic>-<partition>", offset)``"""


def kafka_item_id(value: Any) -> KafkaItemId | None:
    """A Kafka ``itemIdentifier`` ``{"partition": "<topic>-<p>", "offset": N}`` as
    ``("<topic>-<p>", N)``; None when malformed (see the module docstring)."""
    if not isinstance(value, Mapping):
        return None
    partition = value.get("partition")
    offset = value.get("offset")
    if not isinstance(partition, str) or not partition:
        return None
    if isinstance(offset, bool):
        return None
    if isinstance(offset, int):
        number = offset
    elif isinstance(offset, str) and offset.isascii() and offset.isdigit():
        number = int(offset)
    else:
        return None
    if number < 0:
        return None
    return (partition, number)


def kafka_partition_key(topic: str, partition: int) -> str:
    """The ``"<topic>-<partition>"`` key of Kafka events and identifiers."""
    return f"{topic}-{partition}"


def kafka_record_id(topic: str, partition: int, offset: int) -> KafkaItemId:
    """The identifier of a Kafka record, comparable with :func:`kafka_item_id`'s result."""
    return (kafka_partition_key(topic, partition), offset)
