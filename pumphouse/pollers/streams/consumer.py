"""The per-shard consumer: reads one leased shard and runs its batches.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

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
    BatchLimits,
    assemble_event,
    batch_due,
)
from pumphouse.pollers.policy import AttemptOutcome, AttemptResult
from pumphouse.pollers.stream_positions import report_rejected
from pumphouse.pollers.streams.records import StreamRecord, lane_of, take_batch
from pumphouse.pollers.streams.source import (
    DataTrimmed,
    IteratorExpired,
    ReadResult,
    StartPosition,
)
from pumphouse.pollers.streams.windows import (
    MAX_WINDOW_STATE_BYTES,
    WINDOW_ENVELOPE_BYTES,
    WindowState,
    window_start,
    window_suffix,
)
from pumphouse.retrying import backoff_delay, sleep_unless
from pumphouse.state import Checkpoint, Lease, retry_state

if TYPE_CHECKING:
    from pumphouse.patterns import FilterSet
    from pumphouse.pollers.streams.poller import StreamPoller
    from pumphouse.runtime.result import InvocationResult


log = structlog.get_logger("pumphouse.streams")


# --- the per-shard processor --------------------------------------------------------------


class ConsumerState(StrEnum):
    """Where a shard consumer is (the Kinesis Client Library's consumer states).

    A shard waits on its parents in the lineage (:class:`~pumphouse.pollers.streams.
    lineage.ShardLineage`: it is not leased before they ended) and is initialized by the
    poller (lease, checkpoint, :func:`~pumphouse.pollers.streams.poller.start_position`);
    the consumer then goes::

        INITIALIZING ─▶ PROCESSING ─┬─▶ SHARD_ENDED ─┬─▶ ENDED          (children may run)
                                    │                └─▶ SHUTTING_DOWN  (stopping)
                                    ├─▶ SHUTTING_DOWN                   (stopped, not ended)
                                    └─▶ LEASE_LOST                      (writes nothing)
    """

    INITIALIZING = "initializing"
    PROCESSING = "processing"
    SHARD_ENDED = "shard_ended"
    ENDED = "ended"
    SHUTTING_DOWN = "shutting_down"
    LEASE_LOST = "lease_lost"


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
        # What the consumer takes from its mapping, once: it never reaches back.
        self.ctx = poller.ctx
        self.source = poller.source
        self.filters: FilterSet = poller.filters
        self.dispatcher = poller.dispatcher
        self.policy = poller.policy
        self.overlap_checkpoints = poller.overlap_checkpoints
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
        self.state = ConsumerState.INITIALIZING
        self.stopping = asyncio.Event()
        self.lost = asyncio.Event()
        self._ckpt_lock = asyncio.Lock()
        self._writing: asyncio.Task[None] | None = None
        self._dirty = False
        self._bound = log.bind(mapping=mapping.label, shard=shard_id)
        self._iterator_age = self.ctx.metrics.iterator_age(shard_id)
        self._behind = self.ctx.metrics.behind_latest(shard_id)
        base_bytes = MAX_INVOKE_PAYLOAD_BYTES - (WINDOW_ENVELOPE_BYTES if self.windowed else 0)
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
        """Drive the consumer through its states until it exits (see :class:`ConsumerState`)."""
        state = ConsumerState.PROCESSING
        while True:
            self.state = state
            if state is ConsumerState.PROCESSING:
                state = await self._processing()
            elif state is ConsumerState.SHARD_ENDED:
                state = await self._shard_ended()
            elif state is ConsumerState.LEASE_LOST:
                return ShardExit.LOST
            elif state is ConsumerState.ENDED:
                return ShardExit.ENDED
            else:
                return ShardExit.STOPPED

    async def _processing(self) -> ConsumerState:
        """Run the reader and the lanes until the reader is done and the lanes drained,
        the consumer stops, or the lease is lost."""
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
            return ConsumerState.LEASE_LOST
        if self.shard_closed and self.tracker.in_flight == 0:
            return ConsumerState.SHARD_ENDED  # drained to its end (also when stopping)
        return ConsumerState.SHUTTING_DOWN

    async def _shard_ended(self) -> ConsumerState:
        """Record that the shard ended, so that its children may be read."""
        try:
            await self._write_checkpoint(ended=True)
        except (StateStoreError, _ShardLost):
            if not self.stopping.is_set():
                raise
            return ConsumerState.SHUTTING_DOWN  # the next owner finds the end again
        return ConsumerState.ENDED

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
        """Read the shard page by page into the lanes, until its end or a stop."""
        source = self.source
        iterator = await self._iterator(self.position)
        errors = 0
        last_call = 0.0
        while True:
            if iterator is None:
                self.shard_closed = True
                return
            if not await self._wait_for_space():
                return
            await self._sleep(last_call + source.min_call_interval - time.monotonic())
            last_call = time.monotonic()
            started = time.time()
            try:
                result = await source.get_records(iterator, source.page_limit)
            except SourceNotFound:
                raise
            except SourceError as err:
                iterator, errors = await self._read_failed(err, iterator, errors)
                continue
            errors = 0
            self.ctx.status.progress.read_succeeded()  # the source answers (progress.py)
            if result.records:
                await self._take_records(result.records)
            self.ctx.status.progress.work(  # has this shard work? (progress.py)
                self.shard_id,
                bool(result.millis_behind or result.records or self.buffered),
                time.time(),
            )
            iterator = await self._after_page(result, started)

    async def _wait_for_space(self) -> bool:
        """Wait while too many records are buffered; False when stopping."""
        while self.buffered >= self.max_buffer and not self._halted():
            self.space.clear()
            await self.space.wait()
        return not self._halted()

    async def _read_failed(
        self, err: SourceError, iterator: str, errors: int
    ) -> tuple[str | None, int]:
        """Handle a failed ``GetRecords``: the iterator to read with next (None: the
        shard is closed) and the failures in a row."""
        metrics = self.ctx.metrics
        if isinstance(err, IteratorExpired):
            metrics.source_error("get_records", kind="expired_iterator")
            position = (
                StartPosition("AFTER_SEQUENCE_NUMBER", self.last_read)
                if self.last_read
                else self.position
            )
            return await self._iterator(position), errors
        if isinstance(err, DataTrimmed):
            metrics.source_error("get_records", kind="trimmed")
            self._bound.warning("records trimmed before they were read", error=str(err))
            return await self._iterator(StartPosition("TRIM_HORIZON")), errors
        if isinstance(err, SourceThrottled):
            metrics.source_error("get_records", kind="throttled")
        else:
            metrics.source_error("get_records")
            self.ctx.status.problem(str(err))
        errors += 1
        await self._sleep(backoff_delay(errors, base=0.2, cap=10.0))
        return iterator, errors

    async def _take_records(self, raws: Sequence[Any]) -> None:
        """Shape, filter and serialize one page's records into their lanes."""
        metrics = self.ctx.metrics
        filters = self.filters
        filtering = not filters.is_empty
        read_at = time.monotonic()
        metrics.polled.inc(len(raws))
        tracker = self.tracker
        lanes = self.lanes
        n_lanes = len(lanes)
        shape = self.source.shape
        shard_id = self.shard_id
        skipped: list[int] = []
        touched: set[int] = set()
        dumps = orjson.dumps
        chunk = self.yield_every
        seq = self.last_read
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

    async def _after_page(self, result: ReadResult, started: float) -> str | None:
        """After a page: the next iterator (None: the shard ended); waits the source's
        poll interval when the shard is caught up."""
        if result.millis_behind is not None:
            self._behind.set(result.millis_behind / 1000)
        if result.next_iterator is None:
            self.caught_up_since = started
            return None
        behind = bool(result.millis_behind) or len(result.records) >= self.source.page_limit
        if not behind:
            self.caught_up_since = started
            if self.windowed:
                self.lanes[0].wake.set()
            await self._sleep(self.source.poll_interval)
        return result.next_iterator

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
                report_rejected(  # a position the stream no longer has: positions.py
                    err,
                    shard_id=self.shard_id,
                    sequence_number=position.sequence_number,
                    stream_created=self.source.created_at,
                    metrics=self.ctx.metrics,
                    logger=self._bound,
                )
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
            await self._sleep(backoff_delay(errors, base=0.2, cap=10.0))

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short when the shard stops."""
        await sleep_unless(self.stopping, seconds)

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
            report = await self.dispatcher.process_ordered(
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
        return await self.dispatcher.attempt(records)

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
        if not self.overlap_checkpoints:
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

    async def _invoke_until_done(self, invoke: Callable[[Sequence[StreamRecord]], Any]) -> bool:
        """An invoke with no record (end of window): retried like a batch, but with no
        record to give up on: after the retries it is abandoned (the state dropped)."""
        policy = self.policy
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
        return await self.dispatcher.attempt(records, event=event, interpret=read_state)

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
                stream_created=self.source.created_at,
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
    return {seq: n for seq, n in checkpoint.retries.items() if not seq.isdigit() or int(seq) > last}
