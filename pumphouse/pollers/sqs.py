"""The SQS event source: standard and FIFO queues, the way Lambda's SQS pollers behave.

This is the only module that talks to SQS for a mapping (the redrive tool lives in
:mod:`pumphouse.tools.redrive`). Semantics: docs/behaviour.md §1-§4.

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

Acknowledgement (:mod:`~pumphouse.pollers.sqs_acks`), the visibility heartbeat
(:mod:`~pumphouse.pollers.sqs_visibility`) and scaling (:mod:`~pumphouse.pollers.
sqs_scaling`) are described where they are implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog

from pumphouse.aws import error_code, queue_missing, queue_url
from pumphouse.errors import SourceError, SourceNotFound, SourceThrottled
from pumphouse.pollers.batching import (
    AddResult,
    Batch,
    Batcher,
    BatchLimits,
    assemble_event,
)
from pumphouse.pollers.dispatch import Dispatcher, FailureMessage, retry_policy
from pumphouse.pollers.policy import GiveUp
from pumphouse.pollers.responses import (
    sqs_item_id,
)
from pumphouse.pollers.shapes import sqs_record
from pumphouse.pollers.sqs_acks import (
    AckPlan,
    batch_response,
    plan_acknowledgement,
    read_response,
    split_kept_by_group,
)
from pumphouse.pollers.sqs_queue import QueueInfo, check_visibility_timeout
from pumphouse.pollers.sqs_scaling import (
    INITIAL_POLLERS,
    MAX_WAIT_SECONDS,
    PollerScaler,
    receive_wait_seconds,
)
from pumphouse.pollers.sqs_visibility import Hold, VisibilityKeeper, heartbeat_timing
from pumphouse.retrying import backoff_delay, sleep_unless

if TYPE_CHECKING:
    from pumphouse.pollers.base import MappingContext

log = structlog.get_logger("pumphouse.sqs")

#: SQS hands out at most 10 messages per ReceiveMessage and takes 10 entries per batch call.
MAX_RECEIVE: Final = 10
ANSWER_MARGIN_SECONDS: Final = 5.0
"""How long past a receive's ``WaitTimeSeconds`` SQS may take to answer before the
receive is abandoned as unanswered (the client's own read timeout is a minute)."""
BATCH_ENTRIES: Final = 10
#: Without MaximumConcurrency, loops are capped by the runtime's slots and by this.
DEFAULT_MAX_POLLERS: Final = 1000
SURPLUS_WAIT_SECONDS: Final = 2
"""The long poll of a surplus loop (see ``_Loop``). The loops' long polls end together
and the scaler lets one loop go per second: the others ask again after this short poll
(longer than that second, or the next one back would be turned down too), so an idle
mapping is down to one loop within seconds instead of one loop per 20 s poll."""
IDLE_SAMPLES_SKIPPED: Final = 5
"""While a queue is idle — its last sample all zeros and nothing received since — the
sampler reads it only every ``IDLE_SAMPLES_SKIPPED + 1``-th tick (every 30 s instead of
5 s): an idle mapping's calls then are its long polls."""

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


def chunked(items: Sequence[Any], size: int = BATCH_ENTRIES) -> Iterable[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


class _Loop:
    """One receive loop: its open batch (its own, or the shared one), the delete still
    running for its last batch, its receive failures in a row, and whether it is surplus
    (its last long poll came back empty but the scaler let another loop go first)."""

    __slots__ = ("failures", "id", "pending_ack", "slot", "surplus")

    def __init__(self, loop_id: int, slot: OpenBatch) -> None:
        self.id = loop_id
        self.slot = slot
        self.pending_ack: asyncio.Task[None] | None = None
        self.failures = 0
        self.surplus = False


class _FifoGate:
    """One receive's FIFO groups that must not go on (a message of theirs failed or cannot
    be delivered), and the receipt handles of their later messages, released at once to
    wait behind it on the queue."""

    __slots__ = ("blocked", "released")

    def __init__(self) -> None:
        self.blocked: set[str] = set()
        self.released: list[str] = []

    def holds_back(self, item: Item) -> bool:
        """True (and the item released) when its group failed earlier in this receive."""
        if item.group_id is None or item.group_id not in self.blocked:
            return False
        item.finish()
        self.released.append(item.receipt_handle)
        return True


class OpenBatch:
    """A batch being collected, by one loop or (window > 0) shared by all of them."""

    __slots__ = ("batcher", "owner")

    def __init__(self, batcher: Batcher[Item]) -> None:
        self.batcher = batcher
        self.owner: int | None = None


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

    def oldest_arrival(self, records: Sequence[Item]) -> float:
        # A standard queue does not keep order: look at every message.
        return min(self.arrival(item) for item in records)

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


# --- the poller -------------------------------------------------------------------------


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
        self._received = 0
        """Messages received so far (the queue sampler: has anything arrived?)."""

    # -- start -----------------------------------------------------------------------

    async def _open_queue(self) -> QueueInfo:
        mapping = self.mapping
        name = mapping.resource_name
        account = mapping.account_id
        where = f"{self._queue_arn}"
        try:
            self._client = await self.ctx.aws.client("sqs")
            url = await queue_url(self._client, name, account)
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
        if queue_missing(err):
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
            wall_clock=ctx.wall_clock,
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
        loop = _Loop(loop_id, self._shared or OpenBatch(Batcher(self._limits)))
        try:
            while not self._halt.is_set() and len(self._loops) <= self.scaler.target:
                if not await self._poll_once(loop):
                    break  # the queue is gone, or the scaler let this loop go
        finally:
            await self._leave(loop)

    async def _poll_once(self, loop: _Loop) -> bool:
        """One receive, its messages batched, the batch invoked when due. False: this
        loop ends."""
        batcher = loop.slot.batcher
        owns = loop.slot.owner == loop.id or self._shared is None
        deadline = batcher.deadline if owns else None
        wait = receive_wait_seconds(deadline, time.monotonic(), longest=self._max_wait)
        if loop.surplus:
            wait = min(wait, SURPLUS_WAIT_SECONDS)
        want = max(1, min(MAX_RECEIVE, self._batch_size - len(batcher)))
        try:
            messages, hold = await self._receive(want, wait)
        except SourceNotFound as err:
            self._fail(err)
            return False
        except SourceError as err:
            loop.failures += 1
            self.ctx.status.problem(str(err))
            self.ctx.status.progress.read_failed(time.time())  # progress.py
            self._log.warning("receive failed", error=str(err), attempt=loop.failures)
            await self._sleep(backoff_delay(loop.failures, base=0.2, cap=5.0))
            return True
        self.ctx.status.progress.read_succeeded()
        if loop.failures:
            loop.failures = 0
            self._log.info("receive recovered")
        now = time.monotonic()
        loop.surplus = False
        if messages:
            self._received += len(messages)
            if len(messages) >= want and not self._halt.is_set() and self.scaler.on_full(now):
                self._spawn_loop()
            loop.pending_ack = await self._take_in(
                messages, hold, loop.slot, loop.id, loop.pending_ack
            )
        elif wait >= 1 and len(batcher) == 0:
            if self.scaler.on_empty(now):
                return False
            loop.surplus = self.scaler.target > self.scaler.minimum
        if loop.slot.batcher.due(time.monotonic()):
            await self._close_batch(loop)
        return True

    async def _close_batch(self, loop: _Loop) -> None:
        batch = loop.slot.batcher.take()
        loop.slot.owner = None
        loop.pending_ack = await self._dispatch(batch, loop.id, loop.pending_ack)

    async def _leave(self, loop: _Loop) -> None:
        """A loop ends: invoke the batch it owns, wait for its deletes."""
        slot = loop.slot
        try:
            if len(slot.batcher) and (self._shared is None or slot.owner == loop.id):
                await self._close_batch(loop)
            if loop.pending_ack is not None:
                await loop.pending_ack
        finally:
            self._loops.pop(loop.id, None)
            self.ctx.metrics.pollers_active.set(len(self._loops))
            if self._shared is not None and self._shared.owner == loop.id:
                self._shared.owner = None

    async def _sleep(self, delay: float) -> None:
        await sleep_unless(self._halt, delay)

    def _no_answer(self, wait: int) -> SourceError:
        """A receive SQS did not answer within its wait and a margin: an endpoint that
        holds connections open without answering (a blackhole) is silent, not slow. The
        source is counted silent from when the answer was due (progress.py), so the
        stall shows a margin after that, not after the client's read timeout."""
        self.ctx.metrics.source_error("receive", kind="no_answer")
        self.ctx.status.progress.read_failed(time.time() - ANSWER_MARGIN_SECONDS)
        limit = wait + ANSWER_MARGIN_SECONDS
        return SourceError(f"SQS did not answer a {wait} s receive within {limit:g} s")

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
        receive = asyncio.ensure_future(call)
        try:
            assert self._halt_waiter is not None
            await asyncio.wait(
                (receive, self._halt_waiter),
                timeout=wait + ANSWER_MARGIN_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not receive.done():
                # Shutting down, or SQS did not answer in time: abandon the receive. A
                # message the server picked in this instant reappears after the
                # visibility timeout.
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receive
                if self._halt.is_set():
                    return [], None
                raise self._no_answer(wait)
            reply = receive.result()
        except asyncio.CancelledError:
            receive.cancel()
            raise
        except SourceError:
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
        fifo = _FifoGate()
        items = self._shape(messages, hold, loop_id, fifo)
        pending_ack = await self._add_to_batch(items, slot, loop_id, pending_ack, fifo)
        if fifo.released:
            await self._change_visibility(fifo.released, 0)
        return pending_ack

    def _shape(
        self, messages: list[dict[str, Any]], hold: Hold, loop_id: int, fifo: _FifoGate
    ) -> list[Item]:
        """The messages as batch items: in their Lambda shape, serialized once; filtered
        ones are deleted, and FIFO messages whose group cannot go on are left."""
        filters = self._filters
        filtered: list[dict[str, Any]] = []
        not_json: list[str] = []
        items: list[Item] = []
        for message in messages:
            attributes = message.get("Attributes") or {}
            group = attributes.get("MessageGroupId") if self._fifo else None
            if group is not None and not self._group_may_go_on(message, group, hold, loop_id, fifo):
                continue
            record = sqs_record(
                message,
                queue_arn=self._queue_arn,
                region=self._region,
                batching_window=self._window,
            )
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
                    fifo.blocked.add(group)
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
        return items

    def _group_may_go_on(
        self, message: dict[str, Any], group: str, hold: Hold, loop_id: int, fifo: _FifoGate
    ) -> bool:
        """Whether a FIFO message may join this loop's batch; if not, it is left."""
        handle = message["ReceiptHandle"]
        if group in fifo.blocked:
            hold.handles.discard(handle)
            fifo.released.append(handle)
            return False
        if self._groups.get(group, loop_id) != loop_id:
            # Another loop's batch holds this group (SQS should not have handed it out):
            # leave the message, it reappears after the visibility timeout.
            hold.handles.discard(handle)
            self._log.warning(
                "message of a group held by another batch left on the queue",
                message_id=message.get("MessageId"),
                group=group,
            )
            return False
        return True

    async def _add_to_batch(
        self,
        items: list[Item],
        slot: OpenBatch,
        loop_id: int,
        pending_ack: asyncio.Task[None] | None,
        fifo: _FifoGate,
    ) -> asyncio.Task[None] | None:
        """Add items to the open batch, invoking it whenever it is full."""
        for item in items:
            if fifo.holds_back(item):
                continue
            result = slot.batcher.add(item, len(item.fragment), time.monotonic())
            if result is AddResult.BATCH_FULL:
                batch = slot.batcher.take()
                slot.owner = None
                pending_ack = await self._dispatch(batch, loop_id, pending_ack, fifo.blocked)
                if fifo.holds_back(item):
                    continue
                result = slot.batcher.add(item, len(item.fragment), time.monotonic())
            if result is AddResult.OVERSIZED:
                self.ctx.metrics.dropped.inc()
                item.finish()
                if item.group_id is not None:
                    fifo.blocked.add(item.group_id)
                self._log.error(
                    "message too large for one invocation (6 MB); left on the queue for its "
                    "redrive policy",
                    message_id=item.message_id,
                    size=len(item.fragment),
                )
                continue
            if slot.owner is None:
                slot.owner = loop_id  # whoever adds to an unowned batch watches its window
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
                await asyncio.sleep(backoff_delay(attempt + 1, base=0.1, cap=5.0))
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
            await asyncio.sleep(backoff_delay(attempt + 1, base=0.1, cap=5.0))
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
        skipped = 0
        idle_since: int | None = None  # messages received when a sample was all zeros
        while not self._halt.is_set():
            if idle_since == self._received and skipped < IDLE_SAMPLES_SKIPPED:
                skipped += 1  # idle: nothing to see but zeros (IDLE_SAMPLES_SKIPPED)
                await self._sleep(self._sample_interval)
                continue
            skipped, idle_since, received = 0, None, self._received
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
                visible = int(attributes.get("ApproximateNumberOfMessages", 0))  # progress.py
                self.ctx.status.progress.work("queue", visible > 0, time.time())
                self._visibility_changed(attributes.get("VisibilityTimeout"))
                if all(int(attributes.get(name, 0)) == 0 for name in gauges):
                    idle_since = received
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
