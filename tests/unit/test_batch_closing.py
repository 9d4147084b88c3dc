"""One batch-closing rule (count, window, 6 MB) for every source.

SQS adds its messages to a :class:`Batcher` and takes the batch when ``add`` refuses a
record or :meth:`Batcher.due` holds: that is the reference below. The Kafka partition
lane (which moves whole runs of records at once for speed) and the stream shard's
:func:`take_batch` must cut exactly the batches the reference cuts from the same records,
each with its own event framing; and all of them decide "close now" with
:func:`batch_due`.
"""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st
from test_kafka_lanes import FRAMING, Msg, prepare

from pumphouse.pollers.batching import (
    RECORDS_FRAMING,
    AddResult,
    Batcher,
    BatchLimits,
    EventFraming,
    batch_due,
)
from pumphouse.pollers.kafka_lanes import OversizedRecord, PartitionLane
from pumphouse.pollers.streams import StreamRecord, take_batch

Cut = tuple[str, tuple[int, ...]]


def reference(
    sizes: list[int], limits: BatchLimits, framing: EventFraming, group: str | None
) -> list[Cut]:
    """What an SQS receive loop cuts from records in hand: add; take on BATCH_FULL (then
    add again) or once full; an oversized record is never part of a batch."""
    batcher: Batcher[int] = Batcher(limits, framing=framing)
    cuts: list[Cut] = []

    def close() -> None:
        cuts.append(("batch", tuple(batcher.take().items)))

    for index, size in enumerate(sizes):
        result = batcher.add(index, size, 0.0, group=group)
        if result is AddResult.BATCH_FULL:
            close()
            result = batcher.add(index, size, 0.0, group=group)
        if result is AddResult.OVERSIZED:
            if len(batcher):
                close()  # the record waits behind the open batch: order is kept
            cuts.append(("oversized", (index,)))
            continue
        if batcher.due(0.0) and batcher.full:
            close()
    if len(batcher):
        close()
    return cuts


def kafka_cuts(sizes: list[int], limits: BatchLimits, chunk: int) -> list[Cut]:
    subject = PartitionLane(
        "t", 0, limits=limits, framing=FRAMING, prepare=prepare, pause_records=10_000
    )
    records = [Msg(o, fragment=b"x" * size) for o, size in enumerate(sizes)]
    for start in range(0, len(records), chunk):
        subject.feed(records[start : start + chunk])
    cuts: list[Cut] = []
    while (step := subject.fill(now=0.0)) is not None:
        if isinstance(step, OversizedRecord):
            cuts.append(("oversized", (step.message.offset,)))
        else:
            cuts.append(("batch", tuple(m.offset for m, _ in step.items)))
        subject.finished(step)
    return cuts


def stream_cuts(sizes: list[int], limits: BatchLimits) -> list[Cut]:
    pending = deque(
        StreamRecord(str(i), b"x" * size, 0.0, "k", position=i) for i, size in enumerate(sizes)
    )
    cuts: list[Cut] = []
    while pending:
        batch, oversized = take_batch(pending, limits, now=0.0)
        cuts.extend(("oversized", (r.position,)) for r in oversized)
        if batch:
            cuts.append(("batch", tuple(r.position for r in batch)))
    return cuts


SIZES = st.lists(st.integers(2, 300), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    sizes=SIZES,
    max_records=st.integers(1, 12),
    max_bytes=st.integers(150, 1500),
    chunk=st.integers(1, 20),
)
def test_every_source_cuts_the_batches_the_reference_cuts(
    sizes: list[int], max_records: int, max_bytes: int, chunk: int
) -> None:
    limits = BatchLimits(max_records=max_records, window_seconds=0, max_bytes=max_bytes)
    assert kafka_cuts(sizes, limits, chunk) == reference(sizes, limits, FRAMING, "t-0")
    assert stream_cuts(sizes, limits) == reference(sizes, limits, RECORDS_FRAMING, None)


@settings(max_examples=100, deadline=None)
@given(sizes=SIZES, max_records=st.integers(1, 12), chunk=st.integers(1, 20))
def test_by_count_alone_every_source_cuts_the_same_batches(
    sizes: list[int], max_records: int, chunk: int
) -> None:
    # With bytes never binding, the envelope of each source makes no difference.
    limits = BatchLimits(max_records=max_records, window_seconds=0)
    kafka = kafka_cuts(sizes, limits, chunk)
    assert kafka == stream_cuts(sizes, limits) == reference(sizes, limits, RECORDS_FRAMING, None)


@given(
    count=st.integers(0, 20),
    max_records=st.integers(1, 10),
    full=st.booleans(),
    window=st.sampled_from([0.0, 0.5, 2.0]),
    opened=st.floats(0, 10),
    now=st.floats(0, 20),
)
def test_the_batcher_and_the_kafka_lane_are_due_by_the_one_rule(
    count: int, max_records: int, full: bool, window: float, opened: float, now: float
) -> None:
    limits = BatchLimits(max_records=max_records, window_seconds=window)
    due = batch_due(limits, count=count, full=full, opened_at=opened, now=now)
    expected = count > 0 and (full or count >= max_records or now >= opened + window)
    assert due is expected
    # The Batcher, filled the same way, says the same.
    batcher: Batcher[int] = Batcher(limits)
    for index in range(min(count, max_records)):
        batcher.add(index, 1, opened)
    if count <= max_records and not full:
        assert batcher.due(now) is batch_due(
            limits, count=min(count, max_records), full=False, opened_at=opened, now=now
        )
