"""The SQS event source: standard and FIFO queues, the way Lambda's SQS pollers behave.

This is the only module that talks to SQS for a mapping (the redrive tool lives in
:mod:`pumphouse.pollers.sqs_redrive`). Semantics: ESM-SPEC §1-§4.

The pipeline of one mapping
---------------------------
At start the poller resolves the queue URL from ``EventSourceArn`` (``GetQueueUrl``
with ``QueueOwnerAWSAccountId``), reads ``FifoQueue``, ``VisibilityTimeout`` and
``RedrivePolicy``, and refuses to start when the function's ``Timeout`` exceeds the
visibility timeout (it warns when the visibility timeout is under AWS's advice of
``6 x Timeout + window``). Then it runs:

* several **receive loops** (:class:`PollerScaler` decides how many). A loop long-polls
  (``WaitTimeSeconds`` up to 20, at most 10 messages, every system and message
  attribute), turns each message into its Lambda record (:func:`~pumphouse.pollers.
  shapes.sqs_record`), serializes it **once** into a fragment, applies the filters, and
  adds it to a :class:`~pumphouse.pollers.batching.Batcher`. When the batch is due
  (``BatchSize``, window, 6 MB) the loop invokes the function with the assembled event
  bytes, inside a concurrency slot, and acknowledges;
* one **visibility keeper** (:class:`VisibilityKeeper`) that extends the visibility of
  every message received and not yet finished, before it runs out;
* one **queue sampler** that reads the queue depth (a gauge) and picks up a changed
  visibility timeout every few seconds.

Where the batch lives. With a batching window of 0 (and always for FIFO queues) every
loop has its own batch: one receive is one batch when ``BatchSize`` <= 10. With a
window > 0 on a standard queue, all loops add to **one shared open batch**, so that a
``BatchSize`` of 50 is collected from several receives, whichever loop got them. The
loop that opened the shared batch is its *owner*: it bounds its long polls by the
window's deadline, so somebody is always awake to close the batch in time; a loop
whose receive makes the batch full (or finds it due) closes and invokes it.

Acknowledgement
---------------
==============================  ===================================================
outcome                         what is deleted (``DeleteMessageBatch``, chunks of 10)
==============================  ===================================================
success                         every message of the batch
error, timeout, crash, OOM      nothing: the messages come back after the visibility
                                timeout; the queue's RedrivePolicy moves them to its
                                DLQ after ``maxReceiveCount``
ReportBatchItemFailures         every message not reported (ESM-SPEC §3 matrix, read by
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

Visibility heartbeat
--------------------
Each receive passes ``VisibilityTimeout`` explicitly (the queue's value, refreshed by
the sampler), so pumphouse knows when each message would reappear. Messages received
together form a :class:`Hold`; the keeper wakes every ``VT/4`` (0.05 ... 5 s) and, for
every hold within ``VT/2`` of reappearing, calls ``ChangeMessageVisibilityBatch`` to
hide its unfinished messages for another ``VT``. A message leaves its hold when it is
deleted or given up, so a batch that waits in a long window, waits for a slot, or runs
for its whole timeout never reappears mid-flight. Example, VT = 4 s, receive at t=0::

    t=0   received, visible again at t=4
    t=2   keeper (ticks every 1 s): 2 s left <= 2 s margin -> extend, visible at t=6
    t=4   extend again -> t=8;   t=5.1 batch done, deleted: leaves the keeper

Scaling
-------
:class:`PollerScaler`: start with ``min(5, limit)`` loops (AWS starts at 5 concurrent
batches); add one loop whenever a receive comes back full (messages are waiting), at
most one every 0.2 s (AWS: up to 300 per minute); remove one when a long poll comes back
empty, at most one per second, never below one. The limit is
``ScalingConfig.MaximumConcurrency`` when set, and never more than the runtime's slots
for the function (reserved concurrency, global limit), which also cap the concurrent
invocations themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog

from pumphouse.aws import error_code
from pumphouse.errors import SourceError, SourceNotFound, SourceThrottled
from pumphouse.pollers.batching import (
    AddResult,
    Batch,
    Batcher,
    BatchLimits,
    assemble_event,
)
from pumphouse.pollers.dispatch import Dispatcher, FailureMessage, retry_policy
from pumphouse.pollers.policy import AttemptOutcome, AttemptResult, GiveUp
from pumphouse.pollers.responses import (
    WHOLE_SUCCESS,
    BatchResponse,
    PartialFailure,
    WholeFailure,
    WholeSuccess,
    parse_batch_item_failures,
    sqs_item_id,
)
from pumphouse.pollers.shapes import sqs_record

if TYPE_CHECKING:
    from pumphouse.pollers.base import MappingContext

log = structlog.get_logger("pumphouse.sqs")

#: SQS hands out at most 10 messages per ReceiveMessage and takes 10 entries per batch call.
MAX_RECEIVE: Final = 10
BATCH_ENTRIES: Final = 10
#: Longest long poll SQS allows.
MAX_WAIT_SECONDS: Final = 20
#: AWS starts an SQS mapping with five concurrent batches.
INITIAL_POLLERS: Final = 5
#: Without MaximumConcurrency, loops are capped by the runtime's slots and by this.
DEFAULT_MAX_POLLERS: Final = 1000
#: AWS recommends a visibility timeout of at least 6 x Timeout + window.
RECOMMENDED_VISIBILITY_FACTOR: Final = 6

_QUEUE_MISSING: Final = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
_THROTTLED: Final = frozenset(
    {"Throttling", "ThrottlingException", "RequestThrottled", "OverLimit", "KmsThrottled"}
)
#: DeleteMessageBatch / ChangeMessageVisibilityBatch entry errors meaning "this receipt
#: handle is no longer ours" (the message reappeared and was received again, or is gone).
_HANDLE_GONE: Final = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "InvalidParameterValue",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
    }
)


# --- pure pieces ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class QueueInfo:
    """What the poller reads about its queue at start."""

    url: str
    arn: str
    name: str
    fifo: bool
    visibility_timeout: int
    """Seconds (the queue's ``VisibilityTimeout``)."""
    redrive_policy: dict[str, Any] | None = None
    """The parsed ``RedrivePolicy`` (``deadLetterTargetArn``, ``maxReceiveCount``)."""

    @classmethod
    def from_attributes(
        cls, *, url: str, arn: str, name: str, attributes: dict[str, str]
    ) -> QueueInfo:
        redrive: dict[str, Any] | None = None
        raw = attributes.get("RedrivePolicy")
        if raw:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            redrive = parsed if isinstance(parsed, dict) else None
        return cls(
            url=url,
            arn=attributes.get("QueueArn", arn),
            name=name,
            fifo=attributes.get("FifoQueue", "false").lower() == "true" or name.endswith(".fifo"),
            visibility_timeout=int(attributes.get("VisibilityTimeout", "30")),
            redrive_policy=redrive,
        )


def check_visibility_timeout(
    *, function_timeout: float, visibility_timeout: int, window: float, queue: str
) -> str | None:
    """Lambda's start-up check of an SQS mapping.

    Raises :class:`SourceError` (not retryable) when the function may run longer than
    its messages stay hidden; returns a warning when the visibility timeout is below
    AWS's advice (``6 x Timeout + window``), else None.
    """
    if function_timeout > visibility_timeout:
        raise SourceError(
            f"function timeout ({function_timeout:g} s) exceeds the visibility timeout "
            f"({visibility_timeout} s) of queue {queue}: raise the queue's VisibilityTimeout "
            f"to at least {function_timeout:g} s (AWS advises "
            f"{RECOMMENDED_VISIBILITY_FACTOR} x timeout + batching window)",
            retryable=False,
        )
    advised = RECOMMENDED_VISIBILITY_FACTOR * function_timeout + window
    if visibility_timeout < advised:
        return (
            f"queue {queue} has a visibility timeout of {visibility_timeout} s; AWS advises "
            f"at least {advised:g} s ({RECOMMENDED_VISIBILITY_FACTOR} x function timeout "
            "+ batching window) so that retries do not pile up"
        )
    return None


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


def receive_wait_seconds(
    deadline: float | None, now: float, *, longest: int = MAX_WAIT_SECONDS
) -> int:
    """``WaitTimeSeconds`` for the next receive.

    Without an open batch to close: the longest long poll (20 s). With one: whole seconds
    left until its window closes, so the poll returns in time; under a second left, a
    short poll (0).
    """
    if deadline is None:
        return longest
    left = deadline - now
    if left < 1.0:
        return 0
    return min(longest, int(left))


def heartbeat_timing(visibility_timeout: float) -> tuple[float, float]:
    """``(tick, margin)`` of the visibility keeper for a visibility timeout (seconds).

    The keeper wakes every ``tick`` and extends any hold with ``margin`` or less left, so
    that at least one more tick (and the call itself) fits before the message would
    reappear: ``margin = VT/2 >= 2 x tick``.
    """
    vt = max(float(visibility_timeout), 0.2)
    tick = min(max(vt / 4.0, 0.05), 5.0)
    margin = max(vt / 2.0, 2.0 * tick)
    return tick, margin


@dataclass
class PollerScaler:
    """How many receive loops a mapping runs (see the module docstring, *Scaling*).

    Pure: the loops call :meth:`on_full` / :meth:`on_empty` with the current time and
    act on the answer.
    """

    maximum: int
    initial: int = INITIAL_POLLERS
    minimum: int = 1
    grow_interval: float = 0.2
    shrink_interval: float = 1.0
    target: int = field(init=False)
    _last_grow: float = field(default=float("-inf"), init=False)
    _last_shrink: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        self.maximum = max(self.minimum, self.maximum)
        self.target = max(self.minimum, min(self.initial, self.maximum))

    def on_full(self, now: float) -> bool:
        """A receive came back full: messages are waiting. True: start one more loop."""
        if self.target >= self.maximum or now - self._last_grow < self.grow_interval:
            return False
        self.target += 1
        self._last_grow = now
        return True

    def on_empty(self, now: float) -> bool:
        """A long poll came back empty. True: the calling loop should stop."""
        if self.target <= self.minimum or now - self._last_shrink < self.shrink_interval:
            return False
        self.target -= 1
        self._last_shrink = now
        return True

    def set_maximum(self, maximum: int) -> None:
        """A new limit (the runtime's slots changed); loops above it stop on their own."""
        self.maximum = max(self.minimum, maximum)
        self.target = min(self.target, self.maximum)


def chunked(items: Sequence[Any], size: int = BATCH_ENTRIES) -> Iterable[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- in-flight bookkeeping -------------------------------------------------------------


class Hold:
    """Messages received together whose visibility pumphouse keeps extending.

    ``handles`` shrinks as messages are finished (deleted, or left to reappear); the
    keeper drops a hold once it is empty.
    """

    __slots__ = ("handles", "visible_at")

    def __init__(self, handles: Iterable[str], visible_at: float) -> None:
        self.handles: set[str] = set(handles)
        self.visible_at = visible_at


class Item:
    """One message of a batch: what the poller needs after the invocation."""

    __slots__ = ("fragment", "group_id", "hold", "message_id", "receipt_handle", "sent_ms")

    def __init__(
        self,
        *,
        message_id: str,
        receipt_handle: str,
        group_id: str | None,
        sent_ms: int,
        fragment: bytes,
        hold: Hold,
    ) -> None:
        self.message_id = message_id
        self.receipt_handle = receipt_handle
        self.group_id = group_id
        self.sent_ms = sent_ms
        self.fragment = fragment
        self.hold = hold

    def finish(self) -> None:
        """The message is deleted or given up: stop extending its visibility."""
        self.hold.handles.discard(self.receipt_handle)


class OpenBatch:
    """A batch being collected, by one loop or (window > 0) shared by all of them."""

    __slots__ = ("batcher", "owner")

    def __init__(self, batcher: Batcher[Item]) -> None:
        self.batcher = batcher
        self.owner: int | None = None


# --- the visibility keeper --------------------------------------------------------------


class VisibilityKeeper:
    """Extends the visibility of every message received and not yet finished."""

    def __init__(
        self,
        *,
        change_visibility: Callable[[list[str], int], Awaitable[list[str]]],
        visibility_timeout: Callable[[], int],
        on_extended: Callable[[int], None],
    ) -> None:
        self._change = change_visibility
        self._visibility_timeout = visibility_timeout
        self._on_extended = on_extended
        self.holds: set[Hold] = set()

    def track(self, hold: Hold) -> None:
        self.holds.add(hold)

    def due(self, now: float) -> list[Hold]:
        """Holds to extend now; empty holds are dropped."""
        _, margin = heartbeat_timing(self._visibility_timeout())
        due: list[Hold] = []
        for hold in list(self.holds):
            if not hold.handles:
                self.holds.discard(hold)
            elif hold.visible_at - now <= margin:
                due.append(hold)
        return due

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            tick, _ = heartbeat_timing(self._visibility_timeout())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
            await self.extend_due()

    async def extend_due(self) -> None:
        for hold in self.due(time.monotonic()):
            timeout = self._visibility_timeout()
            started = time.monotonic()
            handles = list(hold.handles)
            kept: list[str] = await self._change(handles, timeout)
            # Handles that could not be extended are no longer ours: stop trying.
            for handle in set(handles) - set(kept):
                hold.handles.discard(handle)
            if kept:
                hold.visible_at = started + timeout
                self._on_extended(len(kept))


# --- what the dispatcher needs to know about SQS messages ------------------------------


class SqsBinding:
    """The :class:`~pumphouse.pollers.dispatch.SourceBinding` of SQS messages. SQS has no
    on-failure destination (the queue's RedrivePolicy moves failing messages)."""

    def record_id(self, record: Item) -> Hashable:
        return record.message_id

    def item_id(self, identifier: Any) -> Hashable | None:
        return sqs_item_id(identifier)

    def arrival(self, record: Item) -> float:
        return record.sent_ms / 1000.0 if record.sent_ms else time.time()

    def fragment(self, record: Item) -> bytes:
        return record.fragment

    def event(self, records: Sequence[Item]) -> bytes:
        return assemble_event(item.fragment for item in records)

    def failure_messages(
        self, gave_up: GiveUp[Item], *, destination_type: str, now: float
    ) -> Sequence[FailureMessage]:
        raise SourceError("SQS mappings have no on-failure destination", retryable=False)

    def s3_location(self, records: Sequence[Item]) -> str:
        raise SourceError("SQS mappings have no on-failure destination", retryable=False)


def batch_response(attempt: AttemptResult) -> BatchResponse:
    """What an attempt means for the messages of an SQS batch: a failure or an attempt
    that did not run keeps every message; a partial response keeps the reported ones."""
    if attempt.outcome is AttemptOutcome.SUCCESS:
        return WHOLE_SUCCESS
    if attempt.outcome is AttemptOutcome.PARTIAL:
        return PartialFailure(attempt.failed_ids)
    return WholeFailure(attempt.reason or "the batch failed")


# --- the poller -------------------------------------------------------------------------


def _backoff(attempt: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    ceiling: float = min(cap, base * 2.0 ** min(attempt, 10))
    return random.uniform(0.5, 1.0) * ceiling


class SqsPoller:
    """One SQS mapping's receive loops, visibility keeper and queue sampler.

    ``initial_pollers`` / ``max_pollers`` override the scaling bounds (benchmarks,
    tests); ``sample_interval`` is how often the queue depth and visibility timeout are
    read; ``max_wait_seconds`` is the longest long poll (1 … 20).
    """

    def __init__(
        self,
        ctx: MappingContext,
        *,
        initial_pollers: int = INITIAL_POLLERS,
        max_pollers: int | None = None,
        sample_interval: float = 5.0,
        max_wait_seconds: int = MAX_WAIT_SECONDS,
    ) -> None:
        self.ctx = ctx
        mapping = ctx.mapping
        self.mapping = mapping
        self._initial_pollers = initial_pollers
        self._max_pollers = max_pollers
        self._sample_interval = sample_interval
        self._max_wait = max(1, min(MAX_WAIT_SECONDS, max_wait_seconds))
        self._log = log.bind(mapping=mapping.label, function=ctx.function.name)
        self._batch_size = mapping.batch_size
        self._window = float(mapping.batching_window)
        self._filters = mapping.compiled_filters()
        self._body_filter = any('"body"' in pattern for pattern in mapping.filter_patterns)
        self._queue_arn = mapping.EventSourceArn or ""
        self._region = mapping.region
        self.queue: QueueInfo | None = None
        self.visibility_timeout = 30
        self.scaler = PollerScaler(maximum=1)
        self.keeper = VisibilityKeeper(
            change_visibility=self._change_visibility,
            visibility_timeout=lambda: self.visibility_timeout,
            on_extended=ctx.metrics.visibility_extensions.inc,
        )
        self._client: Any = None
        self._caller: Any = None
        self._dispatcher: Dispatcher[Item] | None = None
        self._halt = asyncio.Event()
        self._halt_waiter: asyncio.Future[Any] | None = None
        self._loops: dict[int, asyncio.Task[None]] = {}
        self._next_loop = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._shared: OpenBatch | None = None
        self._groups: dict[str, int] = {}
        self._fatal: BaseException | None = None
        self._fifo = False
        self._limits = BatchLimits(max_records=self._batch_size, window_seconds=self._window)

    # -- start -----------------------------------------------------------------------

    async def _open_queue(self) -> QueueInfo:
        mapping = self.mapping
        name = mapping.resource_name
        account = mapping.account_id
        where = f"{self._queue_arn}"
        try:
            self._client = await self.ctx.aws.client("sqs")
            found = await self._client.get_queue_url(
                QueueName=name, QueueOwnerAWSAccountId=account
            )
            url = found["QueueUrl"]
            reply = await self._client.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["QueueArn", "FifoQueue", "VisibilityTimeout", "RedrivePolicy"],
            )
        except Exception as err:
            self.ctx.metrics.source_error("get_queue_url")
            raise self._source_error(err, "open queue", where) from err
        return QueueInfo.from_attributes(
            url=url, arn=self._queue_arn, name=name, attributes=reply.get("Attributes", {})
        )

    def _source_error(self, err: BaseException, operation: str, where: str) -> SourceError:
        code = error_code(err)
        if code in _QUEUE_MISSING:
            return SourceNotFound(
                f"SQS queue {where} does not exist (account {self.mapping.account_id}, "
                f"region {self._region}): create it or fix EventSourceArn"
            )
        if code in _THROTTLED:
            return SourceThrottled(f"SQS {operation} on {where} throttled: {err}")
        if isinstance(err, SourceError):
            return err
        detail = f"{code}: {err}" if code else f"{type(err).__name__}: {err}"
        return SourceError(f"SQS {operation} on {where} failed: {detail}")

    def _maximum_concurrency(self) -> int | None:
        scaling = self.mapping.ScalingConfig
        return scaling.MaximumConcurrency if scaling is not None else None

    def _loop_cap(self) -> int:
        """Most receive loops: MaximumConcurrency, within the function's slots."""
        cap = self._max_pollers or self._maximum_concurrency() or DEFAULT_MAX_POLLERS
        reserved = self.ctx.function.reserved_concurrency
        if reserved is not None:
            cap = min(cap, reserved)
        cap = min(cap, self.ctx.config.Settings.max_concurrency)
        return max(1, cap)

    # -- run -------------------------------------------------------------------------

    async def run(self) -> None:
        ctx = self.ctx
        queue = await self._open_queue()
        self.queue = queue
        self.visibility_timeout = queue.visibility_timeout
        warning = check_visibility_timeout(
            function_timeout=ctx.function.timeout,
            visibility_timeout=queue.visibility_timeout,
            window=self._window,
            queue=queue.arn,
        )
        if warning:
            self._log.warning("visibility timeout below advice", detail=warning)
        fifo = queue.fifo
        self._fifo = fifo
        self._caller = ctx.runtime.caller(
            self.mapping.label, function=ctx.function.name, limit=self._maximum_concurrency()
        )
        self._dispatcher = Dispatcher(
            binding=SqsBinding(),
            runtime=ctx.runtime,
            function=ctx.function.name,
            caller=self._caller,
            metrics=ctx.metrics,
            status=ctx.status,
            policy=retry_policy(self.mapping),
            secrets=tuple(ctx.function.environment.values()),
            logger=self._log,
        )
        self.scaler = PollerScaler(maximum=self._loop_cap(), initial=self._initial_pollers)
        if self._window > 0 and not fifo:
            self._shared = OpenBatch(Batcher(self._limits))
        ctx.status.ready()
        self._log.info(
            "sqs mapping started",
            queue=queue.url,
            fifo=fifo,
            visibility_timeout=queue.visibility_timeout,
            dead_letter_queue=(queue.redrive_policy or {}).get("deadLetterTargetArn"),
            max_receive_count=(queue.redrive_policy or {}).get("maxReceiveCount"),
            batch_size=self._batch_size,
            window=self._window,
            pollers=self.scaler.target,
            max_pollers=self.scaler.maximum,
        )
        stop_watch = asyncio.create_task(self._watch_stopping())
        self._halt_waiter = asyncio.ensure_future(self._halt.wait())
        drained = asyncio.Event()  # the keeper extends in-flight messages while draining
        keeper = asyncio.create_task(self.keeper.run(drained))
        sampler = asyncio.create_task(self._sample_queue())
        try:
            for _ in range(self.scaler.target):
                self._spawn_loop()
            await self._halt.wait()
        finally:
            self._halt.set()
            await self._drain()
            drained.set()
            for task in (stop_watch, sampler, keeper, self._halt_waiter):
                task.cancel()
            for task in (stop_watch, sampler, keeper, self._halt_waiter):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            ctx.metrics.pollers_active.set(0)
        if self._fatal is not None:
            raise self._fatal

    async def _watch_stopping(self) -> None:
        await self.ctx.stopping.wait()
        self._halt.set()

    async def _drain(self) -> None:
        """Let the loops finish their in-flight batches (and the deletes they start),
        within the shutdown timeout."""
        deadline = time.monotonic() + self.ctx.shutdown_timeout
        pending: set[asyncio.Task[Any]] = set()
        while True:
            tasks = {t for t in (*self._loops.values(), *self._background) if not t.done()}
            left = deadline - time.monotonic()
            if not tasks or left <= 0:
                pending = tasks
                break
            await asyncio.wait(tasks, timeout=left)
        if pending:
            self._log.warning(
                "in-flight batches abandoned at shutdown; their messages reappear after "
                "the visibility timeout",
                tasks=len(pending),
            )
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _spawn_loop(self) -> None:
        loop_id = self._next_loop
        self._next_loop += 1
        task = asyncio.create_task(self._poll_loop(loop_id), name=f"sqs-poller-{loop_id}")
        self._loops[loop_id] = task
        self.ctx.metrics.pollers_active.set(len(self._loops))

    def _fail(self, err: BaseException) -> None:
        if self._fatal is None:
            self._fatal = err
        self._halt.set()

    # -- one receive loop ------------------------------------------------------------

    async def _poll_loop(self, loop_id: int) -> None:
        slot = self._shared or OpenBatch(Batcher(self._limits))
        pending_ack: asyncio.Task[None] | None = None
        failures = 0
        try:
            while not self._halt.is_set():
                if len(self._loops) > self.scaler.target:
                    break  # scaled down (or the limit shrank)
                batcher = slot.batcher
                owns = slot.owner == loop_id or self._shared is None
                deadline = batcher.deadline if owns else None
                wait = receive_wait_seconds(deadline, time.monotonic(), longest=self._max_wait)
                want = max(1, min(MAX_RECEIVE, self._batch_size - len(batcher)))
                try:
                    messages, hold = await self._receive(want, wait)
                except SourceNotFound as err:
                    self._fail(err)
                    break
                except SourceError as err:
                    failures += 1
                    self.ctx.status.problem(str(err))
                    self._log.warning("receive failed", error=str(err), attempt=failures)
                    await self._sleep(_backoff(failures))
                    continue
                if failures:
                    failures = 0
                    self._log.info("receive recovered")
                now = time.monotonic()
                if messages:
                    if (
                        len(messages) >= want
                        and not self._halt.is_set()
                        and self.scaler.on_full(now)
                    ):
                        self._spawn_loop()
                    pending_ack = await self._take_in(messages, hold, slot, loop_id, pending_ack)
                elif wait >= 1 and len(batcher) == 0 and self.scaler.on_empty(now):
                    break
                if slot.batcher.due(time.monotonic()):
                    batch = slot.batcher.take()
                    slot.owner = None
                    pending_ack = await self._dispatch(batch, loop_id, pending_ack)
        finally:
            try:
                if len(slot.batcher) and (self._shared is None or slot.owner == loop_id):
                    batch = slot.batcher.take()
                    slot.owner = None
                    pending_ack = await self._dispatch(batch, loop_id, pending_ack)
                if pending_ack is not None:
                    await pending_ack
            finally:
                self._loops.pop(loop_id, None)
                self.ctx.metrics.pollers_active.set(len(self._loops))
                if self._shared is not None and self._shared.owner == loop_id:
                    self._shared.owner = None

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._halt.wait(), timeout=delay)

    async def _receive(self, want: int, wait: int) -> tuple[list[dict[str, Any]], Hold | None]:
        assert self.queue is not None
        visibility = self.visibility_timeout
        started = time.monotonic()
        call = self._client.receive_message(
            QueueUrl=self.queue.url,
            MaxNumberOfMessages=want,
            WaitTimeSeconds=wait,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        try:
            if wait == 0:
                reply = await call
            else:
                receive = asyncio.ensure_future(call)
                assert self._halt_waiter is not None
                await asyncio.wait(
                    (receive, self._halt_waiter), return_when=asyncio.FIRST_COMPLETED
                )
                if not receive.done():
                    # Shutting down: abandon the long poll. A message the server picked
                    # in this instant reappears after the visibility timeout.
                    receive.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await receive
                    return [], None
                reply = receive.result()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            error = self._source_error(err, "receive", self._queue_arn)
            self.ctx.metrics.source_error(
                "receive", kind="throttled" if isinstance(error, SourceThrottled) else "error"
            )
            raise error from err
        messages: list[dict[str, Any]] = reply.get("Messages") or []
        if not messages:
            return messages, None
        self.ctx.metrics.polled.inc(len(messages))
        hold = Hold((m["ReceiptHandle"] for m in messages), started + visibility)
        self.keeper.track(hold)
        return messages, hold

    async def _take_in(
        self,
        messages: list[dict[str, Any]],
        hold: Hold | None,
        slot: OpenBatch,
        loop_id: int,
        pending_ack: asyncio.Task[None] | None,
    ) -> asyncio.Task[None] | None:
        """Shape, filter, serialize and batch one receive's messages."""
        assert hold is not None
        filters = self._filters
        filtered: list[dict[str, Any]] = []
        not_json: list[str] = []
        items: list[Item] = []
        queue_arn = self._queue_arn
        region = self._region
        fifo = self._fifo
        # FIFO groups that must not go on in this receive (a message of theirs failed or
        # cannot be delivered), and the later messages of those groups, released at once
        # to wait behind it on the queue.
        blocked: set[str] = set()
        released: list[str] = []
        for message in messages:
            attributes = message.get("Attributes") or {}
            group = attributes.get("MessageGroupId") if fifo else None
            if group is not None and group in blocked:
                hold.handles.discard(message["ReceiptHandle"])
                released.append(message["ReceiptHandle"])
                continue
            if group is not None and self._groups.get(group, loop_id) != loop_id:
                # Another loop's batch holds this group (SQS should not have handed it
                # out): leave the message, it reappears after the visibility timeout.
                hold.handles.discard(message["ReceiptHandle"])
                self._log.warning(
                    "message of a group held by another batch left on the queue",
                    message_id=message.get("MessageId"),
                    group=group,
                )
                continue
            record = sqs_record(message, queue_arn=queue_arn, region=region)
            if not filters.is_empty and not filters.matches(record):
                filtered.append(message)
                if self._body_filter and not _is_json(message.get("Body", "")):
                    not_json.append(message["MessageId"])
                continue
            try:
                fragment = orjson.dumps(record)
            except orjson.JSONEncodeError as err:
                self.ctx.metrics.dropped.inc()
                hold.handles.discard(message["ReceiptHandle"])
                if group is not None:
                    blocked.add(group)
                self._log.error(
                    "message cannot be serialized into an event; left on the queue for its "
                    "redrive policy",
                    message_id=message.get("MessageId"),
                    error=str(err),
                )
                continue
            if group is not None:
                self._groups[group] = loop_id
            items.append(
                Item(
                    message_id=message["MessageId"],
                    receipt_handle=message["ReceiptHandle"],
                    group_id=group,
                    sent_ms=int(attributes.get("SentTimestamp") or 0),
                    fragment=fragment,
                    hold=hold,
                )
            )
        if filtered:
            self._filtered_out(filtered, hold, not_json)
        for item in items:
            if item.group_id is not None and item.group_id in blocked:
                item.finish()  # its group failed earlier in this receive: keep order
                released.append(item.receipt_handle)
                continue
            batcher = slot.batcher
            result = batcher.add(item, len(item.fragment), time.monotonic())
            if result is AddResult.BATCH_FULL:
                batch = batcher.take()
                slot.owner = None
                pending_ack = await self._dispatch(batch, loop_id, pending_ack, blocked)
                if item.group_id is not None and item.group_id in blocked:
                    item.finish()
                    released.append(item.receipt_handle)
                    continue
                result = slot.batcher.add(item, len(item.fragment), time.monotonic())
            if result is AddResult.OVERSIZED:
                self.ctx.metrics.dropped.inc()
                item.finish()
                if item.group_id is not None:
                    blocked.add(item.group_id)
                self._log.error(
                    "message too large for one invocation (6 MB); left on the queue for its "
                    "redrive policy",
                    message_id=item.message_id,
                    size=len(item.fragment),
                )
                continue
            if slot.owner is None:
                slot.owner = loop_id  # whoever adds to an unowned batch watches its window
        if released:
            await self._change_visibility(released, 0)
        return pending_ack

    def _filtered_out(
        self, messages: list[dict[str, Any]], hold: Hold, not_json: list[str]
    ) -> None:
        self.ctx.metrics.filtered_out.inc(len(messages))
        if not_json:
            self._log.warning(
                "messages whose body is not JSON matched no body filter; deleted",
                count=len(not_json),
                message_ids=not_json[:10],
            )
        handles = [m["ReceiptHandle"] for m in messages]
        for handle in handles:
            hold.handles.discard(handle)
        task = asyncio.create_task(self._delete(handles))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- one batch -------------------------------------------------------------------

    async def _dispatch(
        self,
        batch: Batch[Item],
        loop_id: int,
        pending_ack: asyncio.Task[None] | None,
        blocked: set[str] | None = None,
    ) -> asyncio.Task[None] | None:
        """Invoke one batch and start its acknowledgement.

        Standard queues delete in the background (one outstanding delete per loop), so
        the loop receives again while the delete is on the wire. FIFO queues delete before
        the loop goes on, and release the batch's groups only then.
        """
        items = batch.items
        if not items:
            return pending_ack
        try:
            keep = await self._invoke(batch)
        except asyncio.CancelledError:
            for item in items:
                item.finish()
            self._release_groups(items, loop_id)
            raise
        except Exception:
            self._log.exception("batch could not be processed; messages left on the queue")
            keep = set(range(len(items)))
        if pending_ack is not None:
            await pending_ack
        delete = [item for index, item in enumerate(items) if index not in keep]
        for index in keep:
            items[index].finish()
            group = items[index].group_id
            if blocked is not None and group is not None:
                blocked.add(group)
        if self._fifo:
            _, tails = split_kept_by_group([item.group_id for item in items], keep)
            if tails:
                # Only each group's first kept message waits out its visibility timeout;
                # the rest cannot be delivered before it, so release them now. This
                # also makes them reappear in order on servers (moto) that would hand
                # out a group's messages that time out together last-first.
                await self._change_visibility([items[i].receipt_handle for i in tails], 0)
            await self._delete_items(delete)
            self._release_groups(items, loop_id)
            return None
        if not delete:
            return None
        return asyncio.create_task(self._delete_items(delete))

    def _release_groups(self, items: Sequence[Item], loop_id: int) -> None:
        for item in items:
            if item.group_id is not None and self._groups.get(item.group_id) == loop_id:
                del self._groups[item.group_id]

    async def _invoke(self, batch: Batch[Item]) -> set[int]:
        """Run the function on one batch; the indexes of the messages to keep."""
        items = batch.items
        assert self._dispatcher is not None  # built in run()
        attempt = await self._dispatcher.attempt(items)
        response = batch_response(attempt)
        groups = [item.group_id for item in items] if self._fifo else None
        plan = plan_acknowledgement(
            [item.message_id for item in items], response, group_ids=groups
        )
        return set(plan.keep)

    # -- acknowledgement -------------------------------------------------------------

    async def _delete_items(self, items: Sequence[Item]) -> None:
        try:
            await self._delete([item.receipt_handle for item in items])
        finally:
            for item in items:
                item.finish()

    async def _delete(self, handles: Sequence[str]) -> None:
        if not handles:
            return
        if len(handles) <= BATCH_ENTRIES:
            await self._delete_chunk(handles)
            return
        await asyncio.gather(*(self._delete_chunk(chunk) for chunk in chunked(handles)))

    async def _delete_chunk(self, handles: Sequence[str], *, attempts: int = 4) -> None:
        assert self.queue is not None
        pending = {str(index): handle for index, handle in enumerate(handles)}
        metrics = self.ctx.metrics
        for attempt in range(attempts):
            try:
                reply = await self._client.delete_message_batch(
                    QueueUrl=self.queue.url,
                    Entries=[{"Id": key, "ReceiptHandle": rh} for key, rh in pending.items()],
                )
            except asyncio.CancelledError:
                raise
            except Exception as err:
                metrics.source_error("delete")
                self._log.warning("delete failed", error=str(err), attempt=attempt + 1)
                await asyncio.sleep(_backoff(attempt))
                continue
            done = reply.get("Successful") or []
            if done:
                metrics.deleted.inc(len(done))
            for entry in done:
                pending.pop(entry["Id"], None)
            for entry in reply.get("Failed") or []:
                if entry.get("Code") in _HANDLE_GONE:
                    pending.pop(entry["Id"], None)
                    metrics.source_error("delete", kind="receipt_expired")
                    self._log.warning(
                        "receipt handle expired before the delete; the message will be "
                        "delivered again",
                        code=entry.get("Code"),
                        detail=entry.get("Message"),
                    )
                else:
                    metrics.source_error("delete")
            if not pending:
                return
            await asyncio.sleep(_backoff(attempt))
        self._log.error(
            "messages could not be deleted; they will be delivered again",
            count=len(pending),
        )

    async def _change_visibility(self, handles: list[str], seconds: int) -> list[str]:
        """Extend ``handles``; the ones that were extended (a failed call keeps all, so
        the keeper tries again next tick)."""
        assert self.queue is not None
        kept: list[str] = []
        for chunk in chunked(handles):
            entries = {str(i): h for i, h in enumerate(chunk)}
            try:
                reply = await self._client.change_message_visibility_batch(
                    QueueUrl=self.queue.url,
                    Entries=[
                        {"Id": key, "ReceiptHandle": rh, "VisibilityTimeout": seconds}
                        for key, rh in entries.items()
                    ],
                )
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.ctx.metrics.source_error("change_visibility")
                self._log.warning("visibility extension failed", error=str(err))
                kept.extend(chunk)
                continue
            kept.extend(entries[e["Id"]] for e in reply.get("Successful") or [])
            for entry in reply.get("Failed") or []:
                self.ctx.metrics.source_error(
                    "change_visibility",
                    kind="receipt_expired" if entry.get("Code") in _HANDLE_GONE else "error",
                )
                if entry.get("Code") not in _HANDLE_GONE:
                    kept.append(entries[entry["Id"]])
                self._log.warning(
                    "visibility of a message could not be extended",
                    code=entry.get("Code"),
                    detail=entry.get("Message"),
                )
        return kept

    # -- queue sampler ---------------------------------------------------------------

    async def _sample_queue(self) -> None:
        assert self.queue is not None
        metrics = self.ctx.metrics
        gauges = {
            "ApproximateNumberOfMessages": metrics.sqs_backlog("visible"),
            "ApproximateNumberOfMessagesNotVisible": metrics.sqs_backlog("in_flight"),
            "ApproximateNumberOfMessagesDelayed": metrics.sqs_backlog("delayed"),
        }
        while not self._halt.is_set():
            try:
                reply = await self._client.get_queue_attributes(
                    QueueUrl=self.queue.url, AttributeNames=[*gauges, "VisibilityTimeout"]
                )
            except asyncio.CancelledError:
                raise
            except Exception as err:
                metrics.source_error("get_queue_attributes")
                self._log.debug("queue attributes unavailable", error=str(err))
            else:
                attributes = reply.get("Attributes", {})
                for name, gauge in gauges.items():
                    if name in attributes:
                        gauge.set(int(attributes[name]))
                self._visibility_changed(attributes.get("VisibilityTimeout"))
            await self._sleep(self._sample_interval)

    def _visibility_changed(self, value: str | None) -> None:
        if value is None or not value.isdigit():
            return
        new = int(value)
        if new == self.visibility_timeout or new < 1:
            return
        self._log.info(
            "queue visibility timeout changed", previous=self.visibility_timeout, current=new
        )
        if self.ctx.function.timeout > new:
            self._log.warning(
                "the queue's visibility timeout is now shorter than the function timeout; "
                "pumphouse keeps extending in-flight messages",
                visibility_timeout=new,
                function_timeout=self.ctx.function.timeout,
            )
        self.visibility_timeout = new


def _is_json(body: str) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


__all__ = [
    "AckPlan",
    "PollerScaler",
    "QueueInfo",
    "SqsPoller",
    "VisibilityKeeper",
    "check_visibility_timeout",
    "heartbeat_timing",
    "plan_acknowledgement",
    "read_response",
    "receive_wait_seconds",
    "split_kept_by_group",
]
