"""The contiguous ack tracker only commits past records that are all finished."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pumphouse.pollers.acks import ContiguousAckTracker


def test_worked_example_two_lanes() -> None:
    """The module docstring's example: records 1..8, lanes A [1,2] [3,4] and B [5,6] [7,8]."""
    tracker: ContiguousAckTracker[str] = ContiguousAckTracker()
    positions = {seq: tracker.register(str(seq)) for seq in range(1, 9)}
    assert tracker.committable() is None

    def finish(*seqs: int) -> str | None:
        return tracker.complete(positions[s] for s in seqs)

    assert finish(1, 2) == "2"
    assert finish(5, 6) == "2"  # 3 and 4 still running: the checkpoint waits
    assert tracker.is_finished(positions[5])
    assert not tracker.is_finished(positions[3])
    assert finish(3, 4) == "6"  # the gap closes: jump to 6
    assert finish(7, 8) == "8"
    assert tracker.in_flight == 0


def test_faust_example_commits_below_the_gap() -> None:
    tracker: ContiguousAckTracker[int] = ContiguousAckTracker(first_position=34)
    for offset in range(34, 42):
        assert tracker.register(offset + 1) == offset  # Kafka: commit offset + 1
    tracker.complete([34, 35, 36, 40, 41])
    assert tracker.committable() == 37
    tracker.complete([37, 38, 39])
    assert tracker.committable() == 42


def test_committable_never_moves_back_and_is_idempotent() -> None:
    tracker: ContiguousAckTracker[str] = ContiguousAckTracker()
    a, b = tracker.register("a"), tracker.register("b")
    tracker.complete([a, b])
    assert tracker.committable() == "b"
    tracker.complete([a, b])  # completing again is harmless
    assert tracker.committable() == "b"
    c = tracker.register("c")
    assert tracker.committable() == "b"
    tracker.complete([c])
    assert tracker.committable() == "c"


def test_unknown_position_is_a_bug() -> None:
    tracker: ContiguousAckTracker[str] = ContiguousAckTracker()
    tracker.register("a")
    with pytest.raises(ValueError, match="never registered"):
        tracker.complete([5])


def test_take_new_checkpoint_reports_each_move_once() -> None:
    tracker: ContiguousAckTracker[str] = ContiguousAckTracker()
    positions = tracker.register_many(["a", "b", "c"])
    assert list(positions) == [0, 1, 2]
    assert tracker.take_new_checkpoint() is None
    tracker.complete([1])
    assert tracker.take_new_checkpoint() is None  # 0 is still running
    tracker.complete([0])
    assert tracker.take_new_checkpoint() == "b"
    assert tracker.take_new_checkpoint() is None
    tracker.complete([2])
    assert tracker.take_new_checkpoint() == "c"


def test_clear_forgets_unfinished_records() -> None:
    tracker: ContiguousAckTracker[str] = ContiguousAckTracker()
    a = tracker.register("a")
    b = tracker.register("b")
    tracker.complete([a])
    tracker.clear()  # e.g. the partition was revoked
    assert tracker.in_flight == 0
    tracker.complete([b])  # a late completion of a forgotten record is ignored
    assert tracker.committable() == "a"
    c = tracker.register("c")
    assert c == 2
    tracker.complete([c])
    assert tracker.committable() == "c"


def test_linear_time() -> None:
    """100k records completed in reverse order: O(1) amortized, not O(n^2)."""
    tracker: ContiguousAckTracker[int] = ContiguousAckTracker()
    n = 100_000
    tracker.register_many(range(n))
    started = time.perf_counter()
    for position in range(n - 1, 0, -1):
        tracker.complete((position,))
    assert tracker.committable() is None
    tracker.complete((0,))
    elapsed = time.perf_counter() - started
    assert tracker.committable() == n - 1
    assert elapsed < 2.0


@given(
    data=st.data(),
    n=st.integers(min_value=1, max_value=60),
)
def test_committable_is_the_max_contiguous_prefix(data: st.DataObject, n: int) -> None:
    """Random batches completed in random order: committable is always the key of the
    longest finished prefix, and it never moves backwards."""
    order = data.draw(st.permutations(list(range(n))), label="completion order")
    cuts = data.draw(
        st.lists(st.integers(min_value=1, max_value=n), max_size=10), label="batch cuts"
    )
    tracker: ContiguousAckTracker[int] = ContiguousAckTracker()
    tracker.register_many(seq * 10 for seq in range(n))  # keys differ from positions
    bounds = sorted({0, n, *cuts})
    batches = [order[lo:hi] for lo, hi in itertools.pairwise(bounds)]
    done: set[int] = set()
    previous = -1
    for batch in batches:
        tracker.complete(batch)
        done.update(batch)
        prefix = 0
        while prefix in done:
            prefix += 1
        expected = (prefix - 1) * 10 if prefix else None
        assert tracker.committable() == expected
        current = -1 if expected is None else expected
        assert current >= previous
        previous = current
    assert tracker.committable() == (n - 1) * 10
