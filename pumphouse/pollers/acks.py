"""Contiguous acknowledgement: checkpoint only past records that are all finished.

Pure logic: no I/O, no clock.

A stream shard or a Kafka partition is read in order, but its records do not finish in
order: with ``ParallelizationFactor`` > 1 a shard's records are spread over several lanes
(by partition key) whose batches run concurrently, and a Kafka consumer runs batches of
several partitions at once. The checkpoint (Kinesis/DynamoDB sequence number, Kafka
offset) may only move to a record when **that record and every record read before it**
have finished — otherwise a crash would skip the unfinished ones.

:class:`ContiguousAckTracker` keeps that invariant. Records are registered in read order;
each gets a *position* (0, 1, 2, ... — its index in read order) and carries an opaque
*checkpoint key* (the sequence number; for Kafka, the offset to commit, which is the
record's offset + 1). Batches report the
positions they finished with :meth:`ContiguousAckTracker.complete`, in any order.
:meth:`ContiguousAckTracker.committable` is the key of the highest record below which
everything is finished. It never moves backwards.

Worked example (in the style of Faust's consumer, where acked offsets
``34 35 36 40 41`` commit ``37``): a shard holds records with sequence numbers 1 … 8,
read in that order and registered at positions 0 … 7. With two lanes, lane A runs the
batches [1, 2] and [3, 4], lane B runs [5, 6] and [7, 8]::

    event                         finished          committable
    lane A finishes [1, 2]        1 2 . . . . . .   2
    lane B finishes [5, 6]        1 2 . . 5 6 . .   2   (3 and 4 still running: a gap)
    lane A finishes [3, 4]        1 2 3 4 5 6 . .   6   (the gap closes: jump to 6)
    lane B finishes [7, 8]        1 2 3 4 5 6 7 8   8

A crash after the second line resumes after 2: records 5 and 6 are delivered again
(at-least-once), 3 and 4 are never skipped.

Cost: O(1) amortized per record. Unfinished records sit in a deque in read order;
finished positions that are not yet contiguous sit in a set; the head of the deque is
popped while its position is in the set.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K")


class ContiguousAckTracker(Generic[K]):
    """Tracks which read records are finished and how far the checkpoint may move."""

    def __init__(self, *, first_position: int = 0) -> None:
        self._pending: deque[tuple[int, K]] = deque()
        self._done: set[int] = set()
        self._next = first_position
        self._committable: K | None = None
        self._has_new = False

    # --- read side ------------------------------------------------------------------

    def register(self, key: K) -> int:
        """Register the next record in read order; returns its position."""
        position = self._next
        self._next += 1
        self._pending.append((position, key))
        return position

    def register_many(self, keys: Iterable[K]) -> range:
        """Register records in read order; returns their positions."""
        start = self._next
        for key in keys:
            self.register(key)
        return range(start, self._next)

    # --- completion side ------------------------------------------------------------

    def complete(self, positions: Iterable[int]) -> K | None:
        """Mark records finished (in any order). Returns :meth:`committable`.

        Completing a position twice, or one already below the checkpoint, is harmless.
        Completing a position that was never registered is a bug and raises ValueError.
        """
        floor = self._pending[0][0] if self._pending else self._next
        for position in positions:
            if position >= self._next:
                raise ValueError(f"position {position} was never registered")
            if position >= floor:
                self._done.add(position)
        self._advance()
        return self._committable

    def _advance(self) -> None:
        pending, done = self._pending, self._done
        moved = False
        while pending and pending[0][0] in done:
            position, key = pending.popleft()
            done.discard(position)
            self._committable = key
            moved = True
        if moved:
            self._has_new = True

    # --- queries --------------------------------------------------------------------

    def committable(self) -> K | None:
        """The key of the highest record below which every record is finished (itself
        included); None until the first record finished. Only moves forward."""
        return self._committable

    def take_new_checkpoint(self) -> K | None:
        """:meth:`committable` if it moved since the last call, else None.

        Lets a poller write the checkpoint only when there is something new to write.
        """
        if not self._has_new:
            return None
        self._has_new = False
        return self._committable

    @property
    def in_flight(self) -> int:
        """Registered records not yet covered by the checkpoint (finished or not)."""
        return len(self._pending)

    @property
    def next_position(self) -> int:
        """The position the next registered record will get."""
        return self._next

    def is_finished(self, position: int) -> bool:
        """Whether the record at ``position`` has finished."""
        if position >= self._next:
            return False
        if self._pending and position >= self._pending[0][0]:
            return position in self._done
        return True

    def clear(self) -> None:
        """Forget every unfinished record (after a seek, a lost lease, a revoked
        partition). Positions keep counting up; :meth:`committable` stays."""
        self._pending.clear()
        self._done.clear()
