"""What Kinesis and DynamoDB Streams share: shard lineage, leases, the per-shard loop.

:mod:`pumphouse.pollers.kinesis` and :mod:`pumphouse.pollers.dynamodb` only talk to
their client (list shards, get an iterator, get records, turn a record into its Lambda
shape); everything else lives here.

Shards and their lifecycle
==========================

A shard goes **discovered → leased → processing → ended → retired**:

* *discovered*: listed by ``ListShards`` / ``DescribeStream`` (re-listed every
  :attr:`StreamPoller.discovery_interval` seconds and at once when a shard this replica
  reads comes to its end);
* *leased*: this replica holds the shard's lease (see below);
* *processing*: its reader and lanes run;
* *ended*: ``GetRecords`` returned no next iterator (the shard was closed by a split or
  a merge) **and** every record read from it is finished; the checkpoint is written with
  ``shard_ended`` and the lease released;
* *retired*: ended, or gone from the listing (trimmed past the retention period).

A child shard is *eligible* (may be leased) only when every parent it names
(``ParentShardId``, ``AdjacentParentShardId``) is ended or retired. Closed shards are
drained to their end, never skipped. Example: shard 0 splits into 1 and 2, then 1 and 2
merge into 3::

    0 ──┬── 1 ──┬── 3          eligible at first: {0}
        └── 2 ──┘              0 ends    → {1, 2}   (both may run at once)
                               1 ends    → {2}      (3 waits: 2 is not ended)
                               2 ends    → {3}

Per-key order across a reshard holds because a key's records in a child are read only
after all of that key's records in the parent are finished.

Starting position of a shard without a checkpoint: ``TRIM_HORIZON`` when one of its
parents has a checkpoint (this mapping read the parent, so the child continues it);
otherwise the mapping's ``StartingPosition`` (``TRIM_HORIZON``, ``LATEST``, Kinesis
``AT_TIMESTAMP``). With a checkpoint: ``AFTER_SEQUENCE_NUMBER`` it.

Leases: spreading shards over replicas
======================================

Every eligible shard has a lease ``<mapping UUID>/<shard id>`` in the state store
(:mod:`pumphouse.state` describes the fencing tokens). Each coordinator cycle (a third of
``Settings.LeaseDurationSeconds``, jittered by up to 20 %) a replica:

1. renews the leases it holds; a lease that cannot be renewed (taken, expired, or no
   successful renewal for a whole lease duration) is *lost*: its shard stops at once and
   writes no checkpoint (a write would be refused anyway: its token is stale);
2. lists the leases and counts, per owner, the live leases of eligible shards. The
   replicas are those owners plus itself. With ``n`` eligible shards and ``r`` replicas
   its fair share is ``ceil(n / r)``;
3. acquires free leases (never taken, released, or expired) up to its fair share;
4. if none is free and it holds fewer than its share, it **steals one** lease from the
   most-loaded replica, but only from a replica holding at least two more than itself
   (so a steal always narrows the gap and two replicas never trade a shard back and
   forth). At most one steal per cycle, and cycles are jittered: no steal storms.

With the SQLite store there is one replica: it takes every eligible shard and never
steals. On graceful shutdown every lease is released after the last checkpoint, so
another replica resumes at once; a killed replica's leases expire after the lease
duration and are then free. Worked example (lease duration 3 s, a 4-shard stream)::

    t=0    A starts alone: n=4, r=1, share 4 → acquires s0 s1 s2 s3
    t=5    B starts: sees owners {A: 4}, r=2, share 2, nothing free
           → steals s3 from A (A has 4 ≥ 0 + 2)             A: 3  B: 1
    t=6    A renews: s3 is gone (LeaseLost) → A stops s3 without checkpointing
    t=6    B: A has 3 ≥ 1 + 2 → steals s2                    A: 2  B: 2  (stable)
    t=20   B is SIGKILLed; s2, s3 expire at t≈23
    t=23   A: s2, s3 free, r=1, share 4 → acquires both, resumes from B's checkpoints

The worst case for duplicates is one batch per shard: the batch B was running when it
died (its checkpoint was not written) is delivered again by A.

The per-shard loop
==================

One :class:`ShardProcessor` per leased shard: a *reader* task and
``ParallelizationFactor`` *lane* tasks. The reader calls ``GetRecords`` (at once again
while the shard is behind — ``MillisBehindLatest`` > 0 or a full page — otherwise after
the source's poll interval, and never faster than the source's per-shard call rate),
turns each record into its Lambda shape, serializes it once (orjson), applies the
filters (a filtered-out record is finished at once: the checkpoint skips past it), and
appends it to the lane of its partition key (Kinesis) or item key (DynamoDB). The reader
pauses while too many records are buffered. Each lane forms batches (``BatchSize``,
``MaximumBatchingWindowInSeconds``, 6 MB) from its records, runs them through the error
policy (:func:`pumphouse.pollers.policy.process_ordered_batch`: retries, record age,
bisect, partial responses, on-failure destination) and marks them finished. The shard's
:class:`~pumphouse.pollers.acks.ContiguousAckTracker` moves the checkpoint only past
records that are finished *and* preceded only by finished records, across lanes.

The checkpoint (sequence number, retry counters, window state) is written after each
finished batch with the lease's fencing token. With Redis the lane waits for the write;
with SQLite (one replica, an fsync per commit) writes run behind the lanes, coalesced,
one in flight per shard.

Retry counters
--------------

Before each retry the attempt number is written with the checkpoint, keyed by the first
sequence number of the batch retried (``Checkpoint.retries``), so a restart or a new
owner continues the count. Each lane retries at most one batch at a time, so with
``ParallelizationFactor`` N there are at most N entries, one per lane, and lanes never
overwrite each other's. An entry goes when its record finishes (succeeded, or given up).
A new processor loads the entries ahead of its checkpoint; a lane's batch that starts at
a stored key continues that count, and a batch never runs past a stored key that no lane
has picked up yet: it closes just before it, so the batch the counter belongs to starts
there again. Example, ``ParallelizationFactor`` 2, ``MaximumRetryAttempts`` 3, lane A
holds 1 2 4 and poison 5, lane B poison 3::

    A: [1 2] ok, [4 5] fails twice     B: [3] fails three times
    checkpoint 2, retries {"4": 2, "3": 3}               -- restart --
    A: [4 5] continues with attempt 3  B: [3] continues with attempt 4, then given up

``ExpiredIteratorException`` gets a new iterator after the last record read;
``TrimmedDataAccessException`` continues from the trim horizon (the skipped records are
lost and counted as a ``trimmed`` source error); throttling backs off exponentially.

Tumbling windows
================

With ``TumblingWindowInSeconds`` W, a record belongs to the window
``[floor(arrival / W) * W, + W)`` of its arrival time. A shard then runs one lane
(windows carry state from one invoke to the next, so they are sequential; a configured
``ParallelizationFactor`` is not applied). Batches never mix windows. Each invoke
carries ``window``, ``state`` (``{}`` at the start of a window), ``shardId``,
``eventSourceARN``, ``isFinalInvokeForWindow`` and ``isWindowTerminatedEarly``; the
handler must return ``{"state": {...}}`` (a response without an object ``state`` is a
failed invoke and retried). The returned state is saved in the checkpoint with the
sequence number, so a restart continues the window. A window is *final* when a record of
a later window has been read, when the shard ended, or when the window's end has passed
and a ``GetRecords`` started after that end came back without a full page: the last
batch of the window (possibly with no record at all) is then invoked with
``isFinalInvokeForWindow: true``; its success checkpoints and drops the state. A state
over 1 MB terminates the window early: an extra invoke with no record,
``isFinalInvokeForWindow`` and ``isWindowTerminatedEarly`` true, then the window's
remaining records start over with ``{}``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
import random
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import orjson
import structlog

from pumphouse.errors import (
    DestinationError,
    LeaseLost,
    SourceError,
    SourceNotFound,
    SourceThrottled,
    StaleFencingToken,
    StateStoreError,
)
from pumphouse.pollers.acks import ContiguousAckTracker
from pumphouse.pollers.batching import (
    MAX_INVOKE_PAYLOAD_BYTES,
    AddResult,
    Batcher,
    BatchLimits,
    assemble_event,
    batch_due,
)
from pumphouse.pollers.destinations import (
    FailureDestination,
    make_destination,
    stream_failure_record_for,
)
from pumphouse.pollers.dispatch import Dispatcher, FailureMessage, retry_policy
from pumphouse.pollers.policy import AttemptOutcome, AttemptResult, GiveUp
from pumphouse.pollers.responses import stream_item_id
from pumphouse.state import Checkpoint, Lease, LeaseInfo, retry_state

if TYPE_CHECKING:
    from pumphouse.pollers.base import MappingContext
    from pumphouse.pollers.filtering import FilterSet
    from pumphouse.runtime.result import InvocationResult

log = structlog.get_logger("pumphouse.streams")

def wall_clock() -> float:
    """Epoch seconds, as the error policy sees them (record age). Tests may replace it."""
    return time.time()


#: Largest tumbling-window state kept; a larger one terminates the window early.
MAX_WINDOW_STATE_BYTES = 1024 * 1024
#: Room left in a windowed event for the window fields and the state.
_WINDOW_ENVELOPE_BYTES = MAX_WINDOW_STATE_BYTES + 4096


# --- errors the sources raise ---------------------------------------------------------


class IteratorExpired(SourceError):
    """``ExpiredIteratorException``: get a new iterator and go on."""


class DataTrimmed(SourceError):
    """``TrimmedDataAccessException``: the records asked for are past the retention
    period; continue from the trim horizon."""


# --- shards and lineage ----------------------------------------------------------------


class ShardState(StrEnum):
    """Where a shard is in its life, as this replica sees it."""

    DISCOVERED = "discovered"
    LEASED = "leased"
    PROCESSING = "processing"
    ENDED = "ended"
    RETIRED = "retired"


@dataclass(frozen=True)
class ShardInfo:
    """One shard as listed by the source."""

    shard_id: str
    parent_ids: tuple[str, ...] = ()
    """``ParentShardId`` then ``AdjacentParentShardId``, those present."""
    closed: bool = False
    """The listing gives an ``EndingSequenceNumber``: nothing more will be written."""


class ShardLineage:
    """Known shards, their parents and states; which shards may be processed now.

    Pure bookkeeping: no I/O. See the module docstring for the rules and an example.
    """

    def __init__(self) -> None:
        self.shards: dict[str, ShardInfo] = {}
        self.states: dict[str, ShardState] = {}

    def update(self, listed: Iterable[ShardInfo], *, ended: Collection[str] = ()) -> None:
        """Merge a fresh listing; ``ended`` are shards whose checkpoint says they ended.

        Shards known before but absent now are retired (trimmed from the stream).
        """
        seen: set[str] = set()
        for info in listed:
            seen.add(info.shard_id)
            self.shards[info.shard_id] = info
            self.states.setdefault(info.shard_id, ShardState.DISCOVERED)
        for shard_id in list(self.states):
            if shard_id not in seen:
                self.states[shard_id] = ShardState.RETIRED
        self.mark_ended(ended)

    def mark_ended(self, shard_ids: Iterable[str]) -> None:
        for shard_id in shard_ids:
            if self.states.get(shard_id) is not ShardState.RETIRED:
                self.states[shard_id] = ShardState.ENDED

    def set_state(self, shard_id: str, state: ShardState) -> None:
        current = self.states.get(shard_id)
        if current in (ShardState.ENDED, ShardState.RETIRED) and state not in (
            ShardState.ENDED,
            ShardState.RETIRED,
        ):
            return  # an ended shard never comes back
        self.states[shard_id] = state

    def is_done(self, shard_id: str) -> bool:
        """Ended, retired, or unknown (a parent trimmed before we ever listed it)."""
        state = self.states.get(shard_id)
        return state is None or state in (ShardState.ENDED, ShardState.RETIRED)

    def parents_done(self, shard_id: str) -> bool:
        info = self.shards.get(shard_id)
        return info is None or all(self.is_done(p) for p in info.parent_ids)

    def eligible(self) -> list[str]:
        """Shards that may be leased and processed now, sorted (parents sort first)."""
        return sorted(
            shard_id
            for shard_id, info in self.shards.items()
            if not self.is_done(shard_id) and self.parents_done(info.shard_id)
        )


# --- lease planning (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class LeasePlan:
    """What a replica does with leases this cycle."""

    acquire: tuple[str, ...] = ()
    """Free shards to acquire, in order."""
    steal: tuple[str, str] | None = None
    """``(shard, current owner)`` to steal, or None."""


def plan_leases(
    *,
    me: str,
    eligible: Sequence[str],
    leases: Mapping[str, LeaseInfo],
    busy: Collection[str] = (),
    allow_steal: bool = True,
    rng: random.Random | None = None,
) -> LeasePlan:
    """Decide which leases to acquire or steal (see "Leases" in the module docstring).

    ``eligible`` are the shard ids that may run; ``leases`` the current leases by shard
    id; ``busy`` shards this replica may not take now (a previous processor still
    winding down). ``allow_steal`` False: take every free shard, steal nothing (SQLite).

    >>> plan_leases(me="A", eligible=["s0", "s1"], leases={}).acquire
    ('s0', 's1')
    """
    pick = rng or random
    counts: dict[str, list[str]] = {}
    free: list[str] = []
    for shard in eligible:
        info = leases.get(shard)
        if info is None or info.expired or not info.owner:
            if shard not in busy:
                free.append(shard)
        else:
            counts.setdefault(info.owner, []).append(shard)
    mine = len(counts.get(me, ()))
    if not allow_steal:
        return LeasePlan(acquire=tuple(free))
    replicas = set(counts) | {me}
    share = math.ceil(len(eligible) / len(replicas)) if eligible else 0
    room = max(0, share - mine)
    if free:
        return LeasePlan(acquire=tuple(free[:room]))
    if room == 0:
        return LeasePlan()
    others = [(len(shards), owner) for owner, shards in counts.items() if owner != me]
    if not others:
        return LeasePlan()
    most = max(n for n, _ in others)
    if most < mine + 2:
        return LeasePlan()
    victim = pick.choice(sorted(owner for n, owner in others if n == most))
    candidates = [s for s in counts[victim] if s not in busy]
    if not candidates:
        return LeasePlan()
    return LeasePlan(steal=(pick.choice(sorted(candidates)), victim))


# --- records, lanes, windows (pure helpers) ---------------------------------------------


@dataclass(slots=True)
class StreamRecord:
    """One record read from a shard, already in its Lambda shape and serialized."""

    sequence_number: str
    fragment: bytes
    """The record's Lambda shape, serialized once."""
    arrival: float
    """When the stream received it (epoch seconds)."""
    lane_key: str
    """Partition key (Kinesis) or item key (DynamoDB): decides the lane."""
    position: int = -1
    """Its position in the shard's ack tracker."""
    read_at: float = 0.0
    """Monotonic time it was read (opens the batching window)."""
    shard_id: str = ""
    """The shard it was read from (its failure record and S3 key name it)."""


