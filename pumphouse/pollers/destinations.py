"""On-failure destinations: the failure record, and delivering it to SQS, SNS or S3.

When the error policy gives records up (retries exhausted, records too old, a Kafka
record too large to invoke), Lambda sends a JSON *failure record* describing them —
not the records themselves — to the mapping's ``DestinationConfig.OnFailure``. The
builders here produce that record exactly (docs/behaviour.md §3)::

    {"requestContext": {"requestId": "c9b8...", "functionArn": "arn:aws:lambda:...:function:f",
                        "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 2},
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                         "functionError": "Unhandled"},
     "version": "1.0", "timestamp": "2019-11-14T00:38:06.021Z",
     "KinesisBatchInfo": {"shardId": "shardId-000000000001", "startSequenceNumber": "...",
                          "endSequenceNumber": "...",
                          "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
                          "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
                          "batchSize": 500, "streamArn": "arn:aws:kinesis:...:stream/s"}}

* DynamoDB Streams uses ``DDBStreamBatchInfo`` with the same fields, its timestamps
  without milliseconds (``2019-11-14T00:38:04Z``).
* Streams omit ``responseContext`` entirely for ``RecordAgeExceeded`` (and whenever no
  invocation result is known).
* Kafka uses ``KafkaBatchInfo: {batchSize, eventSourceArn, bootstrapServers,
  payloadSize, recordsInfo: {"<topic>-<p>": {firstRecordOffset, lastRecordOffset,
  firstRecordTimestamp, lastRecordTimestamp}}}``; offsets are strings and timestamps
  ISO-8601 with milliseconds, as in AWS's samples. ``responseContext`` is ``null`` when
  there is none (``MaximumPayloadSizeExceeded``, ``RecordAgeExceeded``).
  ``eventSourceArn`` is ``null`` for self-managed Kafka (there is no ARN).
* An S3 object carries the record plus ``payload``, the whole original event as an
  escaped JSON **string**, every object key of the record sorted (see
  :func:`s3_failure_object`), under the key
  ``aws/lambda/<mapping UUID>/<shardId or topic-partition>/YYYY/MM/DD/
  YYYY-MM-DDTHH.MM.SS-<uuid4>``. SQS and SNS get the record alone.

Delivery: :func:`make_destination` returns a :class:`FailureDestination` for an
``arn:aws:sqs:...`` (SendMessage to the URL from GetQueueUrl), ``arn:aws:sns:...``
(Publish) or ``arn:aws:s3:::bucket`` (PutObject) ARN, using the service's shared
:class:`~pumphouse.aws.AwsClients`. ``kafka://topic`` is implemented by the Kafka poller
and plugged in through ``kafka_factory``. A failed delivery counts
``destination_failed`` and raises :class:`~pumphouse.errors.DestinationError`;
:func:`deliver_with_retry` retries with capped, jittered backoff until delivered or the
poller is stopping, so nothing is lost silently.

The destination client uses the region of the service's ``AwsClients``; a destination
in another region needs an endpoint that serves it (as moto and most AWS-compatible
servers do).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import orjson
import structlog

from pumphouse.aws import error_code, queue_url
from pumphouse.errors import DestinationError
from pumphouse.pollers.policy import FailureCondition, GiveUp, ResponseContext
from pumphouse.retrying import backoff_delay

if TYPE_CHECKING:
    from pumphouse.aws import AwsClients
    from pumphouse.telemetry.metrics import MappingMetrics

log = structlog.get_logger(__name__)

R = TypeVar("R")

VERSION = "1.0"
KAFKA_DESTINATION_PREFIX = "kafka://"

StreamSource = Literal["kinesis", "dynamodb"]

_BATCH_INFO_KEYS = {
    "kinesis": "KinesisBatchInfo",
    "dynamodb": "DDBStreamBatchInfo",
}


# --- timestamps ----------------------------------------------------------------------


def _utc(millis: int) -> datetime:
    return datetime.fromtimestamp(millis // 1000, tz=UTC)


def iso_millis(epoch_seconds: float) -> str:
    """``2019-11-14T00:38:04.835Z`` for epoch seconds (rounded to the millisecond)."""
    return iso_millis_from_ms(round(epoch_seconds * 1000))


def iso_millis_from_ms(epoch_millis: int) -> str:
    """``2019-11-14T00:38:04.835Z`` for epoch milliseconds (Kafka timestamps)."""
    return _utc(epoch_millis).strftime("%Y-%m-%dT%H:%M:%S") + f".{epoch_millis % 1000:03d}Z"


def iso_seconds(epoch_seconds: float) -> str:
    """``2019-11-14T00:38:04Z`` for epoch seconds (truncated to the second)."""
    return _utc(int(epoch_seconds * 1000)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the failure record --------------------------------------------------------------


def _request_context(
    *,
    request_id: str | None,
    function_arn: str,
    condition: FailureCondition | str,
    approximate_invoke_count: int,
) -> dict[str, Any]:
    return {
        "requestId": request_id if request_id else str(uuid.uuid4()),
        "functionArn": function_arn,
        "condition": str(condition),
        "approximateInvokeCount": approximate_invoke_count,
    }


def stream_failure_record(
    *,
    source: StreamSource,
    request_id: str | None,
    function_arn: str,
    condition: FailureCondition | str,
    approximate_invoke_count: int,
    response_context: ResponseContext | None,
    shard_id: str,
    start_sequence_number: str,
    end_sequence_number: str,
    first_arrival: float,
    last_arrival: float,
    batch_size: int,
    stream_arn: str,
    timestamp: float,
) -> dict[str, Any]:
    """The failure record of a Kinesis (``source="kinesis"``) or DynamoDB Streams
    (``source="dynamodb"``) batch. Times are epoch seconds; ``timestamp`` is when the
    record is written. A missing ``request_id`` gets a fresh UUID."""
    record: dict[str, Any] = {
        "requestContext": _request_context(
            request_id=request_id,
            function_arn=function_arn,
            condition=condition,
            approximate_invoke_count=approximate_invoke_count,
        )
    }
    if response_context is not None and condition != FailureCondition.RECORD_AGE_EXCEEDED:
        record["responseContext"] = response_context.to_json()
    record["version"] = VERSION
    record["timestamp"] = iso_millis(timestamp)
    arrival = iso_millis if source == "kinesis" else iso_seconds
    record[_BATCH_INFO_KEYS[source]] = {
        "shardId": shard_id,
        "startSequenceNumber": start_sequence_number,
        "endSequenceNumber": end_sequence_number,
        "approximateArrivalOfFirstRecord": arrival(first_arrival),
        "approximateArrivalOfLastRecord": arrival(last_arrival),
        "batchSize": batch_size,
        "streamArn": stream_arn,
    }
    return record


def stream_failure_record_for(
    gave_up: GiveUp[R],
    *,
    source: StreamSource,
    function_arn: str,
    shard_id: str,
    stream_arn: str,
    sequence_number: Callable[[R], str],
    arrival: Callable[[R], float],
    timestamp: float,
) -> dict[str, Any]:
    """:func:`stream_failure_record` for records the error policy gave up on."""
    records = gave_up.records
    if not records:
        raise ValueError("a failure record describes at least one record")
    first, last = records[0], records[-1]
    return stream_failure_record(
        source=source,
        request_id=gave_up.request_id,
        function_arn=function_arn,
        condition=gave_up.condition,
        approximate_invoke_count=gave_up.approximate_invoke_count,
        response_context=gave_up.response_context,
        shard_id=shard_id,
        start_sequence_number=sequence_number(first),
        end_sequence_number=sequence_number(last),
        first_arrival=arrival(first),
        last_arrival=arrival(last),
        batch_size=len(records),
        stream_arn=stream_arn,
        timestamp=timestamp,
    )


@dataclass(frozen=True)
class KafkaPartitionInfo:
    """One entry of ``KafkaBatchInfo.recordsInfo``."""

    first_offset: int
    last_offset: int
    first_timestamp_ms: int
    last_timestamp_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "firstRecordOffset": str(self.first_offset),
            "lastRecordOffset": str(self.last_offset),
            "firstRecordTimestamp": iso_millis_from_ms(self.first_timestamp_ms),
            "lastRecordTimestamp": iso_millis_from_ms(self.last_timestamp_ms),
        }


def kafka_failure_record(
    *,
    request_id: str | None,
    function_arn: str,
    condition: FailureCondition | str,
    approximate_invoke_count: int,
    response_context: ResponseContext | None,
    event_source_arn: str | None,
    bootstrap_servers: str,
    payload_size: int,
    batch_size: int,
    records_info: Mapping[str, KafkaPartitionInfo],
    timestamp: float,
) -> dict[str, Any]:
    """The failure record of a Kafka batch (SQS, SNS and S3 destinations).

    ``records_info`` maps ``"<topic>-<partition>"`` to that partition's first and last
    record; ``payload_size`` is the size of the event in bytes.
    """
    return _kafka_record(
        request_id=request_id,
        function_arn=function_arn,
        condition=condition,
        approximate_invoke_count=approximate_invoke_count,
        response_context=response_context,
        timestamp=timestamp,
        batch_info={
            "batchSize": batch_size,
            "eventSourceArn": event_source_arn,
            "bootstrapServers": bootstrap_servers,
            "payloadSize": payload_size,
            "recordsInfo": {key: info.to_json() for key, info in records_info.items()},
        },
    )


def _kafka_record(
    *,
    request_id: str | None,
    function_arn: str,
    condition: FailureCondition | str,
    approximate_invoke_count: int,
    response_context: ResponseContext | None,
    timestamp: float,
    batch_info: dict[str, Any],
) -> dict[str, Any]:
    """The envelope both Kafka failure records share (``responseContext`` null when
    there is none), around their ``KafkaBatchInfo``."""
    return {
        "requestContext": _request_context(
            request_id=request_id,
            function_arn=function_arn,
            condition=condition,
            approximate_invoke_count=approximate_invoke_count,
        ),
        "responseContext": None if response_context is None else response_context.to_json(),
        "version": VERSION,
        "timestamp": iso_millis(timestamp),
        "KafkaBatchInfo": batch_info,
    }


def kafka_records_info(
    records: Sequence[R],
    *,
    partition_key: Callable[[R], str],
    offset: Callable[[R], int],
    timestamp_ms: Callable[[R], int],
) -> dict[str, KafkaPartitionInfo]:
    """``recordsInfo`` for records in read order (grouped by partition key)."""
    info: dict[str, KafkaPartitionInfo] = {}
    for rec in records:
        key = partition_key(rec)
        seen = info.get(key)
        if seen is None:
            info[key] = KafkaPartitionInfo(
                offset(rec), offset(rec), timestamp_ms(rec), timestamp_ms(rec)
            )
        else:
            info[key] = KafkaPartitionInfo(
                seen.first_offset, offset(rec), seen.first_timestamp_ms, timestamp_ms(rec)
            )
    return info


def kafka_failure_record_for(
    gave_up: GiveUp[R],
    *,
    function_arn: str,
    event_source_arn: str | None,
    bootstrap_servers: str,
    payload_size: int,
    partition_key: Callable[[R], str],
    offset: Callable[[R], int],
    timestamp_ms: Callable[[R], int],
    timestamp: float,
) -> dict[str, Any]:
    """:func:`kafka_failure_record` for records the error policy gave up on."""
    if not gave_up.records:
        raise ValueError("a failure record describes at least one record")
    return kafka_failure_record(
        request_id=gave_up.request_id,
        function_arn=function_arn,
        condition=gave_up.condition,
        approximate_invoke_count=gave_up.approximate_invoke_count,
        response_context=gave_up.response_context,
        event_source_arn=event_source_arn,
        bootstrap_servers=bootstrap_servers,
        payload_size=payload_size,
        batch_size=len(gave_up.records),
        records_info=kafka_records_info(
            gave_up.records, partition_key=partition_key, offset=offset, timestamp_ms=timestamp_ms
        ),
        timestamp=timestamp,
    )


def kafka_topic_failure_record(
    *,
    request_id: str | None,
    function_arn: str,
    condition: FailureCondition | str,
    approximate_invoke_count: int,
    response_context: ResponseContext | None,
    event_source_arn: str | None,
    bootstrap_servers: str,
    payload_size: int,
    offset: int,
    timestamp_ms: int,
    timestamp: float,
) -> dict[str, Any]:
    """The metadata of one failed record for a ``kafka://`` destination: one message per
    failed record, with ``KafkaBatchInfo.recordInfo`` (``batchSize`` 1). Encode it with
    :func:`encode_failure_record` and the event holding that record as ``payload``."""
    return _kafka_record(
        request_id=request_id,
        function_arn=function_arn,
        condition=condition,
        approximate_invoke_count=approximate_invoke_count,
        response_context=response_context,
        timestamp=timestamp,
        batch_info={
            "batchSize": 1,
            "eventSourceArn": event_source_arn,
            "bootstrapServers": bootstrap_servers,
            "payloadSize": payload_size,
            "recordInfo": {"offset": str(offset), "timestamp": iso_millis_from_ms(timestamp_ms)},
        },
    )


def encode_failure_record(record: Mapping[str, Any], *, payload: bytes | None = None) -> bytes:
    """The record as JSON bytes; with ``payload`` (an event, already JSON) spliced in as
    the ``payload`` field without parsing or re-serializing it."""
    body = orjson.dumps(record)
    if payload is None:
        return body
    if not body.endswith(b"}") or len(body) < 2:
        raise ValueError("a failure record is a JSON object")
    separator = b"," if len(body) > 2 else b""
    return body[:-1] + separator + b'"payload":' + payload + b"}"


def s3_failure_object(record: Mapping[str, Any], *, payload: bytes | None) -> bytes:
    """The body of an S3 on-failure object: the record with ``payload`` (the event, JSON
    bytes) as an escaped JSON string, and the keys of every object sorted.

    Evidence (AWS's own objects are not public; this is the strongest there is):

    * Key order — AWS-validated recordings of the S3 object in LocalStack's tests
      (localstack/localstack, ``tests/aws/services/lambda_/event_source_mapping/``
      ``test_lambda_integration_kinesis.snapshot.json`` and ``..._dynamodbstreams...``,
      key ``record_body`` of ``test_*_event_source_mapping_with_s3_on_failure_destination``,
      last validated against AWS 2025-11-25) list the top level as ``KinesisBatchInfo``
      / ``DDBStreamBatchInfo``, ``payload``, ``requestContext``, ``responseContext``,
      ``timestamp``, ``version``, and ``requestContext``, ``responseContext`` and the
      batch info each alphabetically — while the SQS and SNS records of the same
      recordings keep the unsorted order.
    * ``payload`` a string — AWS's developer guide shows it as an escaped JSON string.
      The recordings agree: the events inside ``payload`` keep Lambda's field order
      (``kinesis``, ``eventSource``, ``eventVersion``, ...) where everything else in the
      object is sorted, so the payload was serialized apart from the sorted document
      and embedded as text. (The recordings show it decoded only because the recorder,
      localstack-snapshot's ``_transform_dict_to_parseable_values``, parses every
      string value that starts with ``{``.)
    """
    body = dict(record)
    if payload is not None:
        body["payload"] = payload.decode("utf-8")
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def s3_object_key(
    *, mapping_uuid: str, location: str, when: float, unique: str | None = None
) -> str:
    """``aws/lambda/<mapping UUID>/<location>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid4>``;
    ``location`` is the shard id or ``"<topic>-<partition>"``."""
    moment = datetime.fromtimestamp(when, tz=UTC)
    suffix = unique if unique is not None else str(uuid.uuid4())
    return (
        f"aws/lambda/{mapping_uuid}/{location}/"
        f"{moment:%Y/%m/%d}/{moment:%Y-%m-%dT%H.%M.%S}-{suffix}"
    )


def described_record_count(record: Mapping[str, Any]) -> int:
    """How many source records a failure record describes (its ``batchSize``)."""
    for key in ("KinesisBatchInfo", "DDBStreamBatchInfo", "KafkaBatchInfo"):
        info = record.get(key)
        if isinstance(info, Mapping):
            size = info.get("batchSize")
            if isinstance(size, int) and not isinstance(size, bool):
                return size
    return 1


# --- delivery ------------------------------------------------------------------------


class DestinationType(StrEnum):
    SQS = "sqs"
    SNS = "sns"
    S3 = "s3"
    KAFKA = "kafka"


@dataclass(frozen=True)
class S3KeyParts:
    """What an S3 destination needs to name the object."""

    mapping_uuid: str
    location: str
    """The shard id, or ``"<topic>-<partition>"``."""
    when: float | None = None
    """Epoch seconds for the date in the key; None = now."""


class FailureDestination(Protocol):
    """Somewhere failure records go. The Kafka poller implements ``kafka://`` ones."""

    @property
    def destination_type(self) -> str:
        """``sqs``, ``sns``, ``s3`` or ``kafka`` (the metric label)."""
        ...

    @property
    def target(self) -> str:
        """The destination as configured (ARN or ``kafka://topic``)."""
        ...

    async def deliver(
        self,
        record: Mapping[str, Any],
        *,
        payload: bytes | None = None,
        s3_key_parts: S3KeyParts | None = None,
        message_key: bytes | None = None,
    ) -> None:
        """Deliver one failure record, or raise DestinationError.

        ``payload`` is the original event (JSON bytes): stored by S3 (and Kafka)
        destinations, ignored by SQS and SNS. ``s3_key_parts`` is required by S3.
        ``message_key`` is the Kafka message key (Kafka destinations only).
        """
        ...


KafkaDestinationFactory = Callable[[str], FailureDestination]
"""Builds the destination for ``kafka://<topic>`` given the topic name."""


def _describe(err: BaseException) -> str:
    code = error_code(err)
    text = str(err) or type(err).__name__
    return f"{code}: {text}" if code and code not in text else text


class AwsDestination(ABC):
    """A destination reached through an aiobotocore client."""

    destination_type: str

    def __init__(self, arn: str, *, clients: AwsClients) -> None:
        self.arn = arn
        self.clients = clients

    @property
    def target(self) -> str:
        return self.arn

    async def deliver(
        self,
        record: Mapping[str, Any],
        *,
        payload: bytes | None = None,
        s3_key_parts: S3KeyParts | None = None,
        message_key: bytes | None = None,
    ) -> None:
        self._check(s3_key_parts)  # a caller's bug, not a delivery failure: never retried
        try:
            await self._send(record, payload=payload, s3_key_parts=s3_key_parts)
        except Exception as err:
            self._forget()
            raise DestinationError(
                f"cannot deliver an on-failure record to {self.arn}: {_describe(err)}"
            ) from err

    @abstractmethod
    async def _send(
        self,
        record: Mapping[str, Any],
        *,
        payload: bytes | None,
        s3_key_parts: S3KeyParts | None,
    ) -> None: ...

    def _check(self, s3_key_parts: S3KeyParts | None) -> None:  # noqa: B027 - optional hook
        """Raise ValueError when the call lacks something this destination needs."""

    def _forget(self) -> None:  # noqa: B027 - optional hook: most destinations cache nothing
        """Drop anything cached about the destination after a failure."""


def _arn_parts(arn: str, service: str) -> list[str]:
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != service or not parts[5]:
        raise ValueError(f"not an {service.upper()} ARN: {arn!r}")
    return parts


class SqsDestination(AwsDestination):
    """SendMessage to the queue of ``arn:aws:sqs:<region>:<account>:<name>``."""

    destination_type = DestinationType.SQS.value

    def __init__(self, arn: str, *, clients: AwsClients) -> None:
        super().__init__(arn, clients=clients)
        parts = _arn_parts(arn, "sqs")
        self.account = parts[4]
        self.queue_name = parts[5]
        self._queue_url: str | None = None

    async def queue_url(self) -> str:
        if self._queue_url is None:
            sqs = await self.clients.client("sqs")
            self._queue_url = await queue_url(sqs, self.queue_name, self.account)
        return self._queue_url

    async def _send(
        self,
        record: Mapping[str, Any],
        *,
        payload: bytes | None,
        s3_key_parts: S3KeyParts | None,
    ) -> None:
        url = await self.queue_url()
        sqs = await self.clients.client("sqs")
        body = encode_failure_record(record).decode()
        kwargs: dict[str, str] = {"QueueUrl": url, "MessageBody": body}
        if self.queue_name.endswith(".fifo"):
            # A FIFO destination needs a group; the request id deduplicates retries.
            kwargs["MessageGroupId"] = "pumphouse-on-failure"
            kwargs["MessageDeduplicationId"] = str(
                record.get("requestContext", {}).get("requestId") or uuid.uuid4()
            )[:128]
        await sqs.send_message(**kwargs)

    def _forget(self) -> None:
        self._queue_url = None


class SnsDestination(AwsDestination):
    """Publish to the topic ``arn:aws:sns:<region>:<account>:<name>``."""

    destination_type = DestinationType.SNS.value

    def __init__(self, arn: str, *, clients: AwsClients) -> None:
        super().__init__(arn, clients=clients)
        _arn_parts(arn, "sns")

    async def _send(
        self,
        record: Mapping[str, Any],
        *,
        payload: bytes | None,
        s3_key_parts: S3KeyParts | None,
    ) -> None:
        sns = await self.clients.client("sns")
        await sns.publish(TopicArn=self.arn, Message=encode_failure_record(record).decode())


class S3Destination(AwsDestination):
    """PutObject into the bucket of ``arn:aws:s3:::<bucket>``; the object holds the
    record plus ``payload`` (:func:`s3_failure_object`)."""

    destination_type = DestinationType.S3.value

    def __init__(self, arn: str, *, clients: AwsClients) -> None:
        super().__init__(arn, clients=clients)
        parts = _arn_parts(arn, "s3")
        self.bucket = parts[5].split("/", 1)[0]
        if not self.bucket:
            raise ValueError(f"no bucket in S3 ARN {arn!r}")

    def _check(self, s3_key_parts: S3KeyParts | None) -> None:
        if s3_key_parts is None:
            raise ValueError("an S3 destination needs s3_key_parts to name the object")

    async def _send(
        self,
        record: Mapping[str, Any],
        *,
        payload: bytes | None,
        s3_key_parts: S3KeyParts | None,
    ) -> None:
        if s3_key_parts is None:  # pragma: no cover - _check refused it already
            raise ValueError("an S3 destination needs s3_key_parts to name the object")
        when = s3_key_parts.when if s3_key_parts.when is not None else time.time()
        key = s3_object_key(
            mapping_uuid=s3_key_parts.mapping_uuid, location=s3_key_parts.location, when=when
        )
        s3 = await self.clients.client("s3")
        await s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=s3_failure_object(record, payload=payload),
            ContentType="application/json",
        )


def destination_type(target: str) -> DestinationType:
    """The kind of destination a ``DestinationConfig.OnFailure.Destination`` names;
    ValueError when it is none pumphouse supports."""
    if target.startswith(KAFKA_DESTINATION_PREFIX):
        if not target[len(KAFKA_DESTINATION_PREFIX) :]:
            raise ValueError(f"no topic in Kafka destination {target!r}")
        return DestinationType.KAFKA
    parts = target.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn":
        service = parts[2]
        if service == "sqs":
            return DestinationType.SQS
        if service == "sns":
            return DestinationType.SNS
        if service == "s3":
            return DestinationType.S3
    raise ValueError(
        f"unsupported on-failure destination {target!r}: use an SQS queue, SNS topic or "
        "S3 bucket ARN, or kafka://<topic>"
    )


def make_destination(
    target: str,
    *,
    clients: AwsClients,
    kafka_factory: KafkaDestinationFactory | None = None,
) -> FailureDestination:
    """The destination for a ``DestinationConfig.OnFailure.Destination`` value."""
    kind = destination_type(target)
    if kind is DestinationType.KAFKA:
        if kafka_factory is None:
            raise ValueError(f"{target}: Kafka destinations are only available to Kafka mappings")
        return kafka_factory(target[len(KAFKA_DESTINATION_PREFIX) :])
    if kind is DestinationType.SQS:
        return SqsDestination(target, clients=clients)
    if kind is DestinationType.SNS:
        return SnsDestination(target, clients=clients)
    return S3Destination(target, clients=clients)


async def deliver_with_retry(
    destination: FailureDestination,
    record: Mapping[str, Any],
    *,
    stop: Callable[[], bool],
    payload: bytes | None = None,
    s3_key_parts: S3KeyParts | None = None,
    message_key: bytes | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    base_delay: float = 0.2,
    max_delay: float = 30.0,
    jitter: Callable[[], float] = random.random,
    on_failure: Callable[[DestinationError], None] | None = None,
    metrics: MappingMetrics | None = None,
) -> int:
    """Deliver until it succeeds; returns the number of attempts.

    Between attempts it waits ``min(max_delay, base_delay * 2^(n-1))``, jittered to
    between half and all of it. When ``stop()`` is true after a failure, the last
    :class:`~pumphouse.errors.DestinationError` is raised instead of waiting: the caller
    must then not checkpoint past the records this record describes. ``on_failure``
    is called with every failed attempt's error. With ``metrics``, every failed attempt
    counts a destination delivery failure, and the delivery counts the destination
    delivery and the records the failure record describes.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            await destination.deliver(
                record, payload=payload, s3_key_parts=s3_key_parts, message_key=message_key
            )
        except DestinationError as err:
            if metrics is not None:
                metrics.destination_failed(destination.destination_type)
            if on_failure is not None:
                on_failure(err)
            if stop():
                raise
            delay = backoff_delay(attempt, base=base_delay, cap=max_delay, rand=jitter)
            log.warning(
                "on-failure delivery failed; retrying",
                destination=destination.target,
                attempt=attempt,
                retry_in=round(delay, 3),
                error=str(err),
            )
            await sleep(delay)
            if stop():
                raise
            continue
        if metrics is not None:
            metrics.destination_delivered(destination.destination_type)
            metrics.on_failure_delivered.inc(described_record_count(record))
        return attempt
