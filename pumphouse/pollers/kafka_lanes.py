"""One Kafka partition as an ordered lane: buffering, batching and the commit position.

Pure logic: no I/O, no clock (``now`` is an argument). The Kafka poller owns one
:class:`PartitionLane` per assigned partition and drives it from two sides:

* the fetch loop **feeds** it what ``getmany`` returned for the partition, as is;
* the lane *prepares* a fed run of records when it first needs them: the ``prepare``
  callable turns them into their fragments (:mod:`pumphouse.pollers.kafka_records`) — or
  ``None`` where the mapping's filters drop a record. Preparing in the partition's task
  rather than in the fetch loop hands aiokafka its buffer back at once, so the next
  fetch is on its way while these records are serialized;
* the partition's task repeatedly asks :meth:`PartitionLane.fill` for the next **step**
  — a :class:`LaneBatch` to invoke, or an :class:`OversizedRecord` to send to the
  on-failure destination — runs it, and reports what finished with
  :meth:`PartitionLane.finished`. Exactly one step runs at a time: that is what keeps
  the partition in order, and it means that while :meth:`fill` runs, nothing is in
  flight.

Batches close exactly as :class:`~pumphouse.pollers.batching.Batcher` closes them — at
``BatchSize`` records, when the window has passed since the first record was added, or
when the next record would make the event larger than the payload limit (its size
computed with the same :class:`~pumphouse.pollers.batching.KafkaFraming`) — and a record
that alone would exceed the limit is an :class:`OversizedRecord`. A lane is one
partition, so its events have a single ``"<topic>-<partition>"`` group and the size is
simple arithmetic: ``empty + group + sum(fragments) + commas``. That lets the lane take
a whole run of records with two C-level calls (a slice and ``sum(map(len, ...))``)
instead of a Python call per record: ``Batcher.add`` costs ~0.8 µs per record, a
quarter of the whole per-record budget of a consumer that keeps up with a raw aiokafka
loop. The unit tests check on random inputs that lane and Batcher cut the same batches.

The commit position
-------------------
:attr:`PartitionLane.done_offset` is the offset to commit: one past the last record
that is finished *and* has every record before it finished. Because one step runs at a
time, finished work is always a prefix, so the position is simply moved forward:

* a batch (or a prefix of it, when the error policy finishes a bisected half or the
  records before the lowest failed one) finished → one past its last finished record,
  and when the whole batch finished, one past the last record the batch *covered*
  (which includes filtered-out records taken after its last matching one);
* a filtered-out record met while no batch is open → finished at once (nothing before
  it is unfinished);
* a filtered-out record met while a batch is open → covered by that batch: it is
  committed when the batch finishes, never before.

Worked example: offsets 10 … 15, where 11 and 14 are filtered out and 15 arrives after
the window closed::

    fill: 10 opens a batch, 11 (filtered) is covered, 12, 13 join, 14 (filtered) is
          covered; the window closes → LaneBatch([10, 12, 13], end_offset=15)
    the policy finishes [10] (a bisected half), then [12, 13]
          → done_offset 11, then 15 (the whole batch: 14 is covered too)
    fill: 15 opens the next batch ...

A crash at any point restarts from the committed ``done_offset``: nothing unfinished is
skipped, and at most the one running batch is delivered again.

Back-pressure: :attr:`PartitionLane.wants_pause` turns true when the buffer holds
``pause_records`` records or about ``pause_bytes`` bytes of fragments (estimated from
the records' key and value sizes, before they are prepared); the poller then pauses
fetching the partition, and resumes it when :attr:`PartitionLane.wants_resume` (half of
both). Pausing is a safety valve for a partition that cannot keep up (a failing batch
retried, a slow function), not a throttle: aiokafka delays fetches for the whole broker
by up to 100 ms while a paused partition holds fetched records, so the thresholds sit
well above what a partition that keeps up ever buffers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson

from pumphouse.pollers.batching import BatchLimits, KafkaFraming, batch_due
from pumphouse.pollers.kafka_records import KafkaMessage, partition_key

#: A record of a batch: the record and its fragment.
BatchItem = tuple[KafkaMessage, bytes]
#: Serializes records into fragments, ``None`` for a record the filters drop.
Prepare = Callable[[Sequence[KafkaMessage]], Sequence[bytes | None]]

#: Estimated event bytes of a record beyond its key and value (base64 adds a third).
_RECORD_OVERHEAD: Final = 160

DEFAULT_PAUSE_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class LaneBatch:
    """Records of one partition to invoke together, in offset order."""

    items: Sequence[BatchItem]
    fragments: Sequence[bytes]
    """The items' fragments, in the same order (what the event is assembled from)."""
    end_offset: int
    """One past the last record this batch covers (filtered-out ones included): the
    commit position once the whole batch is finished."""
    covered: int
    """Records the batch covers: its items plus the filtered-out records among them."""
    size_bytes: int
    """The size of the event holding every item."""
    opened_at: float | None

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class OversizedRecord:
    """A record whose event alone would exceed the invoke payload limit."""

    message: KafkaMessage
    fragment: bytes
    event_size: int