def take_batch(
    pending: deque[StreamRecord],
    limits: BatchLimits,
    *,
    now: float,
    window_start_at: float | None = None,
    tumbling_seconds: int = 0,
    resume_at: Collection[str] = (),
) -> tuple[list[StreamRecord], list[StreamRecord]]:
    """Take the next batch off the head of ``pending``: ``(batch, oversized)``.

    The batch is cut where :class:`~pumphouse.pollers.batching.Batcher` cuts it (count,
    bytes), before a record of another tumbling window (``window_start_at``), before the
    record a stored retry counter belongs to (``resume_at``: that batch starts there), and
    before a record too large for any event; such a record at the head is taken out into
    ``oversized`` (it can never be delivered).
    """
    batcher: Batcher[StreamRecord] = Batcher(limits)
    taken: list[StreamRecord] = []
    oversized: list[StreamRecord] = []
    while pending:
        record = pending[0]
        if window_start_at is not None and (
            window_start(record.arrival, tumbling_seconds) != window_start_at
        ):
            break
        if resume_at and taken and record.sequence_number in resume_at:
            break  # the batch a stored retry counter belongs to starts here
        result = batcher.add(record, len(record.fragment), now)
        if result is AddResult.OVERSIZED:
            if taken:
                break  # it waits behind the batch, as on every source
            oversized.append(pending.popleft())
            continue
        if result is AddResult.BATCH_FULL:
            break
        taken.append(pending.popleft())
        if batcher.full:
            break
    return taken, oversized


