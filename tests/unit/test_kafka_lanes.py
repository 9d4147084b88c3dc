"""A partition lane: batches in offset order, commits only finished work."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pumphouse.pollers.batching import (
    AddResult,
    Batcher,
    BatchLimits,
    KafkaFraming,
    assemble_kafka_event,
)
from pumphouse.pollers.kafka_lanes import LaneBatch, OversizedRecord, PartitionLane, Prepare

FRAMING = KafkaFraming(event_source="SelfManagedKafka", bootstrap_servers="127.0.0.1:9092")


@dataclass(frozen=True)
class Msg:
    offset: int
    topic: str = "t"
    partition: int = 0
    timestamp: int = 1_700_000_000_000
    timestamp_type: int = 0
    key: bytes | None = None
    value: bytes | None = b"v"
    headers: tuple[tuple[str, bytes | None], ...] = field(default_factory=tuple)
    fragment: bytes | None = None
    """What ``prepare`` makes of it in these tests (None: filtered out)."""


def _prepare(messages: Sequence[Msg]) -> list[bytes | None]:
    return [m.fragment for m in messages]


prepare = cast(Prepare, _prepare)  # Msg has every field of a KafkaMessage


def item(offset: int, *, filtered: bool = False, size: int = 10) -> Msg:
    fragment = None if filtered else orjson.dumps({"o": offset, "p": "x" * size})
    return Msg(offset, fragment=fragment)


def feed(subject: PartitionLane, items: Iterable[Msg]) -> int:
    return subject.feed(list(items))


def lane(batch_size: int = 100, window: float = 0.0, **kwargs: int) -> PartitionLane:
    return PartitionLane(
        "t",
        0,
        limits=BatchLimits(max_records=batch_size, window_seconds=window),
        framing=FRAMING,
        prepare=prepare,
        pause_records=kwargs.pop("pause_records", 1000),
        **kwargs,
    )


def offsets(step: LaneBatch) -> list[int]:
    return [m.offset for m, _ in step.items]


def test_window_zero_takes_what_is_buffered_up_to_batch_size() -> None:
    subject = lane(batch_size=3)
    feed(subject, [item(o) for o in range(10, 15)])
    first = subject.fill(now=0.0)
    assert isinstance(first, LaneBatch)
    assert offsets(first) == [10, 11, 12]
    assert first.end_offset == 13
    assert subject.done_offset is None  # nothing finished yet
    subject.finished(first)
    assert subject.done_offset == 13
    assert subject.take_progress() == (13, 3)
    assert subject.take_progress() is None
    second = subject.fill(now=0.0)
    assert isinstance(second, LaneBatch)
    assert offsets(second) == [13, 14]
    assert subject.fill(now=0.0) is None  # nothing left: wait


def test_event_size_is_exact() -> None:
    subject = lane()
    feed(subject, [item(o, size=o) for o in range(5)])
    step = subject.fill(now=0.0)
    assert isinstance(step, LaneBatch)
    event = assemble_kafka_event({"t-0": [f for _, f in step.items]}, framing=FRAMING)
    assert step.size_bytes == len(event)


@given(st.lists(st.binary(max_size=40), max_size=6), st.sampled_from(["t", "or%ders", "ü"]))
def test_lane_event_is_assemble_kafka_event(raw: list[bytes], topic: str) -> None:
    fragments = [orjson.dumps({"v": r.hex()}) for r in raw]
    framing = KafkaFraming(
        event_source="aws:kafka", bootstrap_servers="b-1:9092", event_source_arn="arn:x"
    )
    subject = PartitionLane(
        topic,
        7,
        limits=BatchLimits(max_records=10, window_seconds=0.0),
        framing=framing,
        prepare=prepare,
        pause_records=10,
    )
    expected = assemble_kafka_event({f"{topic}-7": fragments}, framing=framing)
    assert subject.event(fragments) == expected
    assert subject.event(tuple(fragments)) == expected
    if fragments:
        assert len(expected) == subject._size_with(len(fragments), sum(map(len, fragments)))


def test_window_keeps_the_batch_open_until_its_deadline() -> None:
    subject = lane(batch_size=10, window=0.5)
    feed(subject, [item(1)])
    assert subject.fill(now=100.0) is None
    assert subject.deadline == 100.5
    feed(subject, [item(2)])
    assert subject.fill(now=100.3) is None  # later records do not move the deadline
    step = subject.fill(now=100.5)
    assert isinstance(step, LaneBatch)
    assert offsets(step) == [1, 2]


def test_full_batch_closes_before_the_window() -> None:
    subject = lane(batch_size=2, window=60)
    feed(subject, [item(o) for o in range(3)])
    step = subject.fill(now=0.0)
    assert isinstance(step, LaneBatch)
    assert offsets(step) == [0, 1]


def test_worked_example_filtered_records_are_covered_by_the_open_batch() -> None:
    """The module docstring's example: 10..15, 11 and 14 filtered out."""
    subject = lane(batch_size=100, window=1.0)
    feed(subject, [item(10), item(11, filtered=True), item(12), item(13), item(14, filtered=True)])
    assert subject.fill(now=0.0) is None  # window open
    step = subject.fill(now=1.0)
    assert isinstance(step, LaneBatch)
    assert offsets(step) == [10, 12, 13]
    assert step.end_offset == 15
    assert step.covered == 5
    subject.finished(step, step.items[:1])  # a bisected half
    assert subject.take_progress() == (11, 1)
    subject.finished(step, step.items[1:])  # the rest: the whole batch is finished
    assert subject.take_progress() == (15, 4)
    feed(subject, [item(15)])
    assert subject.fill(now=5.0) is None  # 15 opens the next batch
    nxt = subject.fill(now=6.0)
    assert isinstance(nxt, LaneBatch)
    assert offsets(nxt) == [15]