LaneStep = LaneBatch | OversizedRecord


@dataclass
class _Chunk:
    """Records fed together (one ``getmany`` result for the partition)."""

    messages: Sequence[KafkaMessage]
    estimate: int
    """Estimated bytes of the records' fragments (for back-pressure)."""
    fragments: Sequence[bytes | None] | None = None
    """Set when the chunk is prepared."""
    filtered: bool = False
    """Whether any fragment is None (a filtered-out record)."""
    pos: int = 0


@dataclass
class _OpenBatch:
    items: list[BatchItem] = field(default_factory=list)
    fragments: list[bytes] = field(default_factory=list)
    payload: int = 0
    """Sum of the fragments' lengths."""
    opened_at: float | None = None
    covered: int = 0
    tail: int | None = None
    bytes_full: bool = False


class PartitionLane:
    """The buffer, open batch and commit position of one assigned partition."""

    def __init__(
        self,
        topic: str,
        partition: int,
        *,
        limits: BatchLimits,
        framing: KafkaFraming,
        prepare: Prepare,
        pause_records: int,
        pause_bytes: int = DEFAULT_PAUSE_BYTES,
    ) -> None:
        self.topic = topic
        self._prepare = prepare
        self.partition = partition
        self.key = partition_key(topic, partition)
        self.limits = limits
        self.framing = framing
        self.pause_records = max(1, pause_records)
        self.pause_bytes = max(1, pause_bytes)
        # Event size = _base + payload + (count - 1) commas, for count >= 1.
        self._empty = framing.empty_size()
        self._base = self._empty + framing.group_size(self.key)
        # The event around the fragments: head + '"<topic>-<p>":[' ... ']' + tail.
        self._event_prefix = framing.head + orjson.dumps(self.key) + b":["
        self._event_suffix = b"]" + framing.tail
        self._empty_event = framing.head + framing.tail
        self._chunks: deque[_Chunk] = deque()
        self._buffered = 0
        self._buffered_bytes = 0
        self._open = _OpenBatch()
        self._next_fetch: int | None = None
        self._step_counted = 0
        self.done_offset: int | None = None
        """The offset to commit (one past the last finished record); None until a
        record finished."""
        self._progress = 0
        self.paused = False
        """Whether the poller paused fetching this partition (it keeps this up to date)."""

    # --- the fetch side -------------------------------------------------------------

    def feed(self, messages: Sequence[KafkaMessage]) -> int:
        """Append records in offset order. Records at or below one already fed are
        ignored (a refetch after a seek). Returns how many were taken."""
        if not messages:
            return 0
        expected = self._next_fetch
        if expected is not None and messages[0].offset < expected:
            messages = [m for m in messages if m.offset >= expected]
            if not messages:
                return 0
        sample = messages[-1]
        key, value = sample.key, sample.value
        raw = (len(key) if key else 0) + (len(value) if value else 0)
        estimate = (raw * 4 // 3 + _RECORD_OVERHEAD) * len(messages)
        self._chunks.append(_Chunk(messages, estimate))
        self._buffered += len(messages)
        self._buffered_bytes += estimate
        self._next_fetch = messages[-1].offset + 1
        return len(messages)

    @property
    def buffered(self) -> int:
        """Records fed and not yet taken into a batch (filtered ones included)."""
        return self._buffered

    @property
    def buffered_bytes(self) -> int:
        return self._buffered_bytes

    @property
    def open_records(self) -> int:
        """Records in the open batch."""
        return len(self._open.items)

    @property
    def wants_pause(self) -> bool:
        return not self.paused and (
            self._buffered >= self.pause_records or self._buffered_bytes >= self.pause_bytes
        )

    @property
    def wants_resume(self) -> bool:
        return (
            self.paused
            and self._buffered <= self.pause_records // 2
            and self._buffered_bytes <= self.pause_bytes // 2
        )

    @property
    def next_fetch_offset(self) -> int | None:
        """One past the last record fed."""
        return self._next_fetch

    # --- the processing side --------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """When the open batch's window closes (None while no batch is open)."""
        opened = self._open.opened_at
        return None if opened is None else opened + self.limits.window_seconds

    def prepare_ahead(self) -> None:
        """Prepare the first buffered chunk not prepared yet, if any.

        The poller calls this while the lane's batch is being invoked, so the next
        batch's records are serialized while the function runs, not after it returned.
        """
        for chunk in self._chunks:
            if chunk.fragments is None:
                chunk.fragments = self._prepare(chunk.messages)
                chunk.filtered = None in chunk.fragments
                return

    def event(self, fragments: Sequence[bytes]) -> bytes:
        """The event holding ``fragments`` (records of this partition, in order):
        exactly :func:`~pumphouse.pollers.batching.assemble_kafka_event` of them, built
        with one ``join`` — the event's bytes are copied once. (Concatenating the ~200 KB
        body with the envelope costs several large copies, ~0.3 ms per 500-record event,
        measured; the join ~5 µs.)"""
        if not fragments:
            return self._empty_event
        if len(fragments) == 1:
            return self._event_prefix + fragments[0] + self._event_suffix
        parts = list(fragments)
        parts[0] = self._event_prefix + parts[0]
        parts[-1] = parts[-1] + self._event_suffix
        return b",".join(parts)

    def _size_with(self, count: int, payload: int) -> int:
        return self._base + payload + count - 1 if count else self._empty

    def fill(self, now: float) -> LaneStep | None:
        """Move buffered records into the open batch; return the step to run now, or
        None when the open batch should wait (for more records or its window).

        Must not be called while a step returned earlier is still running.
        """
        open_ = self._open
        max_records = self.limits.max_records
        max_bytes = self.limits.max_bytes
        chunks = self._chunks
        while chunks:
            chunk = chunks[0]
            fragments = chunk.fragments
            if fragments is None:
                fragments = chunk.fragments = self._prepare(chunk.messages)
                chunk.filtered = None in fragments
            messages, pos = chunk.messages, chunk.pos
            count = len(open_.items)
            room = max_records - count
            if room <= 0 or open_.bytes_full:
                return self._take()
            end = min(len(messages), pos + room)
            if not chunk.filtered:
                run = fragments[pos:end]
                added = sum(map(len, run))  # type: ignore[arg-type] # no None in this chunk
                n = end - pos
                if self._size_with(count + n, open_.payload + added) <= max_bytes:
                    self._accept_run(
                        chunk,
                        pos=pos,
                        end=end,
                        run=run,  # type: ignore[arg-type] # no None in this chunk
                        added=added,
                        now=now,
                    )
                    continue
            step = self._fill_one_by_one(chunk, end, now)
            if step is not None:
                return step
        if batch_due(
            self.limits,
            count=len(open_.items),
            full=open_.bytes_full,
            opened_at=open_.opened_at,
            now=now,
        ):
            return self._take()
        return None

    def _accept_run(
        self, chunk: _Chunk, *, pos: int, end: int, run: list[bytes], added: int, now: float
    ) -> None:
        """Take ``chunk`` records ``pos:end`` (none filtered, all fitting) at once."""
        open_ = self._open
        if not open_.items:
            open_.opened_at = now
        messages = chunk.messages[pos:end]
        open_.items.extend(zip(messages, run, strict=True))
        open_.fragments.extend(run)
        open_.payload += added
        open_.covered += end - pos
        open_.tail = messages[-1].offset + 1
        self._buffered -= end - pos
        self._advance_chunk(chunk, end)

    def _advance_chunk(self, chunk: _Chunk, pos: int) -> None:
        if pos >= len(chunk.messages):
            self._chunks.popleft()
            self._buffered_bytes -= chunk.estimate
        else:
            chunk.pos = pos

    def _fill_one_by_one(self, chunk: _Chunk, end: int, now: float) -> LaneStep | None:
        """The careful path: filtered records, or a run that would not fit whole."""
        open_ = self._open
        max_bytes = self.limits.max_bytes
        messages, fragments = chunk.messages, chunk.fragments
        assert fragments is not None
        pos = chunk.pos
        while pos < end:
            message, fragment = messages[pos], fragments[pos]
            if fragment is None:
                pos += 1
                self._buffered -= 1
                if open_.items:
                    open_.tail = message.offset + 1
                    open_.covered += 1
                else:
                    self._advance(message.offset + 1, 1)
                continue
            size = len(fragment)
            count = len(open_.items)
            if self._size_with(1, size) > max_bytes:
                if count:  # an oversized record waits behind the open batch: close it
                    self._advance_chunk(chunk, pos)
                    return self._take()
                self._buffered -= 1
                self._advance_chunk(chunk, pos + 1)
                return OversizedRecord(
                    message=message, fragment=fragment, event_size=self._size_with(1, size)
                )
            if count and self._size_with(count + 1, open_.payload + size) > max_bytes:
                open_.bytes_full = True
                self._advance_chunk(chunk, pos)
                return self._take()
            if not count:
                open_.opened_at = now
            open_.items.append((message, fragment))
            open_.fragments.append(fragment)
            open_.payload += size
            open_.covered += 1
            open_.tail = message.offset + 1
            self._buffered -= 1
            pos += 1
        self._advance_chunk(chunk, pos)
        return None

    def _take(self) -> LaneBatch:
        open_ = self._open
        assert open_.tail is not None and open_.items
        self._open = _OpenBatch()
        self._step_counted = 0
        return LaneBatch(
            items=open_.items,
            fragments=open_.fragments,
            end_offset=open_.tail,
            covered=open_.covered,
            size_bytes=self._size_with(len(open_.items), open_.payload),
            opened_at=open_.opened_at,
        )

    def finished(self, step: LaneStep, items: Sequence[BatchItem] | None = None) -> None:
        """Records of ``step`` finished: all of it (``items`` None), or the contiguous
        slice ``items`` that the error policy reports (in order, from the start)."""
        if isinstance(step, OversizedRecord):
            self._advance(step.message.offset + 1, 1)
            return
        if items is None or (items and items[-1] is step.items[-1]):
            # The whole batch is finished: the filtered-out records it covers too.
            self._advance(step.end_offset, step.covered - self._step_counted)
            self._step_counted = step.covered
            return
        if items:
            self._step_counted += len(items)
            self._advance(items[-1][0].offset + 1, len(items))

    def _advance(self, offset: int, count: int) -> None:
        if self.done_offset is None or offset > self.done_offset:
            self.done_offset = offset
            self._progress += count

    def take_progress(self) -> tuple[int, int] | None:
        """``(done_offset, records finished since the last call)`` if the position moved
        since the last call, else None."""
        if not self._progress or self.done_offset is None:
            return None
        progress = (self.done_offset, self._progress)
        self._progress = 0
        return progress

    def discard(self) -> None:
        """Forget buffered records and the open batch (the partition was revoked or the
        consumer will seek). The commit position stays."""
        self._chunks.clear()
        self._buffered = 0
        self._buffered_bytes = 0
        self._open = _OpenBatch()
        self._next_fetch = None