def lane_of(key: str, lanes: int) -> int:
    """The lane of a partition key: stable across processes and restarts (CRC-32)."""
    if lanes <= 1:
        return 0
    return zlib.crc32(key.encode()) % lanes


def window_start(arrival: float, seconds: int) -> float:
    """Start of the tumbling window an arrival time falls in (aligned on the epoch)."""
    return math.floor(arrival / seconds) * seconds


def iso_window_time(epoch: float) -> str:
    """``2020-07-30T17:00:00Z``: how ``window.start`` / ``window.end`` are written."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WindowState:
    """The open tumbling window of a shard."""

    start: float
    end: float
    state: Any = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "state": self.state}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> WindowState | None:
        if not doc or "start" not in doc or "end" not in doc:
            return None
        state = doc.get("state")
        return cls(float(doc["start"]), float(doc["end"]), state if state is not None else {})


def window_suffix(
    window: WindowState,
    *,
    shard_id: str,
    stream_arn: str,
    final: bool,
    terminated_early: bool,
) -> bytes:
    """What follows the records of a windowed event: ``],"window":{...},...}``."""
    tail = orjson.dumps(
        {
            "window": {"start": iso_window_time(window.start), "end": iso_window_time(window.end)},
            "state": window.state,
            "shardId": shard_id,
            "eventSourceARN": stream_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": terminated_early,
        }
    )
    return b"]," + tail[1:]


# --- what each source provides ------------------------------------------------------------


@dataclass(frozen=True)
class StartPosition:
    """Where to get a shard iterator."""

    kind: str
    """TRIM_HORIZON, LATEST, AT_TIMESTAMP or AFTER_SEQUENCE_NUMBER."""
    sequence_number: str | None = None
    timestamp: float | None = None


@dataclass
class ReadResult:
    """One ``GetRecords`` answer."""

    records: list[Any]
    next_iterator: str | None
    """None: the shard is closed and was read to its end."""
    millis_behind: int | None = None


class StreamSource(abc.ABC):
    """The client side of one stream: the only code that talks to Kinesis or DynamoDB
    Streams. Implementations map client errors to :class:`SourceError` subclasses
    (:class:`SourceThrottled`, :class:`SourceNotFound`, :class:`IteratorExpired`,
    :class:`DataTrimmed`)."""

    kind: str
    """``kinesis`` or ``dynamodb`` (failure record shape, metric labels)."""
    poll_interval: float = 1.0
    """Seconds between polls of a caught-up shard."""
    min_call_interval: float = 0.2
    """Fewest seconds between two ``GetRecords`` on one shard (per-shard call limit)."""
    page_limit: int = 10000
    """``Limit`` of a ``GetRecords`` call."""
    stream_arn: str

    @abc.abstractmethod
    async def describe(self) -> None:
        """Check the stream exists (:class:`SourceNotFound` otherwise)."""

    @abc.abstractmethod
    async def list_shards(self) -> list[ShardInfo]:
        """Every shard of the stream, with its parents (all pages)."""

    @abc.abstractmethod
    async def shard_iterator(self, shard_id: str, position: StartPosition) -> str | None:
        """A shard iterator; None if the shard has nothing there (closed and empty)."""

    @abc.abstractmethod
    async def get_records(self, iterator: str, limit: int) -> ReadResult:
        """One ``GetRecords`` call."""

    @abc.abstractmethod
    def shape(self, raw: Any, shard_id: str) -> tuple[dict[str, Any], str, float, str]:
        """A raw record as ``(Lambda record, sequence number, arrival, lane key)``."""


# --- the per-shard processor --------------------------------------------------------------


class ShardExit(StrEnum):
    ENDED = "ended"
    STOPPED = "stopped"
    LOST = "lost"


class _ShardLost(Exception):
    """The shard's lease is gone: stop without checkpointing."""


@dataclass
class _Lane:
    index: int
    pending: deque[StreamRecord] = field(default_factory=deque)
    pending_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False


