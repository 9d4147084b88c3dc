"""A stream record as the consumer keeps it, how a lane's batch is cut, and what the
dispatcher is told about stream records.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pumphouse.pollers.batching import (
    AddResult,
    Batcher,
    BatchLimits,
    assemble_event,
)
from pumphouse.pollers.destinations import (
    stream_failure_record_for,
)
from pumphouse.pollers.dispatch import FailureMessage
from pumphouse.pollers.policy import GiveUp
from pumphouse.pollers.responses import stream_item_id
from pumphouse.pollers.streams.windows import window_start

if TYPE_CHECKING:
    pass


# --- records, lanes, windows (pure helpers) ---------------------------------------------


@dataclass(slots=True)
class StreamRecord:
    """One record read from a shard, already in its Lambda shape and serialized."""

    sequence_number: str
    fragment: bytes
    """The record's Lambda shape, serialized once."""
    arrival: float
    """When the stream received it (epoch seconds)."""
    lane_key: str
    """Partition key (Kinesis) or item key (DynamoDB): decides the lane."""
    position: int = -1
    """Its position in the shard's ack tracker."""
    read_at: float = 0.0
    """Monotonic time it was read (opens the batching window)."""
    shard_id: str = ""
    """The shard it was read from (its failure record and S3 key name it)."""


def take_batch(
    pending: deque[StreamRecord],
    limits: BatchLimits,
    *,
    now: float,
    window_start_at: float | None = None,
    tumbling_seconds: int = 0,
    resume_at: Collection[str] = (),
) -> tuple[list[StreamRecord], list[StreamRecord]]:
    """Take the next batch off the head of ``pending``: ``(batch, oversized)``.

    The batch is cut where :class:`~pumphouse.pollers.batching.Batcher` cuts it (count,
    bytes), before a record of another tumbling window (``window_start_at``), before the
    record a stored retry counter belongs to (``resume_at``: that batch starts there), and
    before a record too large for any event; such a record at the head is taken out into
    ``oversized`` (it can never be delivered).
    """
    batcher: Batcher[StreamRecord] = Batcher(limits)
    taken: list[StreamRecord] = []
    oversized: list[StreamRecord] = []
    while pending:
        record = pending[0]
        if window_start_at is not None and (
            window_start(record.arrival, tumbling_seconds) != window_start_at
        ):
            break
        if resume_at and taken and record.sequence_number in resume_at:
            break  # the batch a stored retry counter belongs to starts here
        result = batcher.add(record, len(record.fragment), now)
        if result is AddResult.OVERSIZED:
            if taken:
                break  # it waits behind the batch, as on every source
            oversized.append(pending.popleft())
            continue
        if result is AddResult.BATCH_FULL:
            break
        taken.append(pending.popleft())
        if batcher.full:
            break
    return taken, oversized


def lane_of(key: str, lanes: int) -> int:
    """The lane of a partition key: stable across processes and restarts (CRC-32)."""
    if lanes <= 1:
        return 0
    return zlib.crc32(key.encode()) % lanes


class StreamBinding:
    """The :class:`~pumphouse.pollers.dispatch.SourceBinding` of Kinesis and DynamoDB
    Streams records, identified by their sequence number."""

    def __init__(
        self, *, source: Literal["kinesis", "dynamodb"], stream_arn: str, function_arn: str
    ) -> None:
        self.source: Literal["kinesis", "dynamodb"] = source
        self.stream_arn = stream_arn
        self.function_arn = function_arn

    def record_id(self, record: StreamRecord) -> Hashable:
        return record.sequence_number

    def item_id(self, identifier: Any) -> Hashable | None:
        return stream_item_id(identifier)

    def arrival(self, record: StreamRecord) -> float:
        return record.arrival

    def oldest_arrival(self, records: Sequence[StreamRecord]) -> float:
        return records[0].arrival  # a shard's records, in sequence order

    def fragment(self, record: StreamRecord) -> bytes:
        return record.fragment

    def event(self, records: Sequence[StreamRecord]) -> bytes:
        return assemble_event([r.fragment for r in records])

    def s3_location(self, records: Sequence[StreamRecord]) -> str:
        return records[0].shard_id

    def failure_messages(
        self, gave_up: GiveUp[StreamRecord], *, destination_type: str, now: float
    ) -> Sequence[FailureMessage]:
        records = gave_up.records
        record = stream_failure_record_for(
            gave_up,
            source=self.source,
            function_arn=self.function_arn,
            shard_id=records[0].shard_id,
            stream_arn=self.stream_arn,
            sequence_number=_sequence,
            arrival=_arrival,
            timestamp=now,
        )
        payload = self.event(records) if destination_type == "s3" else None
        return [FailureMessage(record, payload=payload)]


def _arrival(record: StreamRecord) -> float:
    return record.arrival


def _sequence(record: StreamRecord) -> str:
    return record.sequence_number
