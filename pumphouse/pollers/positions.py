"""Positions that no longer exist: one documented decision per case, never a silent stop.

A stored position — a Kafka group's committed offset, a stream shard's checkpoint — can
outlive what it points into: retention removes old records, a broker comes back empty, a
topic, stream or table is deleted and created again under the same name. Reading on from
such a position either fails forever or, worse, reads nothing without an error. Each
case below is detected, decided by one pure function of this module, logged with both
positions (where we were, what the source holds) and counted in
``pumphouse_position_resets_total{reason}``; records that the source removed before they
were read are counted in ``pumphouse_position_reset_records_total{reason}`` when the
gap is known.

=========================  ==============================================================
reason                     decision
=========================  ==============================================================
``behind_log_start``       Kafka: the committed offset is below the partition's log start
                           (retention removed records never read). Resume at the log
                           start; ``log_start - committed`` records are counted as lost.
``ahead_of_log_end``       Kafka: the position is beyond the partition's high watermark.
                           The log was reset (a broker that came back empty, a topic
                           deleted and recreated): every record written since exists only
                           from the log's beginning, so resume **at its beginning** —
                           skipping to the end would lose them.
``shard_not_in_stream``    Kinesis / DynamoDB Streams: the checkpoint's shard is not in
                           the stream any more (retention removed it).
``sequence_rejected``      Kinesis / DynamoDB Streams: the stream refuses the checkpoint's
                           sequence number (``InvalidArgumentException``, "Unable to find
                           record with provided SequenceNumber", trimmed data).
``earlier_stream``         Kinesis / DynamoDB Streams: the checkpoint was written for an
                           earlier incarnation of the stream (the stream's creation time
                           stored with it differs from the stream's now: the stream or
                           table was deleted and recreated under the same name).
=========================  ==============================================================

The three stream cases share one rule: the checkpoint points at records the stream no
longer has, so the shard starts at ``TRIM_HORIZON`` — the oldest record the stream still
holds — and the stale checkpoint is replaced by the first one written after it. Never
``LATEST``: everything written since the stream changed is only there.

Commits fenced by generation
----------------------------
A Kafka commit that failed is retried, but only within the group generation whose member
finished those records: :class:`CommitFence` remembers the generation each position was
recorded under and drops it once the group moved on. Worked example: partition 0
finishes offset 500 under generation 7; the broker restarts empty, the heartbeat says
``member_id was not recognized``, and the commit of 500 fails. The member rejoins as
generation 1 of a new group on a recreated topic whose log ends at 120: committing 500
now would make every later fetch start past the end. The fence drops it (generation 7 ≠
1), the partition resumes from what the new group holds.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from pumphouse.telemetry.metrics import MappingMetrics

__all__ = [
    "CommitFence",
    "KafkaReset",
    "PositionReset",
    "StreamReset",
    "check_kafka_position",
    "check_stream_checkpoint",
    "report_reset",
]


class PositionReset(StrEnum):
    """Why a stored position was not used (the ``reason`` label)."""

    BEHIND_LOG_START = "behind_log_start"
    AHEAD_OF_LOG_END = "ahead_of_log_end"
    SHARD_NOT_IN_STREAM = "shard_not_in_stream"
    SEQUENCE_REJECTED = "sequence_rejected"
    EARLIER_STREAM = "earlier_stream"


@dataclass(frozen=True, kw_only=True)
class KafkaReset:
    """A Kafka partition position that is outside the partition's log, and where to go."""

    reason: PositionReset
    position: int
    """The committed offset or fetch position that no longer exists."""
    log_start: int | None
    log_end: int | None
    resume_at: int
    """The offset to seek to."""
    records_lost: int
    """Records the log removed before they were read (0 when unknown)."""


def check_kafka_position(
    *, position: int, log_start: int | None, log_end: int | None
) -> KafkaReset | None:
    """None when ``position`` is inside the log ``[log_start, log_end]`` (``log_end``
    being the high watermark: the next offset to be written); else the decision.

    >>> check_kafka_position(position=40, log_start=100, log_end=250).resume_at
    100
    >>> check_kafka_position(position=900, log_start=0, log_end=120).resume_at
    0
    >>> check_kafka_position(position=120, log_start=0, log_end=120) is None
    True
    """
    if log_start is not None and position < log_start:
        return KafkaReset(
            reason=PositionReset.BEHIND_LOG_START,
            position=position,
            log_start=log_start,
            log_end=log_end,
            resume_at=log_start,
            records_lost=log_start - position,
        )
    if log_end is not None and position > log_end:
        return KafkaReset(
            reason=PositionReset.AHEAD_OF_LOG_END,
            position=position,
            log_start=log_start,
            log_end=log_end,
            resume_at=log_start if log_start is not None else 0,
            records_lost=0,
        )
    return None