class ShardProcessor:
    """Reads one shard and runs its batches; see "The per-shard loop" above."""

    def __init__(
        self,
        poller: StreamPoller,
        shard_id: str,
        *,
        lease: Lease,
        checkpoint: Checkpoint | None,
        position: StartPosition,
    ) -> None:
        self.poller = poller
        self.ctx = poller.ctx
        self.source = poller.source
        self.shard_id = shard_id
        self.lease = lease
        self.checkpoint = checkpoint
        self.position = position
        mapping = self.ctx.mapping
        self.windowed = mapping.tumbling_window > 0
        n_lanes = 1 if self.windowed else mapping.parallelization_factor
        self.lanes = [_Lane(i) for i in range(n_lanes)]
        self.tracker: ContiguousAckTracker[str] = ContiguousAckTracker()
        self.window = WindowState.from_json(checkpoint.window if checkpoint else None)
        self.last_read: str | None = checkpoint.sequence_number if checkpoint else None
        self.retries: dict[str, int] = _unfinished_retries(checkpoint)
        """Retry counters by the first sequence number of the batch they count (see
        "Retry counters" in the module docstring); written with every checkpoint."""
        self.resume_at: set[str] = set(self.retries)
        """Stored counters no lane has picked up yet: a batch never runs past one."""
        self.committed: str | None = self.last_read
        self.buffered = 0
        self.space = asyncio.Event()
        self.space.set()
        self.reader_done = False
        self.shard_closed = False
        self.caught_up_since: float = 0.0
        """Wall time at which the last ``GetRecords`` that came back caught up started."""
        self.stopping = asyncio.Event()
        self.lost = asyncio.Event()
        self._ckpt_lock = asyncio.Lock()
        self._writing: asyncio.Task[None] | None = None
        self._dirty = False
        self._bound = log.bind(mapping=mapping.label, shard=shard_id)
        self._iterator_age = self.ctx.metrics.iterator_age(shard_id)
        self._behind = self.ctx.metrics.behind_latest(shard_id)
        base_bytes = MAX_INVOKE_PAYLOAD_BYTES - (_WINDOW_ENVELOPE_BYTES if self.windowed else 0)
        self.limits = BatchLimits(
            max_records=mapping.batch_size,
            window_seconds=mapping.batching_window,
            max_bytes=base_bytes,
        )
        self.max_buffer = max(2 * mapping.batch_size * n_lanes, self.source.page_limit * 2)
        self.yield_every = max(100, mapping.batch_size)

    # -- control ------------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful: stop reading, let in-flight batches finish and checkpoint."""
        self.stopping.set()
        self._wake_all()

    def lose(self, reason: str) -> None:
        """The lease is gone: stop at once, write nothing more."""
        if not self.lost.is_set():
            self._bound.warning("lease lost; stopping shard", reason=reason)
            self.ctx.metrics.lease_event("lost")
        self.lost.set()
        self.stopping.set()
        self._wake_all()

    def _wake_all(self) -> None:
        self.space.set()
        for lane in self.lanes:
            lane.wake.set()

    def _halted(self) -> bool:
        return self.stopping.is_set()

    # -- run ----------------------------------------------------------------------------

    async def run(self) -> ShardExit:
        reader = asyncio.create_task(self._read_loop(), name=f"read:{self.shard_id}")
        lanes = [
            asyncio.create_task(self._lane_loop(lane), name=f"lane:{self.shard_id}:{lane.index}")
            for lane in self.lanes
        ]
        tasks = [reader, *lanes]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc] # checked just above
            await asyncio.gather(*tasks)
            await self._pending_checkpoint()
        except _ShardLost:
            self.lose("checkpoint refused")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._writing is not None:
                self._writing.cancel()
                await asyncio.gather(self._writing, return_exceptions=True)
        if self.lost.is_set():
            return ShardExit.LOST
        if self.shard_closed and self.tracker.in_flight == 0:
            # Drained to its end (also when stopping): record that the shard ended.
            try:
                await self._write_checkpoint(ended=True)
            except (StateStoreError, _ShardLost):
                if not self.stopping.is_set():
                    raise
                return ShardExit.STOPPED
            return ShardExit.ENDED
        return ShardExit.STOPPED

    # -- reading ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            await self._read()
        except _Stopped:
            return
        finally:
            self.reader_done = True
            self._wake_all()

    async def _read(self) -> None:
        source = self.source
        metrics = self.ctx.metrics
        filters: FilterSet = self.poller.filters
        filtering = not filters.is_empty
        iterator = await self._iterator(self.position)
        if iterator is None:
            self.shard_closed = True
            return
        errors = 0
        last_call = 0.0
        limit = source.page_limit
        while not self._halted():
            while self.buffered >= self.max_buffer and not self._halted():
                self.space.clear()
                await self.space.wait()
            if self._halted():
                return
            wait = last_call + source.min_call_interval - time.monotonic()
            if wait > 0:
                await self._sleep(wait)
            last_call = time.monotonic()
            started = time.time()
            try:
                result = await source.get_records(iterator, limit)
            except SourceThrottled:
                metrics.source_error("get_records", kind="throttled")
                errors += 1
                await self._sleep(_backoff(errors))
                continue
            except IteratorExpired:
                metrics.source_error("get_records", kind="expired_iterator")
                position = (
                    StartPosition("AFTER_SEQUENCE_NUMBER", self.last_read)
                    if self.last_read
                    else self.position
                )
                iterator = await self._iterator(position)
                if iterator is None:
                    self.shard_closed = True
                    return
                continue
            except DataTrimmed as err:
                metrics.source_error("get_records", kind="trimmed")
                self._bound.warning("records trimmed before they were read", error=str(err))
                iterator = await self._iterator(StartPosition("TRIM_HORIZON"))
                if iterator is None:
                    self.shard_closed = True
                    return
                continue
            except SourceNotFound:
                raise
            except SourceError as err:
                metrics.source_error("get_records")
                errors += 1
                self.ctx.status.problem(str(err))
                await self._sleep(_backoff(errors))
                continue
            errors = 0
            raws = result.records
            if raws:
                read_at = time.monotonic()
                metrics.polled.inc(len(raws))
                tracker = self.tracker
                lanes = self.lanes
                n_lanes = len(lanes)
                shape = source.shape
                shard_id = self.shard_id
                skipped: list[int] = []
                touched: set[int] = set()
                dumps = orjson.dumps
                chunk = self.yield_every
                for n, raw in enumerate(raws, 1):
                    doc, seq, arrival, key = shape(raw, shard_id)
                    at = tracker.register(seq)
                    if filtering and not filters.matches(doc):
                        skipped.append(at)
                        continue
                    record = StreamRecord(seq, dumps(doc), arrival, key, at, read_at, shard_id)
                    index = lane_of(key, n_lanes) if n_lanes > 1 else 0
                    lane = lanes[index]
                    lane.pending.append(record)
                    lane.pending_bytes += len(record.fragment)
                    touched.add(index)
                    self.buffered += 1
                    if n % chunk == 0:
                        # A big page: let the lanes start invoking while we shape the rest.
                        for index in touched:
                            lanes[index].wake.set()
                        await asyncio.sleep(0)
                self.last_read = seq
                if skipped:
                    metrics.filtered_out.inc(len(skipped))
                    tracker.complete(skipped)
                    await self._advance_checkpoint()
                for index in touched:
                    lanes[index].wake.set()
            if result.millis_behind is not None:
                self._behind.set(result.millis_behind / 1000)
            if result.next_iterator is None:
                self.shard_closed = True
                self.caught_up_since = started
                return
            iterator = result.next_iterator
            behind = bool(result.millis_behind) or len(raws) >= limit
            if not behind:
                self.caught_up_since = started
                if self.windowed:
                    self.lanes[0].wake.set()
                await self._sleep(source.poll_interval)

    async def _iterator(self, position: StartPosition) -> str | None:
        errors = 0
        while True:
            try:
                return await self.source.shard_iterator(self.shard_id, position)
            except SourceThrottled:
                self.ctx.metrics.source_error("get_shard_iterator", kind="throttled")
            except DataTrimmed as err:
                self.ctx.metrics.source_error("get_shard_iterator", kind="trimmed")
                self._bound.warning("checkpoint is past the retention period", error=str(err))
                position = StartPosition("TRIM_HORIZON")
                continue
            except SourceNotFound:
                raise
            except SourceError as err:
                self.ctx.metrics.source_error("get_shard_iterator")
                self.ctx.status.problem(str(err))
            errors += 1
            if self._halted():
                raise _Stopped()
            await self._sleep(_backoff(errors))

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short when the shard stops."""
        if seconds <= 0 or self._halted():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    # -- lanes --------------------------------------------------------------------------

    async def _lane_loop(self, lane: _Lane) -> None:
        try:
            if self.windowed:
                await self._windowed_lane(lane)
            else:
                await self._plain_lane(lane)
        except _Stopped:
            return
        finally:
            lane.done = True

    async def _next_records(self, lane: _Lane) -> list[StreamRecord] | None:
        """Wait for a batch to close in this lane; None when the lane is done."""
        window = self.limits.window_seconds
        while True:
            if self._halted():
                return None
            pending = lane.pending
            if pending:
                now = time.monotonic()
                if self.reader_done or self._lane_due(lane, now):
                    return self._take(lane)
                remaining = pending[0].read_at + window - now
                lane.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), timeout=remaining)
                continue
            if self.reader_done:
                return None
            lane.wake.clear()
            await lane.wake.wait()

    def _lane_due(self, lane: _Lane, now: float) -> bool:
        """The batch-closing rule applied to what waits in the lane."""
        pending = lane.pending
        return batch_due(
            self.limits,
            count=len(pending),
            full=lane.pending_bytes >= self.limits.max_bytes,
            opened_at=pending[0].read_at if pending else None,
            now=now,
        )

    def _take(self, lane: _Lane, *, window_start_at: float | None = None) -> list[StreamRecord]:
        """Take a batch from the head of the lane (count, bytes; one window)."""
        pending = lane.pending
        taken, oversized = take_batch(
            pending,
            self.limits,
            now=time.monotonic(),
            window_start_at=window_start_at,
            tumbling_seconds=self.ctx.mapping.tumbling_window,
            resume_at=self.resume_at,
        )
        lane.pending_bytes -= sum(len(r.fragment) for r in taken) + sum(
            len(r.fragment) for r in oversized
        )
        self._release_buffer(len(taken) + len(oversized))
        if oversized:
            self.ctx.metrics.dropped.inc(len(oversized))
            self._bound.warning("oversized records dropped", count=len(oversized))
            self.tracker.complete([r.position for r in oversized])
        return taken

    def _release_buffer(self, count: int) -> None:
        self.buffered -= count
        if self.buffered < self.max_buffer:
            self.space.set()

    async def _plain_lane(self, lane: _Lane) -> None:
        while True:
            records = await self._next_records(lane)
            if records is None:
                return
            if not records:
                await self._advance_checkpoint()
                continue
            await self._process(records, invoke=self._invoke_plain)

    # -- one batch through the error policy --------------------------------------------

    async def _process(
        self,
        records: list[StreamRecord],
        *,
        invoke: Callable[[Sequence[StreamRecord]], Awaitable[AttemptResult]],
    ) -> bool:
        """Run one batch through the policy. True when every record finished."""
        first = records[0].sequence_number
        attempts_so_far = self.retries.get(first, 0)
        self.resume_at.discard(first)
        try:
            report = await self.poller.dispatcher.process_ordered(
                records,
                invoke=invoke,
                finished=self._finished,
                stopping=self._halted,
                sleep=self._sleep,
                attempts_so_far=attempts_so_far,
                on_attempt=self._on_attempt,
            )
        except DestinationError:
            # Stopping while the destination is unreachable: the given-up records stay
            # unfinished, so the checkpoint never passes them.
            raise _Stopped() from None
        return not report.stopped

    def _observe_iterator_age(self, records: Sequence[StreamRecord]) -> None:
        if records:
            self._iterator_age.set(max(0.0, time.time() - records[-1].arrival))

    async def _invoke_plain(self, records: Sequence[StreamRecord]) -> AttemptResult:
        self._observe_iterator_age(records)
        return await self.poller.dispatcher.attempt(records)

    async def _on_attempt(self, records: Sequence[StreamRecord], attempt: int) -> None:
        """Persist the attempt number before a retry, so that a restart or a new owner
        continues the count (an attempt cut short counts as made). First attempts write
        nothing: one store write per batch is enough."""
        if attempt <= 1:
            return
        self.retries[records[0].sequence_number] = attempt
        await self._write_checkpoint()

    async def _finished(self, records: Sequence[StreamRecord]) -> None:
        retries = self.retries
        if retries:
            # Only the entries of these records go: another lane's counter stays.
            for record in records:
                if retries.pop(record.sequence_number, None) is not None:
                    self.resume_at.discard(record.sequence_number)
        self.tracker.complete([r.position for r in records])
        await self._advance_checkpoint()

    async def _advance_checkpoint(self) -> None:
        if self.tracker.take_new_checkpoint() is None:
            return
        if not self.poller.overlap_checkpoints:
            await self._write_checkpoint()
            return
        # Background writer: the lane goes on with its next batch while the checkpoint
        # is written; checkpoints that move while a write is in flight are coalesced
        # into the next write (which reads the latest state).
        writing = self._writing
        if writing is not None and not writing.done():
            self._dirty = True
            return
        await self._pending_checkpoint()  # surfaces a failed previous write
        self._writing = asyncio.create_task(self._write_behind())

    async def _write_behind(self) -> None:
        while True:
            self._dirty = False
            await self._write_checkpoint()
            if not self._dirty:
                return

    async def _pending_checkpoint(self) -> None:
        """Wait for the background checkpoint writer, if any (raises its failure)."""
        writing = self._writing
        if writing is not None:
            self._writing = None
            await writing

    # -- tumbling windows -----------------------------------------------------------------

    async def _windowed_lane(self, lane: _Lane) -> None:
        seconds = self.ctx.mapping.tumbling_window
        while not self._halted():
            pending = lane.pending
            window = self.window
            if pending:
                start = window_start(pending[0].arrival, seconds)
                if window is not None and start != window.start:
                    # A record of a later window: the open window is over.
                    if not await self._window_invoke([], final=True):
                        return
                    continue
                if window is None:
                    self.window = WindowState(start, start + seconds, {})
                now = time.monotonic()
                if not self.reader_done and not self._lane_due(lane, now):
                    remaining = pending[0].read_at + self.limits.window_seconds - now
                    lane.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lane.wake.wait(), timeout=remaining)
                    continue
                records = self._take(lane, window_start_at=start)
                following = lane.pending
                final = (
                    bool(following) and window_start(following[0].arrival, seconds) != start
                ) or (not following and self.reader_done and self.shard_closed)
                if not await self._window_invoke(records, final=final):
                    return
                continue
            if window is not None and (
                self.caught_up_since >= window.end or (self.reader_done and self.shard_closed)
            ):
                if not await self._window_invoke([], final=True):
                    return
                continue
            if self.reader_done:
                return
            lane.wake.clear()
            timeout = None
            if window is not None:
                timeout = max(0.05, window.end - time.time() + 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), timeout=timeout)

    async def _window_invoke(self, records: list[StreamRecord], *, final: bool) -> bool:
        """Invoke a window's batch (``final``: the last of the window). False: stop."""
        window = self.window
        assert window is not None
        early = {"terminated": False}

        async def invoke(batch: Sequence[StreamRecord]) -> AttemptResult:
            return await self._invoke_windowed(batch, final=final, early=early)

        if records:
            if not await self._process(records, invoke=invoke):
                return False
        elif not await self._invoke_until_done(invoke):
            return False
        if early["terminated"] and not final:
            # The state outgrew 1 MB: one more invoke, with no record, ends the window
            # early; the window's remaining records start over with an empty state.

            async def terminate(batch: Sequence[StreamRecord]) -> AttemptResult:
                return await self._invoke_windowed(
                    batch, final=True, early=early, terminated_early=True
                )

            if not await self._invoke_until_done(terminate):
                return False
            final = True
        if final:
            self.window = None
            await self._write_checkpoint()
        return True

    async def _invoke_until_done(
        self, invoke: Callable[[Sequence[StreamRecord]], Any]
    ) -> bool:
        """An invoke with no record (end of window): retried like a batch, but with no
        record to give up on: after the retries it is abandoned (the state dropped)."""
        policy = self.poller.policy
        retries = 0
        while True:
            attempt: AttemptResult = await invoke([])
            outcome = attempt.outcome.value
            if outcome == "success":
                return True
            if self._halted():
                return False
            if outcome == "not_run":
                await self._sleep(policy.backoff(1))
                continue
            if not policy.can_retry(retries):
                self._bound.warning("final window invoke abandoned after retries")
                return True
            retries += 1
            await self._sleep(policy.backoff(retries))
            if self._halted():
                return False

    async def _invoke_windowed(
        self,
        records: Sequence[StreamRecord],
        *,
        final: bool,
        early: dict[str, bool],
        terminated_early: bool = False,
    ) -> AttemptResult:
        window = self.window
        assert window is not None
        suffix = window_suffix(
            window,
            shard_id=self.shard_id,
            stream_arn=self.source.stream_arn,
            final=final,
            terminated_early=terminated_early,
        )
        event = assemble_event([r.fragment for r in records], suffix=suffix)

        def read_state(result: InvocationResult, attempt: AttemptResult) -> AttemptResult:
            if attempt.outcome not in (AttemptOutcome.SUCCESS, AttemptOutcome.PARTIAL):
                return attempt
            payload = result.payload
            state = payload.get("state") if isinstance(payload, dict) else None
            if not isinstance(state, dict):
                return AttemptResult.failed(
                    request_id=attempt.request_id,
                    function_error=None,
                    reason="a tumbling-window response must hold a 'state' object",
                )
            window.state = state
            if not final and len(orjson.dumps(state)) > MAX_WINDOW_STATE_BYTES:
                early["terminated"] = True
            return attempt

        self._observe_iterator_age(records)
        return await self.poller.dispatcher.attempt(records, event=event, interpret=read_state)

    # -- checkpoints ----------------------------------------------------------------------

    async def _write_checkpoint(self, *, ended: bool = False) -> None:
        """Write where the shard stands (fenced by the lease). Raises :class:`_ShardLost`
        when the lease is no longer ours."""
        async with self._ckpt_lock:
            if self.lost.is_set():
                raise _ShardLost()
            committable = self.tracker.committable()
            sequence = committable if committable is not None else self.committed
            checkpoint = Checkpoint(
                sequence_number=sequence,
                retries=dict(self.retries),
                window=self.window.to_json() if self.window is not None else None,
                shard_ended=ended,
            )
            store = self.ctx.state.checkpoints
            uuid = self.ctx.mapping.uuid
            try:
                await retry_state(
                    lambda: store.put(uuid, self.shard_id, checkpoint, lease=self.lease),
                    what=f"checkpoint {self.shard_id}",
                    stop=self.lost,
                )
            except (StaleFencingToken, LeaseLost) as err:
                self.lose(str(err))
                raise _ShardLost() from err
            except StateStoreError as err:
                raise _ShardLost() from err
            self.committed = sequence


