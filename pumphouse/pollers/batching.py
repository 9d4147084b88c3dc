"""Batching: close a batch at ``BatchSize``, at the batching window, or at the 6 MB limit.

Pure logic: no I/O, no clock reads (``now`` is an argument).

Records arrive **pre-serialized**: the poller turns each record into its Lambda shape and
serializes it once (orjson) into a *fragment*. The :class:`Batcher` only counts items and
bytes; when a batch is taken, the poller joins the fragments into the event with
:func:`assemble_event` (``{"Records":[...]}``) or :func:`assemble_kafka_event`
(``{"eventSource":...,"bootstrapServers":...,"records":{"topic-0":[...]}}``). Nothing is
serialized twice, and the byte count the batcher keeps is the exact length of the event
the poller will assemble (``len(assemble_event(...)) == batch.size_bytes``).

A batch closes at whichever comes first:

* ``BatchSize`` records (:attr:`BatchLimits.max_records`);
* ``MaximumBatchingWindowInSeconds`` after the batch's **first** record was added
  (:attr:`BatchLimits.window_seconds`);
* the synchronous-invoke payload limit, 6,291,456 bytes for the **whole event**, envelope
  included (:attr:`BatchLimits.max_bytes`).

How a poller drives it::

    batcher = Batcher[MyRecord](BatchLimits(max_records=100, window_seconds=2.0),
                                framing=RECORDS_FRAMING)
    for record, fragment in polled:
        result = batcher.add((record, fragment), len(fragment), now=clock())
        if result is AddResult.BATCH_FULL:        # this record does not fit: close first
            dispatch(batcher.take())
            result = batcher.add((record, fragment), len(fragment), now=clock())
        if result is AddResult.OVERSIZED:         # can never fit in any event
            drop_or_send_to_on_failure(record)    # Kafka: MaximumPayloadSizeExceeded
    if batcher.due(clock()):
        dispatch(batcher.take())
    else:
        wait for more records, at most until batcher.deadline

``BATCH_FULL`` is returned only when the batch is non-empty, so the add after ``take()``
always succeeds (or reports ``OVERSIZED``).

**Window 0** (the default for every source but Kafka) means "invoke with what is
available now": the deadline is the moment the first record was added, so :meth:`due`
is true as soon as the batch holds a record. The poller adds every record it has in hand
from the current poll (up to ``BATCH_FULL``) and then takes the batch; it never waits
for more. With a window > 0 the poller keeps polling and adding until :meth:`due`
(count reached, bytes full, or the deadline passed), sleeping at most until
:attr:`deadline`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

import orjson

#: Lambda's synchronous invocation payload limit: the whole event must fit in 6 MB.
MAX_INVOKE_PAYLOAD_BYTES = 6_291_456

RECORDS_PREFIX = b'{"Records":['
RECORDS_SUFFIX = b"]}"

T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    """When a batch closes."""

    max_records: int
    """``BatchSize``: the most records in one batch (1 … 10000)."""
    window_seconds: float
    """``MaximumBatchingWindowInSeconds``: how long a batch may stay open after its first
    record was added. 0 means: close with what is available now."""
    max_bytes: int = MAX_INVOKE_PAYLOAD_BYTES
    """The largest event, envelope included, in bytes."""

    def __post_init__(self) -> None:
        if self.max_records < 1:
            raise ValueError(f"max_records must be at least 1, not {self.max_records}")
        if self.window_seconds < 0:
            raise ValueError(f"window_seconds must not be negative, not {self.window_seconds}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {self.max_bytes}")


def batch_due(
    limits: BatchLimits, *, count: int, full: bool, opened_at: float | None, now: float
) -> bool:
    """THE batch-closing rule every source applies: a batch of ``count`` records, opened
    at ``opened_at``, closes now when it holds ``BatchSize`` records, when ``full`` (a
    record was refused because the event would pass the 6 MB limit, or the bytes waiting
    reach it), or when ``MaximumBatchingWindowInSeconds`` has passed since it opened
    (at once with a window of 0). An empty batch never closes."""
    if count <= 0:
        return False
    if full or count >= limits.max_records:
        return True
    return opened_at is not None and now >= opened_at + limits.window_seconds


class EventFraming(Protocol):
    """How an event is built around record fragments, as far as its size goes.

    The size of an event is ``empty_size()``, plus every fragment, plus a comma between
    two fragments of the same group, plus ``group_size(g)`` for every group present,
    plus a comma between two groups. A flat ``{"Records":[...]}`` event has one group,
    ``None``, of size 0; a Kafka event has one group per ``"<topic>-<partition>"`` key.
    """

    def empty_size(self) -> int:
        """Bytes of the event holding no record at all."""
        ...

    def group_size(self, group: str | None) -> int:
        """Bytes one group adds around its fragments (key, brackets), without the
        comma that separates it from the previous group."""
        ...


@dataclass(frozen=True)
class RecordsFraming:
    """``{"Records":[...]}``: SQS, Kinesis and DynamoDB Streams events."""

    prefix: bytes = RECORDS_PREFIX
    suffix: bytes = RECORDS_SUFFIX

    def empty_size(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def group_size(self, group: str | None) -> int:
        return 0


#: The framing of SQS, Kinesis and DynamoDB Streams events.
RECORDS_FRAMING = RecordsFraming()


@dataclass(frozen=True)
class KafkaFraming:
    """A Kafka event: ``{"eventSource":...,"bootstrapServers":...,"records":{...}}``.

    Fragments are grouped by ``"<topic>-<partition>"``; pass that key as ``group`` to
    :meth:`Batcher.add`. ``event_source`` is ``"SelfManagedKafka"`` or ``"aws:kafka"``
    (MSK, which also carries ``eventSourceArn``).
    """

    event_source: str
    bootstrap_servers: str
    event_source_arn: str | None = None
    _head: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head: dict[str, str] = {"eventSource": self.event_source}
        if self.event_source_arn is not None:
            head["eventSourceArn"] = self.event_source_arn
        head["bootstrapServers"] = self.bootstrap_servers
        # '{"eventSource":"...",...}' -> '{"eventSource":"...",...,"records":{'
        encoded = orjson.dumps(head)[:-1] + b',"records":{'
        object.__setattr__(self, "_head", encoded)

    @property
    def head(self) -> bytes:
        """The bytes before the first group."""
        return self._head

    @property
    def tail(self) -> bytes:
        return b"}}"

    def empty_size(self) -> int:
        return len(self._head) + len(self.tail)

    def group_size(self, group: str | None) -> int:
        if group is None:
            raise ValueError("a Kafka event groups records by '<topic>-<partition>'")
        # "topic-0":[ ... ]
        return len(orjson.dumps(group)) + 3


class AddResult(StrEnum):
    """What :meth:`Batcher.add` did with an item."""

    ACCEPTED = "accepted"
    """The item is in the batch."""
    BATCH_FULL = "batch_full_try_again"
    """The item does not fit in the open batch (count or bytes): take the batch, then add
    the item again. Never returned for an empty batch."""
    OVERSIZED = "oversized"
    """The item alone is larger than an event may be: it can never be delivered. The
    poller drops it (SQS, streams: counted as dropped) or sends it to the on-failure
    destination (Kafka: ``MaximumPayloadSizeExceeded``)."""


@dataclass(frozen=True)
class Batch(Generic[T]):
    """A closed batch, as returned by :meth:`Batcher.take`."""

    items: Sequence[T]
    """The items in the order they were added."""
    size_bytes: int
    """The exact length of the event assembled from these items' fragments."""
    opened_at: float | None
    """When the first item was added (``now`` of that call); None for an empty batch."""

    def __len__(self) -> int:
        return len(self.items)