@dataclass(frozen=True, kw_only=True)
class StreamReset:
    """A stream checkpoint that points at records the stream no longer has."""

    reason: PositionReset
    shard_id: str
    sequence_number: str | None
    checkpoint_stream_created: float | None
    stream_created: float | None
    position: str = "TRIM_HORIZON"
    """Where the shard starts instead (always the oldest record the stream holds)."""


def check_stream_checkpoint(
    *,
    shard_id: str,
    sequence_number: str | None,
    checkpoint_stream_created: float | None,
    stream_created: float | None,
    shard_in_stream: bool,
    sequence_rejected: bool = False,
) -> StreamReset | None:
    """None when the checkpoint can be resumed after; else the decision (module docs).

    A checkpoint without a stored creation time (written before it was kept) is taken to
    belong to the current stream; so is one when the stream's creation time is unknown.

    >>> check_stream_checkpoint(shard_id="s", sequence_number="9",
    ...     checkpoint_stream_created=100.0, stream_created=200.0,
    ...     shard_in_stream=True).reason.value
    'earlier_stream'
    """

    def reset(reason: PositionReset) -> StreamReset:
        return StreamReset(
            reason=reason,
            shard_id=shard_id,
            sequence_number=sequence_number,
            checkpoint_stream_created=checkpoint_stream_created,
            stream_created=stream_created,
        )

    if (
        checkpoint_stream_created is not None
        and stream_created is not None
        and abs(checkpoint_stream_created - stream_created) >= 0.001
    ):
        return reset(PositionReset.EARLIER_STREAM)
    if not shard_in_stream:
        return reset(PositionReset.SHARD_NOT_IN_STREAM)
    if sequence_rejected:
        return reset(PositionReset.SEQUENCE_REJECTED)
    return None


def report_reset(
    decision: KafkaReset | StreamReset, *, metrics: MappingMetrics, logger: Any, **context: Any
) -> None:
    """Log the decision with both positions and count it (one place for every source)."""
    metrics.position_reset(decision.reason.value, records_lost=_records_lost(decision))
    if isinstance(decision, KafkaReset):
        logger.warning(
            "committed position outside the partition's log; resuming at "
            + (
                "the log start"
                if decision.reason is PositionReset.BEHIND_LOG_START
                else "the log's beginning (the log was reset or the topic recreated)"
            ),
            reason=decision.reason.value,
            position=decision.position,
            log_start=decision.log_start,
            log_end=decision.log_end,
            resume_at=decision.resume_at,
            records_lost=decision.records_lost,
            **context,
        )
        return
    logger.warning(
        "checkpoint points at records the stream no longer has; starting at TRIM_HORIZON",
        reason=decision.reason.value,
        shard=decision.shard_id,
        checkpoint_sequence_number=decision.sequence_number,
        checkpoint_stream_created=decision.checkpoint_stream_created,
        stream_created=decision.stream_created,
        **context,
    )


def _records_lost(decision: KafkaReset | StreamReset) -> int:
    return decision.records_lost if isinstance(decision, KafkaReset) else 0


_K = TypeVar("_K", bound=Hashable)


class CommitFence(Generic[_K]):
    """The group generation under which each partition's pending position was recorded
    (module docs: *Commits fenced by generation*). Pure bookkeeping."""

    def __init__(self) -> None:
        self._recorded: dict[_K, Hashable] = {}

    def record(self, key: _K, generation: Hashable) -> None:
        """A position of ``key`` was recorded while the group was at ``generation``. A
        newer position replaces an older one, so the latest generation counts."""
        self._recorded[key] = generation

    def admit(self, keys: Mapping[_K, Any], generation: Hashable) -> tuple[list[_K], list[_K]]:
        """Split ``keys`` into those that may be committed now (recorded under
        ``generation``) and those to drop (recorded under another one)."""
        allowed: list[_K] = []
        stale: list[_K] = []
        for key in keys:
            if self._recorded.get(key, generation) == generation:
                allowed.append(key)
            else:
                stale.append(key)
        return allowed, stale

    def forget(self, key: _K) -> None:
        self._recorded.pop(key, None)