class _Stopped(Exception):
    """Internal: the shard is stopping while waiting for something."""


def _unfinished_retries(checkpoint: Checkpoint | None) -> dict[str, int]:
    """The stored retry counters still ahead of the checkpoint (a counter at or behind
    it counts records that are finished: it is dropped)."""
    if checkpoint is None or not checkpoint.retries:
        return {}
    done = checkpoint.sequence_number
    if done is None or not done.isdigit():
        return dict(checkpoint.retries)
    last = int(done)
    return {
        seq: n
        for seq, n in checkpoint.retries.items()
        if not seq.isdigit() or int(seq) > last
    }


class StreamBinding:
    """The :class:`~pumphouse.pollers.dispatch.SourceBinding` of Kinesis and DynamoDB
    Streams records, identified by their sequence number."""

    def __init__(
        self, *, source: Literal["kinesis", "dynamodb"], stream_arn: str, function_arn: str
    ) -> None:
        self.source: Literal["kinesis", "dynamodb"] = source
        self.stream_arn = stream_arn
        self.function_arn = function_arn

    def record_id(self, record: StreamRecord) -> Hashable:
        return record.sequence_number

    def item_id(self, identifier: Any) -> Hashable | None:
        return stream_item_id(identifier)

    def arrival(self, record: StreamRecord) -> float:
        return record.arrival

    def fragment(self, record: StreamRecord) -> bytes:
        return record.fragment

    def event(self, records: Sequence[StreamRecord]) -> bytes:
        return assemble_event([r.fragment for r in records])

    def s3_location(self, records: Sequence[StreamRecord]) -> str:
        return records[0].shard_id

    def failure_messages(
        self, gave_up: GiveUp[StreamRecord], *, destination_type: str, now: float
    ) -> Sequence[FailureMessage]:
        records = gave_up.records
        record = stream_failure_record_for(
            gave_up,
            source=self.source,
            function_arn=self.function_arn,
            shard_id=records[0].shard_id,
            stream_arn=self.stream_arn,
            sequence_number=_sequence,
            arrival=_arrival,
            timestamp=now,
        )
        payload = self.event(records) if destination_type == "s3" else None
        return [FailureMessage(record, payload=payload)]


