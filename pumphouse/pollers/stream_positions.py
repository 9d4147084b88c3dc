"""Stream checkpoints that no longer exist, checked for the Kinesis / DynamoDB Streams
poller (the rule and its cases: :mod:`pumphouse.pollers.positions`).

* :func:`stream_created_at` reads the stream's creation time from a describe answer
  (Kinesis ``StreamCreationTimestamp``, DynamoDB Streams ``CreationRequestDateTime``);
  every checkpoint written carries it.
* :func:`report_vanished` counts, once, a checkpoint whose shard the stream no longer
  lists (its children, if any, start at ``TRIM_HORIZON`` as after any parent).
* :func:`current_checkpoints` leaves out the checkpoints of an earlier incarnation of the
  stream, so that an old ``shard_ended`` never marks a new shard of the same id ended.
* :func:`checked_checkpoint` decides, when a shard starts, whether its checkpoint can be
  resumed after; if not, the shard starts at ``TRIM_HORIZON`` without it (its retry
  counters and window state belonged to records that are gone).
* a checkpoint's sequence number the stream refuses (Kinesis
  ``InvalidArgumentException``: "Unable to find record with provided SequenceNumber",
  which the source raises as :class:`~pumphouse.pollers.streams.DataTrimmed`) or has
  trimmed: :func:`report_rejected` counts it; the shard continues from ``TRIM_HORIZON``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from pumphouse.pollers.positions import PositionReset, check_stream_checkpoint, report_reset

if TYPE_CHECKING:
    from pumphouse.state import Checkpoint
    from pumphouse.telemetry.metrics import MappingMetrics

__all__ = [
    "checked_checkpoint",
    "current_checkpoints",
    "report_rejected",
    "report_vanished",
    "stream_created_at",
]


def stream_created_at(value: Any) -> float | None:
    """Epoch seconds of a creation time as botocore returns it (a datetime, or a number)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return float(value.timestamp())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _of_this_stream(checkpoint: Checkpoint, stream_created: float | None) -> bool:
    return (
        check_stream_checkpoint(
            shard_id="",
            sequence_number=checkpoint.sequence_number,
            checkpoint_stream_created=checkpoint.stream_created,
            stream_created=stream_created,
            shard_in_stream=True,
        )
        is None
    )


def current_checkpoints(
    checkpoints: Mapping[str, Checkpoint], *, stream_created: float | None
) -> dict[str, Checkpoint]:
    """The checkpoints written for this incarnation of the stream (or before creation
    times were kept)."""
    return {
        shard: checkpoint
        for shard, checkpoint in checkpoints.items()
        if _of_this_stream(checkpoint, stream_created)
    }


def report_vanished(
    checkpoints: Mapping[str, Checkpoint],
    *,
    listed: Collection[str],
    reported: set[str],
    metrics: MappingMetrics,
    logger: Any,
) -> None:
    """Count, once per shard, a checkpoint whose shard is not in the stream any more
    (retention removed it before it was read to its end): the records after the
    checkpoint are gone; the shards that follow it start at ``TRIM_HORIZON``. Nothing is
    judged before the stream's shards were listed once (``listed`` empty)."""
    if not listed:
        return
    for shard_id, checkpoint in checkpoints.items():
        if shard_id in listed or shard_id in reported or checkpoint.shard_ended:
            continue
        decision = check_stream_checkpoint(
            shard_id=shard_id,
            sequence_number=checkpoint.sequence_number,
            checkpoint_stream_created=checkpoint.stream_created,
            stream_created=None,
            shard_in_stream=False,
        )
        if decision is not None:
            reported.add(shard_id)
            report_reset(decision, metrics=metrics, logger=logger)


def checked_checkpoint(
    checkpoint: Checkpoint | None,
    *,
    shard_id: str,
    stream_created: float | None,
    metrics: MappingMetrics,
    logger: Any,
) -> tuple[Checkpoint | None, bool]:
    """``(checkpoint, False)`` when the shard can resume after it; ``(None, True)`` when
    it points at records the stream no longer has (logged and counted): the shard then
    starts at ``TRIM_HORIZON``."""
    if checkpoint is None:
        return None, False
    decision = check_stream_checkpoint(
        shard_id=shard_id,
        sequence_number=checkpoint.sequence_number,
        checkpoint_stream_created=checkpoint.stream_created,
        stream_created=stream_created,
        shard_in_stream=True,
    )
    if decision is None:
        return checkpoint, False
    report_reset(decision, metrics=metrics, logger=logger)
    return None, True


def report_rejected(
    err: Exception,
    *,
    shard_id: str,
    sequence_number: str | None,
    stream_created: float | None,
    metrics: MappingMetrics,
    logger: Any,
) -> None:
    """Count a checkpoint's sequence number the stream refused or trimmed (the caller
    goes on from ``TRIM_HORIZON``). Positions other than a checkpoint's are not counted."""
    if sequence_number is None:
        return
    decision = check_stream_checkpoint(
        shard_id=shard_id,
        sequence_number=sequence_number,
        checkpoint_stream_created=None,
        stream_created=stream_created,
        shard_in_stream=True,
        sequence_rejected=True,
    )
    if decision is not None and decision.reason is PositionReset.SEQUENCE_REJECTED:
        report_reset(decision, metrics=metrics, logger=logger, error=str(err))
