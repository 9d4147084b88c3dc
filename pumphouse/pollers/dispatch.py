"""The dispatcher: the pipeline step every source shares, from a closed batch to an outcome.

One :class:`Dispatcher` per mapping. A source hands it a batch (records in read order)
and gets back how the batch went; the source then acknowledges (SQS deletes, the stream
checkpoint moves, the Kafka offset is committed). The dispatcher is the only code that
invokes a function for a batch and the only code that delivers to an on-failure
destination::

    batch ─▶ event ─▶ slot ─▶ runtime.invoke ─▶ classify ─▶ metrics + status
                                                   │
     ordered sources: retry / bisect / age (policy.process_ordered_batch)
                                                   │
                                 give up ─▶ failure record ─▶ destination (retried)

A source supplies a :class:`SourceBinding`: how a record is identified in a partial batch
response, when it arrived, its serialized fragment, how fragments become its event, how a
given-up range is described in its failure record, and where its S3 failure objects go.
It keeps its transport (the client library calls) and its acknowledgement.

Metrics (AWS's event source mapping metrics; their meaning is written once, as the help
strings of :mod:`pumphouse.telemetry.metrics`) are counted here, per attempt:

===============================  ==========================================================
attempt                          counted
===============================  ==========================================================
the function ran and succeeded   ``invoked`` += records
partial batch response           ``invoked`` += records; ``failed_invoke`` += records the
                                 response reported (a function *success* for Lambda)
the function ran and failed      ``invoked`` += records; ``failed_invoke`` += records;
                                 ``invoke_errors`` += 1
the function did not run         ``failed_invoke`` += records; ``invoke_errors`` += 1
unusable partial response        ``invoked`` += records; ``failed_invoke`` += records
given up, no destination         ``dropped`` += records
given up, delivered              ``on_failure_delivered`` += records (not dropped),
                                 ``destination_deliveries`` += 1 per failure record
given up, delivery failed        ``dropped`` += records (once, at the first failed attempt),
                                 ``destination_delivery_failures`` += 1 per failed attempt;
                                 pumphouse keeps retrying (nothing is lost), so a later
                                 success also counts ``on_failure_delivered``
===============================  ==========================================================

The mapping's ``LastProcessingResult`` follows one rule for every source
(:class:`ProcessingResultRule`): after an attempt whose function succeeded — a partial
batch response included, as Lambda sees it — it is ``OK``; after
:data:`FAILED_BATCHES_FOR_PROBLEM` consecutive attempts that failed (the function failed
or could not run) it is ``PROBLEM: Function call failed`` and ``LastError`` holds the last
function error's type and message (its first line, bounded, the function's environment
values masked; never a stack trace). One failed batch is enough, as on Lambda, where
``LastProcessingResult`` is the result of the last batch whichever shard, partition or
poller it came from: a per-mapping streak longer than 1 would depend on how the batches
of parallel lanes happen to interleave.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

import structlog

from pumphouse.errors import DestinationError
from pumphouse.pollers.destinations import (
    FailureDestination,
    S3KeyParts,
    deliver_with_retry,
)
from pumphouse.pollers.policy import (
    AttemptOutcome,
    AttemptResult,
    BatchReport,
    GiveUp,
    RetryPolicy,
    classify_invocation,
    process_ordered_batch,
)

if TYPE_CHECKING:
    from pumphouse.config import EventSourceMapping
    from pumphouse.pollers.base import MappingStatus
    from pumphouse.runtime import Runtime
    from pumphouse.runtime.result import InvocationResult
    from pumphouse.runtime.slots import CallerSlots
    from pumphouse.telemetry.metrics import MappingMetrics

log = structlog.get_logger("pumphouse.pollers.dispatch")

R = TypeVar("R")

#: Consecutive failed attempts after which a mapping reports ``PROBLEM: Function call
#: failed``. 1, as Lambda: ``LastProcessingResult`` is the result of the last batch
#: processed, whichever shard, partition or poller it came from.
FAILED_BATCHES_FOR_PROBLEM: Final = 1
#: The longest ``LastError`` kept (the error's type and the start of its message).
LAST_ERROR_CHARS: Final = 256


# --- what a source supplies ------------------------------------------------------------


@dataclass(frozen=True)
class FailureMessage:
    """One message to an on-failure destination, as a source describes a given-up range."""

    record: Mapping[str, Any]
    """The failure record (``requestContext``, ``responseContext``, the batch info ...)."""
    payload: bytes | None = None
    """The original event: S3 and Kafka destinations store it; SQS and SNS ignore it."""
    message_key: bytes | None = None
    """The Kafka message key (``kafka://`` destinations only)."""


class SourceBinding(Protocol[R]):
    """What a source tells the dispatcher about its records."""

    def record_id(self, record: R) -> Hashable:
        """The record's identifier as a partial batch response names it (after
        :meth:`item_id`): the SQS ``messageId``, the stream ``sequenceNumber``, or
        ``("<topic>-<partition>", offset)``."""
        ...

    def item_id(self, identifier: Any) -> Hashable | None:
        """An ``itemIdentifier`` of a response as :meth:`record_id` spells it; None when
        malformed."""
        ...

    def arrival(self, record: R) -> float:
        """When the record reached the source, epoch seconds (the record-age clock)."""
        ...

    def oldest_arrival(self, records: Sequence[R]) -> float:
        """The arrival of the oldest of ``records`` (ordered sources: the first)."""
        ...

    def fragment(self, record: R) -> bytes:
        """The record serialized in its Lambda shape."""
        ...

    def event(self, records: Sequence[R]) -> bytes:
        """The event holding these records' fragments (``{"Records":[...]}`` or Kafka's)."""
        ...

    def failure_messages(
        self, gave_up: GiveUp[R], *, destination_type: str, now: float
    ) -> Sequence[FailureMessage]:
        """What to send to a destination of ``destination_type`` for these records."""
        ...

    def s3_location(self, records: Sequence[R]) -> str:
        """The shard or ``<topic>-<partition>`` part of an S3 failure object's key."""
        ...


def retry_policy(mapping: EventSourceMapping) -> RetryPolicy:
    """The error-handling settings of a mapping (SQS reads only ReportBatchItemFailures)."""
    return RetryPolicy.from_mapping(
        maximum_retry_attempts=mapping.retry_attempts,
        maximum_record_age_in_seconds=mapping.max_record_age,
        bisect_batch_on_function_error=mapping.bisect_batch_on_function_error,
        function_response_types=[str(t) for t in mapping.FunctionResponseTypes],
    )


# --- the LastProcessingResult rule ---------------------------------------------------------


def describe_error(result: InvocationResult, *, secrets: Sequence[str] = ()) -> str:
    """``errorType: errorMessage`` of a failed invocation, for ``LastError``: its first line,
    at most :data:`LAST_ERROR_CHARS` characters, with any of ``secrets`` (the function's
    environment values) masked. Never the stack trace."""
    error = result.error or {}
    kind = str(error.get("errorType") or result.outcome.value)
    message = str(error.get("errorMessage") or "").strip().splitlines()
    text = f"{kind}: {message[0]}" if message else kind
    for secret in secrets:
        if len(secret) >= 4 and secret in text:
            text = text.replace(secret, "***")
    return text[:LAST_ERROR_CHARS]


class ProcessingResultRule:
    """The one rule that sets a mapping's ``LastProcessingResult`` from its attempts."""

    def __init__(self, status: MappingStatus, *, threshold: int = FAILED_BATCHES_FOR_PROBLEM):
        self.status = status
        self.threshold = threshold
        self.failed_in_a_row = 0

    def succeeded(self) -> None:
        """The function ran and returned (a partial batch response included)."""
        self.failed_in_a_row = 0
        self.status.processed()

    def failed(self, error: str) -> None:
        """The function failed, or could not run; ``error`` becomes ``LastError``."""
        self.failed_in_a_row += 1
        self.status.function_failed(error, problem=self.failed_in_a_row >= self.threshold)


# --- the dispatcher ----------------------------------------------------------------------


Interpret = Callable[["InvocationResult", AttemptResult], AttemptResult]
"""Reads more of a result than the batch outcome (a tumbling window's ``state``) and may
turn the attempt into a failure."""


class Dispatcher(Generic[R]):
    """Invokes a mapping's function for batches and applies the error policy."""

    def __init__(
        self,
        *,
        binding: SourceBinding[R],
        runtime: Runtime,
        function: str,
        caller: CallerSlots,
        metrics: MappingMetrics,
        status: MappingStatus,
        policy: RetryPolicy,
        destination: FailureDestination | None = None,
        mapping_uuid: str = "",
        secrets: Sequence[str] = (),
        wall_clock: Callable[[], float] = time.time,
        logger: Any = None,
    ) -> None:
        self.binding = binding
        self.runtime = runtime
        self.function = function
        self.caller = caller
        self.metrics = metrics
        self.policy = policy
        self.destination = destination
        self.mapping_uuid = mapping_uuid
        self.secrets = tuple(secrets)
        self.now = wall_clock
        self.rule = ProcessingResultRule(status)
        self.log = logger if logger is not None else log

    # -- one attempt ------------------------------------------------------------------

    async def attempt(
        self,
        records: Sequence[R],
        *,
        event: bytes | None = None,
        interpret: Interpret | None = None,
        while_running: Callable[[], None] | None = None,
    ) -> AttemptResult:
        """Invoke the function once with ``records`` and say how it went.

        ``event`` replaces the event built from the records' fragments (a tumbling
        window's event carries more). ``interpret`` may read more of the result.
        ``while_running`` is called once the slot is held, to do work while the function
        runs. An exception out of the runtime is an attempt that did not run.
        """
        binding = self.binding
        metrics = self.metrics
        count = len(records)
        if event is None:
            event = binding.event(records)
        if count:
            metrics.batch_size.observe(count)
            oldest = binding.oldest_arrival(records)
            metrics.record_age.observe(max(0.0, self.now() - oldest))
        metrics.batch_bytes.observe(len(event))
        try:
            async with self.caller.slot() as slot:
                if while_running is not None:
                    asyncio.get_running_loop().call_soon(while_running)
                result = await self.runtime.invoke(
                    self.function, event, caller=self.caller, slot=slot
                )
        except asyncio.CancelledError:
            raise
        except Exception as err:  # any runtime failure: the function did not run
            reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            metrics.failed_invoke.inc(count)
            metrics.invoke_errors.inc()
            self.rule.failed(reason[:LAST_ERROR_CHARS])
            self.log.warning("the function could not be invoked", error=reason, records=count)
            return AttemptResult.not_run(reason)
        attempt = classify_invocation(
            result,
            policy=self.policy,
            batch_ids=(
                [binding.record_id(r) for r in records]
                if self.policy.report_batch_item_failures
                else ()
            ),
            id_of=binding.item_id,
        )
        if interpret is not None:
            attempt = interpret(result, attempt)
        self._count(result, attempt, count)
        return attempt

    def _count(self, result: InvocationResult, attempt: AttemptResult, count: int) -> None:
        metrics = self.metrics
        if result.function_ran:
            metrics.invoked.inc(count)
        outcome = attempt.outcome
        if outcome is AttemptOutcome.SUCCESS:
            self.rule.succeeded()
            return
        if outcome is AttemptOutcome.PARTIAL:
            metrics.failed_invoke.inc(len(attempt.failed_ids))
            self.rule.succeeded()
            self.log.info(
                "partial batch failure",
                request_id=attempt.request_id,
                records=count,
                failed=len(attempt.failed_ids),
            )
            return
        metrics.failed_invoke.inc(count)
        if result.ok:
            # The function returned, but its response fails the whole batch.
            self.rule.failed(f"unusable batch item failures response: {attempt.reason}")
            self.log.warning(
                "unusable batch item failures response: the whole batch failed",
                reason=attempt.reason,
                request_id=result.request_id,
                records=count,
            )
            return
        metrics.invoke_errors.inc()
        error = describe_error(result, secrets=self.secrets)
        self.rule.failed(error)
        self.log.warning(
            "batch failed" if result.function_ran else "the function could not run",
            outcome=result.outcome.value,
            error_type=result.error_type,
            error=error,
            request_id=result.request_id,
            records=count,
        )

    # -- the ordered error policy ---------------------------------------------------------

    async def process_ordered(
        self,
        records: Sequence[R],
        *,
        finished: Callable[[Sequence[R]], Awaitable[None]],
        stopping: Callable[[], bool],
        sleep: Callable[[float], Awaitable[None]],
        invoke: Callable[[Sequence[R]], Awaitable[AttemptResult]] | None = None,
        attempts_so_far: int = 0,
        on_attempt: Callable[[Sequence[R], int], Awaitable[None]] | None = None,
    ) -> BatchReport[R]:
        """Run one ordered batch (a shard's, a lane's, a partition's) through the retry,
        bisect and record-age policy until every record is finished or ``stopping()``.

        ``invoke`` replaces :meth:`attempt` (it must call it). Given-up records are
        delivered by :meth:`give_up` before ``finished`` sees them; when stopping while
        the destination is unreachable, :class:`~pumphouse.errors.DestinationError`
        propagates and those records stay unfinished.
        """

        async def give_up(gave_up: GiveUp[R]) -> None:
            await self.give_up(gave_up, stopping=stopping, sleep=sleep)

        return await process_ordered_batch(
            records,
            policy=self.policy,
            invoke=invoke if invoke is not None else self.attempt,
            give_up=give_up,
            finished=finished,
            record_arrival=self.binding.arrival,
            record_id=self.binding.record_id,
            now=self.now,
            sleep=sleep,
            attempts_so_far=attempts_so_far,
            on_attempt=on_attempt,
            stopping=stopping,
        )

    # -- giving up ------------------------------------------------------------------------

    async def give_up(
        self,
        gave_up: GiveUp[R],
        *,
        stopping: Callable[[], bool],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Give up on records: deliver their failure record(s) to the on-failure
        destination (retried until delivered, or until ``stopping()`` — then
        :class:`~pumphouse.errors.DestinationError` is raised), or count them dropped."""
        records = gave_up.records
        destination = self.destination
        self.log.warning(
            "records given up",
            condition=str(gave_up.condition),
            count=len(records),
            destination=destination.target if destination else None,
        )
        if destination is None:
            self.metrics.dropped.inc(len(records))
            return
        now = self.now()
        messages = self.binding.failure_messages(
            gave_up, destination_type=destination.destination_type, now=now
        )
        key_parts = None
        if destination.destination_type == "s3":
            key_parts = S3KeyParts(
                mapping_uuid=self.mapping_uuid,
                location=self.binding.s3_location(records),
                when=now,
            )
        dropped = False

        def delivery_failed(_err: DestinationError) -> None:
            nonlocal dropped
            if not dropped:
                dropped = True
                self.metrics.dropped.inc(len(records))

        for message in messages:
            await deliver_with_retry(
                destination,
                message.record,
                stop=stopping,
                payload=message.payload,
                s3_key_parts=key_parts,
                message_key=message.message_key,
                sleep=sleep,
                on_failure=delivery_failed,
                metrics=self.metrics,
            )


__all__ = [
    "FAILED_BATCHES_FOR_PROBLEM",
    "LAST_ERROR_CHARS",
    "Dispatcher",
    "FailureMessage",
    "ProcessingResultRule",
    "SourceBinding",
    "describe_error",
    "retry_policy",
]
