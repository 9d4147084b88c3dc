"""What a finished SQS batch deletes and what it leaves on the queue (pure).

Acknowledgement
---------------
==============================  ===================================================
outcome                         what is deleted (``DeleteMessageBatch``, chunks of 10)
==============================  ===================================================
success                         every message of the batch
error, timeout, crash, OOM      nothing: the messages come back after the visibility
                                timeout; the queue's RedrivePolicy moves them to its
                                DLQ after ``maxReceiveCount``
ReportBatchItemFailures         every message not reported (docs/behaviour.md §3 matrix, read by
                                :func:`~pumphouse.pollers.responses.
                                parse_batch_item_failures`); an unusable response is a
                                whole failure
filtered out                    deleted at once, never invoked
==============================  ===================================================

FIFO queues
-----------
SQS itself never hands out a message group while messages of that group are in flight;
pumphouse enforces the same (a group is held by one loop from receive to
acknowledgement) so that two in-flight batches never share a ``MessageGroupId``. Inside
a batch the order of each group is the queue's. With a partial batch response the
reported message **and every later message of its group** stay on the queue; other
groups' messages are deleted. Worked example, one batch of six messages::

    batch:     A1  B1  A2  C1  B2  A3
    reported:           A2
    deleted:   A1  B1      C1  B2          (groups B and C flow on)
    kept:               A2          A3     (A3 waits behind A2: order within A holds)

A2 reappears after the visibility timeout; until then group A is blocked: SQS does not
deliver a group's messages while one of them is in flight. A3 is therefore released at
once (``ChangeMessageVisibility`` 0): it waits behind A2 in the queue, and comes back
right after it (moto, unlike SQS, hands out a group's messages that reappear together
last-first; releasing the tail early keeps the order there too). If A2 keeps failing,
the queue's RedrivePolicy moves it to the DLQ, which unblocks the group.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pumphouse.pollers.policy import AttemptOutcome, AttemptResult
from pumphouse.pollers.responses import (
    WHOLE_SUCCESS,
    BatchResponse,
    PartialFailure,
    WholeFailure,
    WholeSuccess,
    parse_batch_item_failures,
    sqs_item_id,
)


@dataclass(frozen=True)
class AckPlan:
    """Which messages of a finished batch to delete and which to leave on the queue."""

    delete: tuple[int, ...]
    """Indexes into the batch of the messages to delete."""
    keep: tuple[int, ...]
    """Indexes of the messages left to reappear after their visibility timeout."""


def plan_acknowledgement(
    message_ids: Sequence[str],
    response: BatchResponse,
    *,
    group_ids: Sequence[str | None] | None = None,
) -> AckPlan:
    """Decide what a finished batch deletes (see the module docstring's tables).

    ``group_ids`` (FIFO queues) are the messages' ``MessageGroupId`` in batch order: with
    a partial failure, a reported message and every later message of its group are
    kept; without them only the reported messages are kept.
    """
    everything = tuple(range(len(message_ids)))
    if isinstance(response, WholeSuccess):
        return AckPlan(delete=everything, keep=())
    if isinstance(response, WholeFailure):
        return AckPlan(delete=(), keep=everything)
    failed = set(response.failed_ids)
    delete: list[int] = []
    keep: list[int] = []
    blocked: set[str] = set()
    for index, message_id in enumerate(message_ids):
        group = group_ids[index] if group_ids is not None else None
        if message_id in failed or (group is not None and group in blocked):
            keep.append(index)
            if group is not None:
                blocked.add(group)
        else:
            delete.append(index)
    return AckPlan(delete=tuple(delete), keep=tuple(keep))


def split_kept_by_group(
    group_ids: Sequence[str | None], keep: Iterable[int]
) -> tuple[list[int], list[int]]:
    """FIFO: the kept messages split into each group's first (``heads``, left to
    reappear after the visibility timeout) and the later ones (``tails``, released at
    once: SQS does not deliver them while their head is in flight). Messages without a
    group are heads.

    >>> split_kept_by_group(["A", "B", "A", "A", None], [0, 2, 3, 4])
    ([0, 4], [2, 3])
    """
    heads: list[int] = []
    tails: list[int] = []
    seen: set[str] = set()
    for index in sorted(keep):
        group = group_ids[index]
        if group is not None and group in seen:
            tails.append(index)
        else:
            heads.append(index)
            if group is not None:
                seen.add(group)
    return heads, tails


def read_response(
    payload: Any, message_ids: Sequence[str], *, report_batch_item_failures: bool
) -> BatchResponse:
    """The batch outcome of a *successful* invocation's return value."""
    if not report_batch_item_failures:
        return WHOLE_SUCCESS
    return parse_batch_item_failures(payload, batch_ids=message_ids, id_of=sqs_item_id)


def batch_response(attempt: AttemptResult) -> BatchResponse:
    """What an attempt means for the messages of an SQS batch: a failure or an attempt
    that did not run keeps every message; a partial response keeps the reported ones."""
    if attempt.outcome is AttemptOutcome.SUCCESS:
        return WHOLE_SUCCESS
    if attempt.outcome is AttemptOutcome.PARTIAL:
        return PartialFailure(attempt.failed_ids)
    return WholeFailure(attempt.reason or "the batch failed")