class Batcher(Generic[T]):
    """Accumulates pre-serialized items into batches. See the module docstring."""

    def __init__(self, limits: BatchLimits, *, framing: EventFraming = RECORDS_FRAMING) -> None:
        self.limits = limits
        self.framing = framing
        self._empty = framing.empty_size()
        if self._empty >= limits.max_bytes:
            raise ValueError(
                f"the empty event is {self._empty} bytes: max_bytes {limits.max_bytes} "
                "leaves no room for a record"
            )
        self._reset()

    def _reset(self) -> None:
        self._items: list[T] = []
        self._groups: dict[str | None, int] = {}
        self._size = self._empty
        self._opened_at: float | None = None
        self._bytes_full = False

    # --- state ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        """Bytes of the event the open batch would make now (the empty event if none)."""
        return self._size

    @property
    def opened_at(self) -> float | None:
        return self._opened_at

    @property
    def full(self) -> bool:
        """No more items will be accepted: ``BatchSize`` is reached, or an item was
        refused because the bytes would have exceeded the limit."""
        return len(self._items) >= self.limits.max_records or self._bytes_full

    @property
    def deadline(self) -> float | None:
        """When the window closes the open batch; None while it is empty."""
        if self._opened_at is None:
            return None
        return self._opened_at + self.limits.window_seconds

    def due(self, now: float) -> bool:
        """Whether the open batch should be taken now (full, or its window has passed).

        Always false for an empty batch; with a window of 0, true once it holds an item.
        """
        return batch_due(
            self.limits,
            count=len(self._items),
            full=self._bytes_full,
            opened_at=self._opened_at,
            now=now,
        )

    # --- changes --------------------------------------------------------------------

    def size_alone(self, size: int, *, group: str | None = None) -> int:
        """Bytes of an event holding only this one item."""
        return self._empty + self.framing.group_size(group) + size

    def add(self, item: T, size: int, now: float, *, group: str | None = None) -> AddResult:
        """Add an item whose serialized fragment is ``size`` bytes long.

        ``group`` is the Kafka ``"<topic>-<partition>"`` key (None for flat events).
        """
        if size < 0:
            raise ValueError(f"size must not be negative, not {size}")
        if self.size_alone(size, group=group) > self.limits.max_bytes:
            return AddResult.OVERSIZED
        if len(self._items) >= self.limits.max_records:
            return AddResult.BATCH_FULL
        added = self._added_size(size, group)
        if self._items and self._size + added > self.limits.max_bytes:
            self._bytes_full = True
            return AddResult.BATCH_FULL
        if not self._items:
            self._opened_at = now
        self._items.append(item)
        self._groups[group] = self._groups.get(group, 0) + 1
        self._size += added
        return AddResult.ACCEPTED

    def _added_size(self, size: int, group: str | None) -> int:
        in_group = self._groups.get(group, 0)
        if in_group:
            return size + 1  # a comma before the fragment
        between_groups = 1 if self._groups else 0
        return size + self.framing.group_size(group) + between_groups

    def take(self) -> Batch[T]:
        """Close the open batch and start a new, empty one."""
        batch = Batch(items=self._items, size_bytes=self._size, opened_at=self._opened_at)
        self._reset()
        return batch


