"""The batcher closes batches at BatchSize, at the window, and at the 6 MB event limit."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumphouse.pollers.batching import (
    MAX_INVOKE_PAYLOAD_BYTES,
    AddResult,
    Batcher,
    BatchLimits,
    KafkaFraming,
    RecordsFraming,
    assemble_event,
    assemble_kafka_event,
    group_fragments,
)


def fragment(i: int, pad: int = 0) -> bytes:
    return orjson.dumps({"messageId": f"m-{i}", "body": "x" * pad})


def fill(batcher: Batcher[bytes], fragments: list[bytes], now: float = 0.0) -> list[AddResult]:
    return [batcher.add(f, len(f), now) for f in fragments]


def test_closes_at_batch_size() -> None:
    batcher: Batcher[bytes] = Batcher(BatchLimits(max_records=3, window_seconds=10))
    frags = [fragment(i) for i in range(4)]
    assert fill(batcher, frags[:3]) == [AddResult.ACCEPTED] * 3
    assert batcher.full
    assert batcher.due(now=0.0)  # full: due before the window ends
    assert batcher.add(frags[3], len(frags[3]), 0.0) is AddResult.BATCH_FULL
    batch = batcher.take()
    assert list(batch.items) == frags[:3]
    assert len(batch) == 3
    assert batch.size_bytes == len(assemble_event(batch.items))
    # The refused record goes into the next batch.
    assert batcher.add(frags[3], len(frags[3]), 1.0) is AddResult.ACCEPTED
    assert len(batcher) == 1
    assert not batcher.full


def test_closes_at_window_measured_from_first_record() -> None:
    batcher: Batcher[bytes] = Batcher(BatchLimits(max_records=100, window_seconds=2.0))
    assert batcher.deadline is None
    assert not batcher.due(now=1000.0)  # empty: never due
    batcher.add(fragment(0), len(fragment(0)), now=10.0)
    batcher.add(fragment(1), len(fragment(1)), now=11.5)  # later records do not extend it
    assert batcher.deadline == 12.0
    assert batcher.opened_at == 10.0
    assert not batcher.due(now=11.99)
    assert batcher.due(now=12.0)
    batch = batcher.take()
    assert batch.opened_at == 10.0
    assert len(batch) == 2
    assert batcher.deadline is None
    assert len(batcher) == 0


def test_window_zero_is_due_at_once() -> None:
    batcher: Batcher[bytes] = Batcher(BatchLimits(max_records=10, window_seconds=0))
    assert not batcher.due(now=5.0)
    batcher.add(fragment(0), len(fragment(0)), now=5.0)
    assert batcher.deadline == 5.0
    assert batcher.due(now=5.0)


def test_closes_at_bytes_with_envelope_included() -> None:
    frags = [fragment(i, pad=90) for i in range(10)]
    size = len(frags[0])
    # Room for exactly 3 records: envelope + 3 fragments + 2 commas.
    limit = len(b'{"Records":[') + len(b"]}") + 3 * size + 2
    batcher: Batcher[bytes] = Batcher(
        BatchLimits(max_records=100, window_seconds=60, max_bytes=limit)
    )
    assert fill(batcher, frags[:3]) == [AddResult.ACCEPTED] * 3
    assert batcher.size_bytes == limit
    assert not batcher.full  # nothing refused yet
    assert batcher.add(frags[3], size, 0.0) is AddResult.BATCH_FULL
    assert batcher.full
    assert batcher.due(now=0.0)
    batch = batcher.take()
    event = assemble_event(batch.items)
    assert len(event) == batch.size_bytes == limit
    assert orjson.loads(event)["Records"][2]["messageId"] == "m-2"

    # One byte less: only 2 fit.
    batcher = Batcher(BatchLimits(max_records=100, window_seconds=60, max_bytes=limit - 1))
    assert fill(batcher, frags[:3]) == [AddResult.ACCEPTED] * 2 + [AddResult.BATCH_FULL]
    assert len(assemble_event(batcher.take().items)) <= limit - 1


def test_real_six_megabyte_limit() -> None:
    frags = [fragment(i, pad=1_000_000) for i in range(8)]  # ~1 MB each
    batcher: Batcher[bytes] = Batcher(BatchLimits(max_records=10_000, window_seconds=0))
    results = fill(batcher, frags)
    assert results[:6] == [AddResult.ACCEPTED] * 6
    assert results[6] is AddResult.BATCH_FULL
    batch = batcher.take()
    event = assemble_event(batch.items)
    assert len(event) == batch.size_bytes
    assert len(event) <= MAX_INVOKE_PAYLOAD_BYTES
    assert len(batch) == 6


def test_oversized_record_is_reported_separately() -> None:
    batcher: Batcher[bytes] = Batcher(BatchLimits(max_records=10, window_seconds=0, max_bytes=200))
    small = fragment(1)
    assert batcher.add(small, len(small), 0.0) is AddResult.ACCEPTED
    big = fragment(2, pad=200)
    # Too big for any event: reported, not added, and the open batch is untouched.
    assert batcher.add(big, len(big), 0.0) is AddResult.OVERSIZED
    assert len(batcher) == 1
    assert not batcher.full
    # A record exactly as large as an event can be is not oversized.
    exact = 200 - len(b'{"Records":[]}')
    assert batcher.size_alone(exact) == 200
    assert batcher.add(b"x" * exact, exact, 0.0) is AddResult.BATCH_FULL
    batcher.take()
    assert batcher.add(b"x" * exact, exact, 0.0) is AddResult.ACCEPTED
    assert batcher.add(b"x" * (exact + 1), exact + 1, 0.0) is AddResult.OVERSIZED


def test_oversized_on_an_empty_batch_keeps_it_empty() -> None:
    batcher: Batcher[bytes] = Batcher(BatchLimits(max_records=10, window_seconds=0, max_bytes=50))
    assert batcher.add(b"y" * 100, 100, 0.0) is AddResult.OVERSIZED
    assert len(batcher) == 0
    assert batcher.opened_at is None
    assert not batcher.due(0.0)


def test_custom_envelope() -> None:
    framing = RecordsFraming(prefix=b'{"window":{},"Records":[', suffix=b"]}")
    batcher: Batcher[bytes] = Batcher(BatchLimits(max_records=5, window_seconds=0), framing=framing)
    frags = [fragment(i) for i in range(3)]
    fill(batcher, frags)
    batch = batcher.take()
    event = assemble_event(batch.items, prefix=framing.prefix, suffix=framing.suffix)
    assert len(event) == batch.size_bytes
    assert [r["messageId"] for r in orjson.loads(event)["Records"]] == ["m-0", "m-1", "m-2"]


def test_kafka_event_shape_and_size() -> None:
    framing = KafkaFraming(event_source="SelfManagedKafka", bootstrap_servers="b-1:9092,b-2:9092")
    batcher: Batcher[tuple[str, bytes]] = Batcher(
        BatchLimits(max_records=10, window_seconds=0.5), framing=framing
    )
    records = [
        ("orders-0", orjson.dumps({"topic": "orders", "partition": 0, "offset": 15})),
        ("orders-1", orjson.dumps({"topic": "orders", "partition": 1, "offset": 3})),
        ("orders-0", orjson.dumps({"topic": "orders", "partition": 0, "offset": 16})),
    ]
    for key, frag in records:
        assert batcher.add((key, frag), len(frag), 0.0, group=key) is AddResult.ACCEPTED
    batch = batcher.take()
    event = assemble_kafka_event(group_fragments(batch.items), framing=framing)
    assert len(event) == batch.size_bytes
    decoded = orjson.loads(event)
    assert decoded["eventSource"] == "SelfManagedKafka"
    assert decoded["bootstrapServers"] == "b-1:9092,b-2:9092"
    assert [r["offset"] for r in decoded["records"]["orders-0"]] == [15, 16]
    assert [r["offset"] for r in decoded["records"]["orders-1"]] == [3]
    assert list(decoded) == ["eventSource", "bootstrapServers", "records"]


def test_msk_event_carries_the_arn() -> None:
    framing = KafkaFraming(
        event_source="aws:kafka",
        bootstrap_servers="b-1:9092",
        event_source_arn="arn:aws:kafka:us-east-1:123456789012:cluster/c/abc",
    )
    event = assemble_kafka_event({"t-0": [b'{"offset":1}']}, framing=framing)
    decoded = orjson.loads(event)
    assert decoded["eventSourceArn"].startswith("arn:aws:kafka:")
    assert decoded["records"] == {"t-0": [{"offset": 1}]}
    assert len(assemble_kafka_event({}, framing=framing)) == framing.empty_size()


def test_kafka_bytes_limit_counts_group_overhead() -> None:
    framing = KafkaFraming(event_source="SelfManagedKafka", bootstrap_servers="k:9092")
    frag = b'{"v":"' + b"a" * 50 + b'"}'
    one = len(assemble_kafka_event({"t-0": [frag]}, framing=framing))
    two_groups = len(assemble_kafka_event({"t-0": [frag], "t-1": [frag]}, framing=framing))
    batcher: Batcher[bytes] = Batcher(
        BatchLimits(max_records=10, window_seconds=0, max_bytes=two_groups - 1), framing=framing
    )
    assert batcher.size_alone(len(frag), group="t-0") == one
    assert batcher.add(frag, len(frag), 0.0, group="t-0") is AddResult.ACCEPTED
    assert batcher.add(frag, len(frag), 0.0, group="t-1") is AddResult.BATCH_FULL
    # The same record in the same partition costs less (no new group): it fits.
    same_group = len(assemble_kafka_event({"t-0": [frag, frag]}, framing=framing))
    assert same_group <= two_groups - 1
    assert batcher.add(frag, len(frag), 0.0, group="t-0") is AddResult.ACCEPTED


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_records"):
        BatchLimits(max_records=0, window_seconds=0)
    with pytest.raises(ValueError, match="window_seconds"):
        BatchLimits(max_records=1, window_seconds=-1)
    with pytest.raises(ValueError, match="no room"):
        Batcher(BatchLimits(max_records=1, window_seconds=0, max_bytes=10))


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=60),
    groups=st.lists(st.sampled_from(["a-0", "a-1", "bb-2"]), min_size=60, max_size=60),
    max_records=st.integers(min_value=1, max_value=20),
    max_bytes=st.integers(min_value=400, max_value=3000),
)
def test_assembled_kafka_event_always_matches_the_count(
    sizes: list[int], groups: list[str], max_records: int, max_bytes: int
) -> None:
    framing = KafkaFraming(event_source="SelfManagedKafka", bootstrap_servers="k:9092")
    batcher: Batcher[tuple[str, bytes]] = Batcher(
        BatchLimits(max_records=max_records, window_seconds=0, max_bytes=max_bytes),
        framing=framing,
    )
    batches = []
    for size, group in zip(sizes, groups, strict=False):
        item = (group, b"x" * size)
        result = batcher.add(item, size, 0.0, group=group)
        if result is AddResult.BATCH_FULL:
            batches.append(batcher.take())
            result = batcher.add(item, size, 0.0, group=group)
        assert result is not AddResult.BATCH_FULL
    batches.append(batcher.take())
    for batch in batches:
        event = assemble_kafka_event(group_fragments(batch.items), framing=framing)
        assert len(event) == batch.size_bytes
        assert len(event) <= max_bytes
        assert len(batch) <= max_records