def test_filtered_records_with_no_open_batch_finish_at_once() -> None:
    subject = lane(batch_size=10, window=5.0)
    feed(subject, [item(0, filtered=True), item(1, filtered=True)])
    assert subject.fill(now=0.0) is None
    assert subject.done_offset == 2
    assert subject.take_progress() == (2, 2)


def test_filter_everything_still_moves_the_commit_position() -> None:
    subject = lane()
    feed(subject, [item(o, filtered=True) for o in range(1000)])
    assert subject.fill(now=0.0) is None
    assert subject.done_offset == 1000


def test_a_failed_prefix_does_not_move_the_position() -> None:
    subject = lane()
    feed(subject, [item(o) for o in range(4)])
    step = subject.fill(now=0.0)
    assert isinstance(step, LaneBatch)
    # Nothing finished: a batch retried forever holds the position where it was.
    assert subject.done_offset is None
    subject.finished(step, step.items[:2])
    assert subject.done_offset == 2


def test_oversized_record_waits_behind_the_open_batch() -> None:
    limits = BatchLimits(max_records=10, window_seconds=0, max_bytes=400)
    subject = PartitionLane(
        "t",
        0,
        limits=limits,
        framing=FRAMING,
        prepare=prepare,
        pause_records=100,
    )
    feed(subject, [item(0), item(1, size=1000), item(2)])
    first = subject.fill(now=0.0)
    assert isinstance(first, LaneBatch)
    assert offsets(first) == [0]
    subject.finished(first)
    big = subject.fill(now=0.0)
    assert isinstance(big, OversizedRecord)
    assert big.message.offset == 1
    assert big.event_size > 400
    subject.finished(big)
    assert subject.done_offset == 2
    last = subject.fill(now=0.0)
    assert isinstance(last, LaneBatch)
    assert offsets(last) == [2]


def test_refetched_records_are_ignored() -> None:
    subject = lane()
    assert feed(subject, [item(o) for o in range(5)]) == 5
    assert feed(subject, [item(o) for o in range(3, 7)]) == 2
    assert subject.buffered == 7
    assert subject.next_fetch_offset == 7


def test_pause_and_resume_thresholds() -> None:
    subject = lane(batch_size=2, pause_records=4)
    feed(subject, [item(o) for o in range(4)])
    assert subject.wants_pause
    subject.paused = True
    assert not subject.wants_pause
    assert not subject.wants_resume
    step = subject.fill(now=0.0)
    assert isinstance(step, LaneBatch)
    assert subject.buffered == 2
    assert subject.wants_resume


def test_pause_on_bytes() -> None:
    subject = lane(pause_records=1000, pause_bytes=100)
    feed(subject, [item(0, size=200)])
    assert subject.wants_pause


def test_discard_forgets_the_buffer_but_keeps_the_position() -> None:
    subject = lane(window=10)
    feed(subject, [item(o) for o in range(3)])
    step = subject.fill(now=0.0)
    assert step is None
    feed(subject, [item(3, filtered=True)])
    subject.discard()
    assert subject.buffered == 0
    assert subject.open_records == 0
    assert subject.done_offset is None
    # After a seek the lane accepts earlier offsets again.
    assert feed(subject, [item(0)]) == 1


def reference_batches(sizes: list[int], limits: BatchLimits) -> list[tuple[str, list[int], int]]:
    """What Batcher cuts from the same records (window 0, everything available)."""
    batcher: Batcher[int] = Batcher(limits, framing=FRAMING)
    out: list[tuple[str, list[int], int]] = []

    def close() -> None:
        batch = batcher.take()
        out.append(("batch", list(batch.items), batch.size_bytes))

    for offset, size in enumerate(sizes):
        result = batcher.add(offset, size, 0.0, group="t-0")
        if result is AddResult.OVERSIZED:
            if len(batcher):
                close()
            out.append(("oversized", [offset], batcher.size_alone(size, group="t-0")))
            continue
        if result is AddResult.BATCH_FULL:
            close()
            assert batcher.add(offset, size, 0.0, group="t-0") is AddResult.ACCEPTED
    if len(batcher):
        close()
    return out


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(2, 300), min_size=1, max_size=60),
    max_records=st.integers(1, 12),
    max_bytes=st.integers(150, 1500),
    chunk=st.integers(1, 20),
)
def test_lane_cuts_the_same_batches_as_the_batcher(
    sizes: list[int], max_records: int, max_bytes: int, chunk: int
) -> None:
    limits = BatchLimits(max_records=max_records, window_seconds=0, max_bytes=max_bytes)
    subject = PartitionLane(
        "t",
        0,
        limits=limits,
        framing=FRAMING,
        prepare=prepare,
        pause_records=10_000,
    )
    records = [Msg(o, fragment=b"x" * size) for o, size in enumerate(sizes)]
    for start in range(0, len(records), chunk):
        subject.feed(records[start : start + chunk])
    got: list[tuple[str, list[int], int]] = []
    while (step := subject.fill(now=0.0)) is not None:
        if isinstance(step, OversizedRecord):
            got.append(("oversized", [step.message.offset], step.event_size))
        else:
            event = assemble_kafka_event({"t-0": list(step.fragments)}, framing=FRAMING)
            assert step.size_bytes == len(event) <= max_bytes
            got.append(("batch", offsets(step), step.size_bytes))
        subject.finished(step)
    assert got == reference_batches(sizes, limits)
    assert subject.buffered == 0
    assert subject.done_offset == len(sizes)