def _arrival(record: StreamRecord) -> float:
    return record.arrival


def _sequence(record: StreamRecord) -> str:
    return record.sequence_number


def _backoff(errors: int, *, base: float = 0.2, cap: float = 10.0) -> float:
    ceiling = min(cap, base * (2 ** min(errors - 1, 30)))
    return random.uniform(ceiling / 2, ceiling)


# --- the poller: discovery, leases, shard processors ---------------------------------------


@dataclass
class _Owned:
    lease: Lease
    processor: ShardProcessor
    task: asyncio.Task[ShardExit]
    renewed_at: float


class StreamPoller(abc.ABC):
    """One stream mapping: discovers shards, balances leases, runs shard processors.

    Subclasses (:class:`~pumphouse.pollers.kinesis.KinesisPoller`,
    :class:`~pumphouse.pollers.dynamodb.DynamoDBStreamsPoller`) provide
    :meth:`make_source` and may refuse configurations in :meth:`check`.
    """

    discovery_interval: float = 10.0
    """Seconds between two shard listings (sooner when a shard ends)."""

    def __init__(self, ctx: MappingContext) -> None:
        self.ctx = ctx
        mapping = ctx.mapping
        self.check()
        self.source = self.make_source()
        self.filters = mapping.compiled_filters()
        self.policy = retry_policy(mapping)
        self.function_arn = ctx.function.invoked_function_arn
        self.destination: FailureDestination | None = None
        if mapping.on_failure_destination:
            self.destination = make_destination(
                mapping.on_failure_destination, clients=ctx.aws, metrics=ctx.metrics
            )
        self.lanes = 1 if mapping.tumbling_window > 0 else mapping.parallelization_factor
        self.caller = ctx.runtime.caller(
            mapping.label, function=ctx.function.name, limit=self.lanes
        )
        self.dispatcher: Dispatcher[StreamRecord] = Dispatcher(
            binding=StreamBinding(
                source="kinesis" if self.source.kind == "kinesis" else "dynamodb",
                stream_arn=self.source.stream_arn,
                function_arn=self.function_arn,
            ),
            runtime=ctx.runtime,
            function=ctx.function.name,
            caller=self.caller,
            metrics=ctx.metrics,
            status=ctx.status,
            policy=self.policy,
            destination=self.destination,
            mapping_uuid=mapping.uuid,
            secrets=tuple(ctx.function.environment.values()),
            wall_clock=lambda: wall_clock(),  # noqa: PLW0108 - read late: tests replace it
            logger=log.bind(mapping=mapping.label),
        )
        self.lineage = ShardLineage()
        self.checkpoints: dict[str, Checkpoint] = {}
        self.owned: dict[str, _Owned] = {}
        self.lease_ttl = float(ctx.config.Settings.LeaseDurationSeconds)
        single = ctx.state.kind == "sqlite"
        self.allow_steal = not single
        # SQLite commits cost an fsync (~2 ms, one writer thread for every shard): with
        # one replica there is no takeover to protect, so checkpoints are written behind
        # the lanes (coalesced, one write in flight per shard). A crash then repeats the
        # batches finished during the last write as well. With Redis every checkpoint is
        # awaited: a new owner repeats at most the batch that was running.
        self.overlap_checkpoints = single
        self.rediscover = asyncio.Event()
        self._bound = log.bind(mapping=mapping.label)
        self._last_listing = -math.inf
        self._releases: set[asyncio.Task[None]] = set()

    # -- what a source provides ------------------------------------------------------------

    def check(self) -> None:  # noqa: B027 - an optional hook: most sources accept everything
        """Refuse what this source cannot do (raise SourceError with retryable=False)."""

    @abc.abstractmethod
    def make_source(self) -> StreamSource:
        """The source client wrapper."""

    # -- run ----------------------------------------------------------------------------------

    @property
    def lease_prefix(self) -> str:
        return f"{self.ctx.mapping.uuid}/"

    def lease_name(self, shard_id: str) -> str:
        return self.lease_prefix + shard_id

    async def run(self) -> None:
        ctx = self.ctx
        await self.source.describe()
        ctx.status.ready()
        try:
            while not ctx.stopping.is_set():
                await self._cycle()
                delay = self.lease_ttl / 3 * random.uniform(0.8, 1.0)
                await self._wait(delay)
        finally:
            await self._shutdown()

    async def _wait(self, delay: float) -> None:
        stopping = asyncio.ensure_future(self.ctx.stopping.wait())
        rediscover = asyncio.ensure_future(self.rediscover.wait())
        try:
            await asyncio.wait(
                [stopping, rediscover], timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
            rediscover.cancel()

    async def _cycle(self) -> None:
        ctx = self.ctx
        now = time.monotonic()
        if self.rediscover.is_set() or now - self._last_listing >= self.discovery_interval:
            self.rediscover.clear()
            try:
                self.lineage.update(await self.source.list_shards())
                self._last_listing = now
            except SourceNotFound:
                raise
            except SourceError as err:
                # Keep the shards we know; list again next cycle.
                ctx.metrics.source_error("list_shards")
                ctx.status.problem(str(err))
                self._bound.warning("listing shards failed", error=str(err))
        self._reap()
        await self._renew()
        uuid = ctx.mapping.uuid
        stop = ctx.stopping
        try:
            self.checkpoints = await retry_state(
                lambda: ctx.state.checkpoints.list(uuid), what="list checkpoints", stop=stop
            )
        except StateStoreError as err:
            ctx.status.problem(f"state store: {err}")
            return
        self.lineage.mark_ended(s for s, c in self.checkpoints.items() if c.shard_ended)
        for shard_id in self.owned:
            self.lineage.set_state(shard_id, ShardState.PROCESSING)
        if stop.is_set():
            return
        await self._balance()
        self._update_gauges()

    def _update_gauges(self) -> None:
        owned = len(self.owned)
        self.ctx.metrics.shards_owned.set(owned)
        self.ctx.metrics.pollers_active.set(owned)
        self.caller.set_limit(max(1, owned * self.lanes))

    def _reap(self) -> None:
        """Collect shard processors that returned."""
        for shard_id, owned in list(self.owned.items()):
            task = owned.task
            if not task.done():
                continue
            del self.owned[shard_id]
            self.ctx.metrics.forget_shard(shard_id)
            if task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                # A bug or an unrecoverable source error: fail the mapping (the service
                # restarts it with backoff) after giving the lease back.
                self._spawn_release(owned.lease)
                raise error
            exit_ = task.result()
            if exit_ is ShardExit.ENDED:
                self._bound.info("shard ended", shard=shard_id)
                self.lineage.mark_ended([shard_id])
                self.checkpoints[shard_id] = Checkpoint(shard_ended=True)
                self.rediscover.set()
                self._spawn_release(owned.lease)
            elif exit_ is ShardExit.STOPPED:
                self.lineage.set_state(shard_id, ShardState.DISCOVERED)
                self._spawn_release(owned.lease)
            else:
                self.lineage.set_state(shard_id, ShardState.DISCOVERED)

    def _spawn_release(self, lease: Lease) -> None:
        task = asyncio.create_task(self._release(lease))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, lease: Lease) -> None:
        try:
            await self.ctx.state.leases.release(lease)
            self.ctx.metrics.lease_event("released")
        except StateStoreError as err:
            self._bound.warning("lease release failed", lease=lease.name, error=str(err))

    async def _renew(self) -> None:
        leases = self.ctx.state.leases
        now = time.monotonic()
        for owned in list(self.owned.values()):
            if owned.processor.lost.is_set():
                continue
            try:
                renewed = await leases.renew(owned.lease, ttl=self.lease_ttl)
            except LeaseLost as err:
                owned.processor.lose(str(err))
                continue
            except StateStoreError as err:
                self.ctx.metrics.lease_event("renew_failed")
                if now - owned.renewed_at > self.lease_ttl:
                    owned.processor.lose(f"no renewal for {self.lease_ttl:g}s: {err}")
                continue
            owned.lease = renewed
            owned.processor.lease = renewed
            owned.renewed_at = now

    async def _balance(self) -> None:
        ctx = self.ctx
        eligible = self.lineage.eligible()
        try:
            infos = await ctx.state.leases.list(self.lease_prefix)
        except StateStoreError as err:
            ctx.status.problem(f"state store: {err}")
            return
        prefix = len(self.lease_prefix)
        leases = {info.name[prefix:]: info for info in infos}
        busy = set(self.owned)
        plan = plan_leases(
            me=ctx.replica_id,
            eligible=eligible,
            leases=leases,
            busy=busy,
            allow_steal=self.allow_steal,
        )
        for shard_id in plan.acquire:
            if ctx.stopping.is_set():
                return
            try:
                lease = await ctx.state.leases.acquire(
                    self.lease_name(shard_id), ctx.replica_id, ttl=self.lease_ttl
                )
            except StateStoreError as err:
                ctx.status.problem(f"state store: {err}")
                return
            if lease is not None:
                ctx.metrics.lease_event("acquired")
                self.lineage.set_state(shard_id, ShardState.LEASED)
                await self._start_shard(shard_id, lease)
        if plan.steal is not None and not ctx.stopping.is_set():
            shard_id, owner = plan.steal
            try:
                lease = await ctx.state.leases.steal(
                    self.lease_name(shard_id),
                    ctx.replica_id,
                    ttl=self.lease_ttl,
                    expected_owner=owner,
                )
            except StateStoreError as err:
                ctx.status.problem(f"state store: {err}")
                return
            if lease is not None:
                ctx.metrics.lease_event("stolen")
                self.lineage.set_state(shard_id, ShardState.LEASED)
                self._bound.info("lease stolen", shard=shard_id, previous_owner=owner)
                await self._start_shard(shard_id, lease)

    def _start_position(self, shard_id: str, checkpoint: Checkpoint | None) -> StartPosition:
        if checkpoint is not None and checkpoint.sequence_number:
            return StartPosition("AFTER_SEQUENCE_NUMBER", checkpoint.sequence_number)
        info = self.lineage.shards.get(shard_id)
        if info is not None and any(p in self.checkpoints for p in info.parent_ids):
            return StartPosition("TRIM_HORIZON")
        mapping = self.ctx.mapping
        kind = str(mapping.StartingPosition or "TRIM_HORIZON")
        if kind == "AT_TIMESTAMP":
            stamp = mapping.StartingPositionTimestamp
            return StartPosition(kind, timestamp=float(stamp) if stamp is not None else None)
        return StartPosition(kind)

    async def _start_shard(self, shard_id: str, lease: Lease) -> None:
        ctx = self.ctx
        try:
            checkpoint = await retry_state(
                lambda: ctx.state.checkpoints.get(ctx.mapping.uuid, shard_id),
                what=f"read checkpoint {shard_id}",
                stop=ctx.stopping,
            )
        except StateStoreError:
            self.lineage.set_state(shard_id, ShardState.DISCOVERED)
            self._spawn_release(lease)
            return
        if checkpoint is not None and checkpoint.shard_ended:
            self.lineage.mark_ended([shard_id])
            self._spawn_release(lease)
            return
        processor = ShardProcessor(
            self,
            shard_id,
            lease=lease,
            checkpoint=checkpoint,
            position=self._start_position(shard_id, checkpoint),
        )
        task = asyncio.create_task(processor.run(), name=f"shard:{ctx.mapping.label}:{shard_id}")
        task.add_done_callback(lambda _: self.rediscover.set())  # wake the coordinator
        self.owned[shard_id] = _Owned(lease, processor, task, time.monotonic())
        self.lineage.set_state(shard_id, ShardState.PROCESSING)
        self._bound.info(
            "shard started",
            shard=shard_id,
            token=lease.token,
            position=processor.position.kind,
            after=processor.position.sequence_number,
        )
        self._update_gauges()

    async def _shutdown(self) -> None:
        """Stop every shard, wait for in-flight batches (bounded), release the leases."""
        owned = list(self.owned.values())
        for item in owned:
            item.processor.stop()
        tasks = [item.task for item in owned]
        deadline = time.monotonic() + self.ctx.shutdown_timeout
        pending = {task for task in tasks if not task.done()}
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Keep renewing while in-flight batches finish, so that their checkpoints
            # are still ours to write.
            _, pending = await asyncio.wait(pending, timeout=min(remaining, self.lease_ttl / 3))
            if pending:
                with contextlib.suppress(StateStoreError):
                    await self._renew()
        for task in pending:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for item in owned:
            if not item.processor.lost.is_set():
                await self._release(item.lease)
        self.owned.clear()
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        self.ctx.metrics.shards_owned.set(0)
        self.ctx.metrics.pollers_active.set(0)
