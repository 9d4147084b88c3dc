"""The error policy of ordered sources: Kinesis, DynamoDB Streams and Kafka.

Pure logic: the poller supplies every effect as a callable (invoke the function, deliver
a failure record, mark records finished, read the clock, sleep), so this module does no
I/O and reads no clock. Tests drive it with plain async functions.

:func:`process_ordered_batch` takes one batch of one shard / lane / partition, in read
order, and applies docs/behaviour.md §3 until every record is *finished* — succeeded, or given up
on (and its failure record delivered) — or until the poller is stopping.

Rules
-----
* **Record age.** Before every attempt, the records at the head of what is left whose
  arrival is older than ``MaximumRecordAgeInSeconds`` (``arrival < now - age``) are split
  off and given up with condition ``RecordAgeExceeded`` (no response context). Their
  ``approximate_invoke_count`` is the number of the attempt that was about to be made,
  1 + retries spent: 1 for records that were never delivered, as AWS records it.
* **Outcomes** of an attempt (:class:`AttemptResult`): success; partial failure (ids from
  :mod:`pumphouse.pollers.responses`, only with ``ReportBatchItemFailures``); failure
  (the function raised / timed out / crashed, or returned a response that fails the
  whole batch); not run (throttled, no worker, the function never started).
* **Not run** never consumes a retry attempt: back off (``sleep``) and try again, until
  the records are old enough to be given up or the poller is stopping.
* **Retries.** ``MaximumRetryAttempts`` N allows N retries (N + 1 attempts) of a record
  range; -1 retries until success. A retry waits ``policy.backoff(n)`` first (exponential
  from ``backoff_base``, capped at ``backoff_cap``). When the budget is spent the range
  is given up with ``RetryAttemptsExhausted`` and ``approximate_invoke_count`` = 1 +
  retries (N = 1 → 2), with the response context of the last attempt.
* **Partial response.** Everything before the lowest failed record is finished at once;
  what is left starts at the lowest failed record (records after it that succeeded are
  delivered again). When that finished something (the checkpoint advanced), the
  remainder is a new batch that starts at the checkpoint: invoking it spends no retry and
  its retry budget and invoke count start afresh (AWS: six records, ``BatchSize`` 3,
  ``MaximumRetryAttempts`` 3, record 5 always reported — record 5 is delivered five
  times, once in the mixed batch and four times alone, and the failure record says
  ``approximateInvokeCount`` 4). When nothing was finished (the first record failed),
  invoking the same range again is a retry. The response context has
  ``functionError: null`` and covers only the remainder.
* **Bisect** (``BisectBatchOnFunctionError``). On a failure, a range of more than one
  record is split in two halves (the first half is ``len // 2`` records) and each half is
  processed separately: the **first half to completion, then the second**, each with the
  retry budget the range had when it was split (splitting consumes no attempt, and what
  the first half spends is not taken from the second). A single record cannot split: it
  is retried. With a partial response, the range is split at the lowest returned record
  exactly as without bisect (see above).
* **Give up.** ``give_up(GiveUp(...))`` is awaited, and only after it returned are those
  records passed to ``finished``. If ``give_up`` raises (the destination is unreachable
  and the poller's delivery gave up, typically because it is stopping), the exception
  propagates out of :func:`process_ordered_batch`: the given-up records and everything
  after them stay unfinished, so the checkpoint never passes an undelivered failure
  record. Pollers deliver with :func:`pumphouse.pollers.destinations.deliver_with_retry`,
  which keeps retrying until delivered or stopping.
* **Order.** ``finished`` is called with contiguous slices, in order: the first call
  starts at the batch's first record and each call starts where the previous ended.
* **Stopping.** Before every invocation but the first, and before every back-off,
  ``stopping()`` is consulted; when true the function returns at once with a
  :class:`BatchReport` whose ``unfinished`` holds every record not yet finished (so
  shutdown never waits on an infinite retry).
* **Persisted counters.** ``on_attempt(records, n)`` is awaited before each invocation,
  ``n`` being that attempt's number (1 + retries spent on the range). A poller stores it
  beside the checkpoint and, after a restart or a lease moving, passes it back as
  ``attempts_so_far``: the next invocation is then retry number ``attempts_so_far``
  (an attempt cut short by a crash counts as failed). At least one attempt is always
  made after a restart, even when the stored counter already reaches the budget.

Worked example: bisect
----------------------
A batch of 8 records r0 … r7, r5 is poison (the function raises whenever r5 is in the
batch); ``MaximumRetryAttempts`` 2, ``BisectBatchOnFunctionError`` on::

    #  invoked          result    then
    1  r0 r1 r2 r3 r4 r5 r6 r7
                        error     split: [r0..r3] then [r4..r7], budget 2 each
    2  r0 r1 r2 r3      ok        finished(r0..r3)
    3  r4 r5 r6 r7      error     split: [r4 r5] then [r6 r7]
    4  r4 r5            error     split: [r4] then [r5]
    5  r4               ok        finished(r4)
    6  r5               error     cannot split: retry 1 of 2
    7  r5               error     retry 2 of 2
    8  r5               error     budget spent: give_up(r5, RetryAttemptsExhausted,
                                  approximateInvokeCount=3), then finished(r5)
    9  r6 r7            ok        finished(r6 r7)

Nine invocations; the checkpoint moves r3 → r4 → r5 → r7, never past r5 before its
failure record was delivered.

Worked example: partial response
--------------------------------
Same batch, ``ReportBatchItemFailures`` on, no bisect, ``MaximumRetryAttempts`` 1; the
function reports r5 and r6 as failed, then r5 whenever it is there::

    1  r0 … r7     partial [r5, r6]   finished(r0..r4): the checkpoint advanced, so
                                      r5 r6 r7 is a new batch (no retry spent)
    2  r5 r6 r7    partial [r5]       nothing finished: retry 1 of 1
    3  r5 r6 r7    partial [r5]       budget spent: give_up(r5 r6 r7,
                                      approximateInvokeCount=2, functionError null),
                                      then finished(r5..r7)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pumphouse.pollers.responses import (
    PartialFailure,
    WholeFailure,
    parse_batch_item_failures,
)
from pumphouse.retrying import backoff_delay

R = TypeVar("R")

LATEST = "$LATEST"
UNHANDLED = "Unhandled"


class FailureCondition(StrEnum):
    """``requestContext.condition`` of an on-failure record."""

    RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
    RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
    MAXIMUM_PAYLOAD_SIZE_EXCEEDED = "MaximumPayloadSizeExceeded"


@dataclass(frozen=True)
class ResponseContext:
    """``responseContext`` of an on-failure record: how the last invocation ended."""

    status_code: int = 200
    executed_version: str = LATEST
    function_error: str | None = UNHANDLED
    """``"Unhandled"`` after a function error; None after a partial batch response."""

    def to_json(self) -> dict[str, Any]:
        return {
            "statusCode": self.status_code,
            "executedVersion": self.executed_version,
            "functionError": self.function_error,
        }


@dataclass(frozen=True)
class RetryPolicy:
    """The error-handling settings of an ordered-source mapping."""

    max_retry_attempts: int = -1
    """``MaximumRetryAttempts``: retries after the first attempt; -1 = until success."""
    max_record_age: float | None = None
    """``MaximumRecordAgeInSeconds`` in seconds; None (AWS: -1) = no limit."""
    bisect_on_function_error: bool = False
    """``BisectBatchOnFunctionError``."""
    report_batch_item_failures: bool = False
    """``FunctionResponseTypes`` holds ``ReportBatchItemFailures``."""
    backoff_base: float = 0.5
    """Delay before the first retry (and after the first not-run attempt), seconds."""
    backoff_cap: float = 5.0
    """Longest delay between attempts, seconds."""

    def __post_init__(self) -> None:
        if self.max_retry_attempts < -1:
            raise ValueError(
                f"max_retry_attempts must be -1 or more, not {self.max_retry_attempts}"
            )
        if self.max_record_age is not None and self.max_record_age <= 0:
            raise ValueError(f"max_record_age must be positive or None, not {self.max_record_age}")
        if self.backoff_base < 0 or self.backoff_cap < 0:
            raise ValueError("backoff_base and backoff_cap must not be negative")

    @classmethod
    def from_mapping(
        cls,
        *,
        maximum_retry_attempts: int | None = -1,
        maximum_record_age_in_seconds: float | None = -1,
        bisect_batch_on_function_error: bool | None = False,
        function_response_types: Collection[str] | None = (),
        backoff_base: float = 0.5,
        backoff_cap: float = 5.0,
    ) -> RetryPolicy:
        """Build from a mapping's AWS-named settings (``-1`` / None = AWS default)."""
        age = maximum_record_age_in_seconds
        return cls(
            max_retry_attempts=-1 if maximum_retry_attempts is None else maximum_retry_attempts,
            max_record_age=None if age is None or age < 0 else float(age),
            bisect_on_function_error=bool(bisect_batch_on_function_error),
            report_batch_item_failures="ReportBatchItemFailures" in (function_response_types or ()),
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )

    @property
    def infinite_retries(self) -> bool:
        return self.max_retry_attempts < 0

    def can_retry(self, retries_used: int) -> bool:
        """Whether one more retry is allowed after ``retries_used`` retries."""
        return self.infinite_retries or retries_used < self.max_retry_attempts

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1, 2, ...): base * 2^(attempt-1), capped."""
        return backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_cap, jitter=0.0)


# --- attempts ------------------------------------------------------------------------


class AttemptOutcome(StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"
    NOT_RUN = "not_run"


@dataclass(frozen=True)
class AttemptResult:
    """How one invocation of a batch ended, as the policy needs it.

    Build with :meth:`success`, :meth:`partial`, :meth:`failed`, :meth:`not_run`, or
    from a runtime result with :func:`classify_invocation`.
    """

    outcome: AttemptOutcome
    failed_ids: tuple[Hashable, ...] = ()
    request_id: str | None = None
    response_context: ResponseContext | None = None
    reason: str | None = None

    @classmethod
    def success(cls, *, request_id: str | None = None) -> AttemptResult:
        return cls(AttemptOutcome.SUCCESS, request_id=request_id)

    @classmethod
    def partial(
        cls,
        failed_ids: Sequence[Hashable],
        *,
        request_id: str | None = None,
        executed_version: str = LATEST,
    ) -> AttemptResult:
        """Some records failed. With no failed id at all this is a success."""
        if not failed_ids:
            return cls.success(request_id=request_id)
        return cls(
            AttemptOutcome.PARTIAL,
            failed_ids=tuple(failed_ids),
            request_id=request_id,
            response_context=ResponseContext(
                executed_version=executed_version, function_error=None
            ),
        )

    @classmethod
    def failed(
        cls,
        *,
        request_id: str | None = None,
        function_error: str | None = UNHANDLED,
        status_code: int = 200,
        executed_version: str = LATEST,
        reason: str | None = None,
    ) -> AttemptResult:
        return cls(
            AttemptOutcome.FAILED,
            request_id=request_id,
            response_context=ResponseContext(status_code, executed_version, function_error),
            reason=reason,
        )

    @classmethod
    def not_run(cls, reason: str) -> AttemptResult:
        return cls(AttemptOutcome.NOT_RUN, reason=reason)


class InvocationLike(Protocol):
    """What :func:`classify_invocation` reads of a runtime ``InvocationResult``."""

    @property
    def ok(self) -> bool: ...

    @property
    def payload(self) -> Any: ...

    @property
    def function_error(self) -> str | None: ...

    @property
    def function_ran(self) -> bool: ...

    @property
    def request_id(self) -> str | None: ...


def classify_invocation(
    result: InvocationLike,
    *,
    policy: RetryPolicy,
    batch_ids: Collection[Hashable],
    id_of: Callable[[Any], Hashable | None],
    executed_version: str = LATEST,
) -> AttemptResult:
    """Turn a runtime result into an :class:`AttemptResult`.

    The function never ran → not run. It ran and failed → failed (``functionError`` from
    the result, ``"Unhandled"`` if it has none). It succeeded → success, unless the
    mapping reports batch item failures and the response (parsed by
    :func:`~pumphouse.pollers.responses.parse_batch_item_failures` against ``batch_ids``)
    says partial (→ partial) or fails the whole batch (→ failed with ``functionError``
    null: the function returned normally but its response rejects the batch; bisect
    treats it as a function error).
    """
    request_id = result.request_id
    if not result.function_ran:
        return AttemptResult.not_run("the function did not run")
    if not result.ok:
        return AttemptResult.failed(
            request_id=request_id,
            function_error=result.function_error or UNHANDLED,
            executed_version=executed_version,
        )
    if not policy.report_batch_item_failures:
        return AttemptResult.success(request_id=request_id)
    response = parse_batch_item_failures(result.payload, batch_ids=batch_ids, id_of=id_of)
    if isinstance(response, PartialFailure):
        return AttemptResult.partial(
            response.failed_ids, request_id=request_id, executed_version=executed_version
        )
    if isinstance(response, WholeFailure):
        return AttemptResult.failed(
            request_id=request_id,
            function_error=None,
            executed_version=executed_version,
            reason=response.reason,
        )
    return AttemptResult.success(request_id=request_id)


# --- outcomes of a batch -------------------------------------------------------------


@dataclass(frozen=True)
class GiveUp(Generic[R]):
    """Records the policy gave up on: the on-failure record describes them."""

    records: Sequence[R]
    condition: FailureCondition
    approximate_invoke_count: int
    response_context: ResponseContext | None
    """None for ``RecordAgeExceeded`` (streams omit ``responseContext``)."""
    request_id: str | None
    """The request id of the last invocation that involved them, if any."""


@dataclass(frozen=True)
class BatchReport(Generic[R]):
    """What :func:`process_ordered_batch` did."""

    finished_count: int
    """How many records (a prefix of the batch) are finished."""
    unfinished: Sequence[R]
    """Records not finished: empty unless ``stopped``."""
    given_up: tuple[GiveUp[R], ...]
    invocations: int
    """Invocations made, not-run ones included."""
    stopped: bool
    """True when it returned because ``stopping()`` was true."""
    retries_used: int = 0
    """Retries already spent on the head of ``unfinished`` (0 when complete)."""

    @property
    def complete(self) -> bool:
        return not self.unfinished


@dataclass
class _Range:
    """A contiguous slice of the batch that is processed as one unit."""

    start: int
    end: int
    retries_used: int

    def __len__(self) -> int:
        return self.end - self.start


@dataclass
class _OrderedRun(Generic[R]):
    records: Sequence[R]
    policy: RetryPolicy
    invoke: Callable[[Sequence[R]], Awaitable[AttemptResult]]
    give_up: Callable[[GiveUp[R]], Awaitable[None]]
    finished: Callable[[Sequence[R]], Awaitable[None]]
    record_arrival: Callable[[R], float]
    record_id: Callable[[R], Hashable]
    now: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    on_attempt: Callable[[Sequence[R], int], Awaitable[None]] | None
    stopping: Callable[[], bool] | None
    head: int = 0
    invocations: int = 0
    last_request_id: str | None = None
    given_up: list[GiveUp[R]] = field(default_factory=list)

    def is_stopping(self) -> bool:
        return self.stopping is not None and self.stopping()

    # The policy's one loop, kept whole on purpose: it reads against the module
    # docstring's rules and worked examples, step by step.
    async def run(self, attempts_so_far: int) -> BatchReport[R]:  # noqa: PLR0912, PLR0915
        if not self.records:
            return self._report(stopped=False, retries_used=0)
        retries = max(0, attempts_so_far)
        if not self.policy.infinite_retries:
            # After a restart at least one more attempt is made (see the module doc).
            retries = min(retries, self.policy.max_retry_attempts)
        stack = [_Range(0, len(self.records), retries)]
        first = True
        not_run_streak = 0
        while stack:
            rng = stack.pop()
            while rng.start < rng.end:
                await self._expire(rng)
                if rng.start >= rng.end:
                    break
                if not first and self.is_stopping():
                    return self._report(stopped=True, retries_used=rng.retries_used)
                first = False
                batch = self.records[rng.start : rng.end]
                if self.on_attempt is not None:
                    await self.on_attempt(batch, rng.retries_used + 1)
                result = await self.invoke(batch)
                self.invocations += 1
                if result.request_id is not None:
                    self.last_request_id = result.request_id

                if result.outcome is AttemptOutcome.NOT_RUN:
                    not_run_streak += 1
                    await self._back_off(self.policy.backoff(not_run_streak))
                    continue
                not_run_streak = 0

                if result.outcome is AttemptOutcome.SUCCESS:
                    await self._finish(rng.start, rng.end)
                    rng.start = rng.end
                    break

                if result.outcome is AttemptOutcome.PARTIAL:
                    lowest = self._lowest_failed(rng, result.failed_ids)
                    if lowest is not None:
                        if lowest > rng.start:
                            # The checkpoint advanced: what is left is a new batch that
                            # starts there, with a fresh budget (no retry spent).
                            await self._finish(rng.start, lowest)
                            rng.start = lowest
                            rng.retries_used = 0
                            continue
                        context = result.response_context or ResponseContext(function_error=None)
                        if not await self._retry_or_give_up(rng, context, result.request_id):
                            break
                        continue
                    # The ids name no record of this range: the whole range failed.

                # FAILED (or a partial response naming nothing of this range).
                if self.policy.bisect_on_function_error and len(rng) > 1:
                    middle = rng.start + len(rng) // 2
                    stack.append(_Range(middle, rng.end, rng.retries_used))
                    stack.append(_Range(rng.start, middle, rng.retries_used))
                    break
                context = result.response_context or ResponseContext()
                if not await self._retry_or_give_up(rng, context, result.request_id):
                    break
        return self._report(stopped=False, retries_used=0)

    async def _retry_or_give_up(
        self, rng: _Range, context: ResponseContext, request_id: str | None
    ) -> bool:
        """Spend a retry on ``rng`` (True), or give it up when the budget is spent."""
        if self.policy.can_retry(rng.retries_used):
            rng.retries_used += 1
            await self._back_off(self.policy.backoff(rng.retries_used))
            return True
        await self._give_up(
            rng.start,
            rng.end,
            GiveUp(
                records=self.records[rng.start : rng.end],
                condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
                approximate_invoke_count=1 + rng.retries_used,
                response_context=context,
                request_id=request_id or self.last_request_id,
            ),
        )
        rng.start = rng.end
        return False

    async def _expire(self, rng: _Range) -> None:
        """Give up the records at the head of ``rng`` that are older than the max age."""
        age = self.policy.max_record_age
        if age is None:
            return
        cutoff = self.now() - age
        end = rng.start
        while end < rng.end and self.record_arrival(self.records[end]) < cutoff:
            end += 1
        if end == rng.start:
            return
        await self._give_up(
            rng.start,
            end,
            GiveUp(
                records=self.records[rng.start : end],
                condition=FailureCondition.RECORD_AGE_EXCEEDED,
                # The attempt about to be made: 1 when never delivered (AWS-recorded).
                approximate_invoke_count=1 + rng.retries_used,
                response_context=None,
                request_id=self.last_request_id,
            ),
        )
        rng.start = end

    async def _give_up(self, start: int, end: int, gave_up: GiveUp[R]) -> None:
        await self.give_up(gave_up)  # raises → nothing from here on is finished
        self.given_up.append(gave_up)
        await self._finish(start, end)

    async def _finish(self, start: int, end: int) -> None:
        if start != self.head:  # pragma: no cover - an internal invariant
            raise AssertionError(f"finishing [{start}, {end}) but the head is at {self.head}")
        await self.finished(self.records[start:end])
        self.head = end

    async def _back_off(self, delay: float) -> None:
        if delay > 0 and not self.is_stopping():
            await self.sleep(delay)

    def _lowest_failed(self, rng: _Range, failed_ids: Collection[Hashable]) -> int | None:
        wanted = set(failed_ids)
        for index in range(rng.start, rng.end):
            if self.record_id(self.records[index]) in wanted:
                return index
        return None

    def _report(self, *, stopped: bool, retries_used: int) -> BatchReport[R]:
        unfinished = self.records[self.head :]
        return BatchReport(
            finished_count=self.head,
            unfinished=unfinished,
            given_up=tuple(self.given_up),
            invocations=self.invocations,
            stopped=stopped,
            retries_used=retries_used if unfinished else 0,
        )


async def process_ordered_batch(
    records: Sequence[R],
    *,
    policy: RetryPolicy,
    invoke: Callable[[Sequence[R]], Awaitable[AttemptResult]],
    give_up: Callable[[GiveUp[R]], Awaitable[None]],
    finished: Callable[[Sequence[R]], Awaitable[None]],
    record_arrival: Callable[[R], float],
    record_id: Callable[[R], Hashable],
    now: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    attempts_so_far: int = 0,
    on_attempt: Callable[[Sequence[R], int], Awaitable[None]] | None = None,
    stopping: Callable[[], bool] | None = None,
) -> BatchReport[R]:
    """Process one ordered batch under ``policy`` (see the module docstring).

    ``records`` are in read order. ``invoke`` runs the function on a contiguous slice
    and says how it went. ``give_up`` delivers the failure record for records given up
    on (and counts them); ``finished`` marks a contiguous slice checkpointable.
    ``record_arrival`` is a record's arrival time (epoch seconds, same clock as
    ``now``), ``record_id`` its identifier as :class:`AttemptResult.failed_ids` names it.
    ``sleep`` waits between attempts; ``stopping`` says the poller is shutting down.
    """
    run = _OrderedRun(
        records=records,
        policy=policy,
        invoke=invoke,
        give_up=give_up,
        finished=finished,
        record_arrival=record_arrival,
        record_id=record_id,
        now=now,
        sleep=sleep,
        on_attempt=on_attempt,
        stopping=stopping,
    )
    return await run.run(attempts_so_far)