# --- assembling events ---------------------------------------------------------------


def assemble_event(
    fragments: Iterable[bytes],
    *,
    prefix: bytes = RECORDS_PREFIX,
    suffix: bytes = RECORDS_SUFFIX,
) -> bytes:
    """Join serialized records into an event: ``prefix + b",".join(fragments) + suffix``.

    The defaults make ``{"Records":[...]}`` (SQS, Kinesis, DynamoDB Streams).
    """
    return prefix + b",".join(fragments) + suffix


def assemble_kafka_event(
    partitions: Mapping[str, Sequence[bytes]] | Iterable[tuple[str, Sequence[bytes]]],
    *,
    framing: KafkaFraming,
) -> bytes:
    """Build a Kafka event from per-partition fragments.

    ``partitions`` maps ``"<topic>-<partition>"`` to that partition's serialized records,
    in order (a mapping, or pairs in the order the groups should appear). Groups with no
    fragment are left out. The result's length equals the ``size_bytes`` the
    :class:`Batcher` computed with the same ``framing``::

        {"eventSource":"SelfManagedKafka","bootstrapServers":"b-1:9092",
         "records":{"orders-0":[{...},{...}],"orders-1":[{...}]}}
    """
    pairs = partitions.items() if isinstance(partitions, Mapping) else partitions
    parts = [
        orjson.dumps(key) + b":[" + b",".join(fragments) + b"]"
        for key, fragments in pairs
        if fragments
    ]
    return framing.head + b",".join(parts) + framing.tail


def group_fragments(
    items: Iterable[tuple[str, bytes]],
) -> dict[str, list[bytes]]:
    """Group ``(partition_key, fragment)`` pairs by key, keeping first-seen key order and
    the order of fragments within a key (the input to :func:`assemble_kafka_event`)."""
    grouped: dict[str, list[bytes]] = {}
    for key, fragment in items:
        grouped.setdefault(key, []).append(fragment)
    return grouped
