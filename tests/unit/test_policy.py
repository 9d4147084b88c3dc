"""The ordered-source error policy: retries, record age, partial responses, bisect.

The poller's effects are plain async functions here; that is the design of
``process_ordered_batch`` (it takes its I/O as callables), not a mock of a broker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pumphouse.pollers.policy import (
    AttemptOutcome,
    AttemptResult,
    BatchReport,
    FailureCondition,
    GiveUp,
    ResponseContext,
    RetryPolicy,
    classify_invocation,
    process_ordered_batch,
)
from pumphouse.pollers.responses import sqs_item_id, stream_item_id


@dataclass(frozen=True)
class Rec:
    seq: str
    arrival: float


def records(n: int, *, arrival: float = 1000.0) -> list[Rec]:
    return [Rec(f"r{i}", arrival + i) for i in range(n)]


def names(batch: Sequence[Rec]) -> list[str]:
    return [r.seq for r in batch]


Responder = Callable[[Sequence[Rec], int], AttemptResult]


@dataclass
class Harness:
    """Runs process_ordered_batch and records everything it does."""

    respond: Responder
    clock: float = 2000.0
    invoked: list[list[str]] = field(default_factory=list)
    finished: list[list[str]] = field(default_factory=list)
    gave_up: list[GiveUp[Rec]] = field(default_factory=list)
    slept: list[float] = field(default_factory=list)
    attempts: list[tuple[list[str], int]] = field(default_factory=list)
    stop_after_invocations: int | None = None
    give_up_error: Exception | None = None

    async def invoke(self, batch: Sequence[Rec]) -> AttemptResult:
        self.invoked.append(names(batch))
        return self.respond(batch, len(self.invoked))

    async def give_up(self, gave_up: GiveUp[Rec]) -> None:
        if self.give_up_error is not None:
            raise self.give_up_error
        self.gave_up.append(gave_up)

    async def finish(self, batch: Sequence[Rec]) -> None:
        self.finished.append(names(batch))

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.clock += delay

    async def on_attempt(self, batch: Sequence[Rec], attempt: int) -> None:
        self.attempts.append((names(batch), attempt))

    def stopping(self) -> bool:
        return (
            self.stop_after_invocations is not None
            and len(self.invoked) >= self.stop_after_invocations
        )

    async def run(
        self, batch: Sequence[Rec], policy: RetryPolicy, *, attempts_so_far: int = 0
    ) -> BatchReport[Rec]:
        report = await process_ordered_batch(
            batch,
            policy=policy,
            invoke=self.invoke,
            give_up=self.give_up,
            finished=self.finish,
            record_arrival=lambda r: r.arrival,
            record_id=lambda r: r.seq,
            now=lambda: self.clock,
            sleep=self.sleep,
            attempts_so_far=attempts_so_far,
            on_attempt=self.on_attempt,
            stopping=self.stopping,
        )
        self.check_finished_is_contiguous(batch, report)
        return report

    def check_finished_is_contiguous(self, batch: Sequence[Rec], report: BatchReport[Rec]) -> None:
        flat = [seq for part in self.finished for seq in part]
        assert flat == names(batch)[: len(flat)]
        assert all(self.finished)  # never an empty slice
        assert report.finished_count == len(flat)
        assert names(report.unfinished) == names(batch)[len(flat) :]


def always(result: AttemptResult) -> Responder:
    return lambda batch, n: result


def poison(*bad: str, request_id: str = "req") -> Responder:
    """The function raises whenever a poison record is in the batch."""

    def respond(batch: Sequence[Rec], n: int) -> AttemptResult:
        if any(r.seq in bad for r in batch):
            return AttemptResult.failed(request_id=f"{request_id}-{n}")
        return AttemptResult.success(request_id=f"{request_id}-{n}")

    return respond


def fast(**settings: Any) -> RetryPolicy:
    """A policy with tiny back-off delays (the sleeps are recorded, not waited)."""
    return RetryPolicy(**{"backoff_base": 0.01, "backoff_cap": 0.05, **settings})


async def test_success_finishes_everything_in_one_invocation() -> None:
    h = Harness(always(AttemptResult.success(request_id="a")))
    report = await h.run(records(4), fast(max_retry_attempts=2))
    assert h.invoked == [["r0", "r1", "r2", "r3"]]
    assert h.finished == [["r0", "r1", "r2", "r3"]]
    assert report.complete and not report.stopped
    assert report.invocations == 1
    assert report.given_up == ()
    assert h.attempts == [(["r0", "r1", "r2", "r3"], 1)]


async def test_empty_batch() -> None:
    h = Harness(always(AttemptResult.success()))
    report = await h.run([], RetryPolicy())
    assert report.complete and report.invocations == 0
    assert h.invoked == []


async def test_retry_then_success() -> None:
    h = Harness(lambda b, n: AttemptResult.failed() if n < 3 else AttemptResult.success())
    report = await h.run(records(3), fast(max_retry_attempts=5))
    assert len(h.invoked) == 3
    assert h.finished == [["r0", "r1", "r2"]]
    assert report.complete and report.given_up == ()
    assert [a for _, a in h.attempts] == [1, 2, 3]
    assert h.slept == [0.01, 0.02]  # exponential back-off between retries


@pytest.mark.parametrize(("max_retries", "invocations"), [(0, 1), (1, 2), (3, 4)])
async def test_retries_exhausted(max_retries: int, invocations: int) -> None:
    h = Harness(poison("r1", request_id="fail"))
    report = await h.run(records(3), fast(max_retry_attempts=max_retries))
    assert len(h.invoked) == invocations
    assert len(h.gave_up) == 1
    gave_up = h.gave_up[0]
    assert gave_up.condition is FailureCondition.RETRY_ATTEMPTS_EXHAUSTED
    assert gave_up.approximate_invoke_count == invocations  # MaximumRetryAttempts=1 -> 2
    assert names(gave_up.records) == ["r0", "r1", "r2"]
    assert gave_up.response_context == ResponseContext(200, "$LATEST", "Unhandled")
    assert gave_up.request_id == f"fail-{invocations}"
    # Finished only after the failure record was handed over: the shard goes on.
    assert h.finished == [["r0", "r1", "r2"]]
    assert report.complete and report.given_up == (gave_up,)


async def test_not_run_does_not_consume_attempts() -> None:
    script = [
        AttemptResult.not_run("throttled"),
        AttemptResult.failed(),
        AttemptResult.not_run("no worker"),
        AttemptResult.not_run("no worker"),
        AttemptResult.failed(),
    ]
    h = Harness(lambda b, n: script[n - 1])
    report = await h.run(records(2), fast(max_retry_attempts=1))
    assert len(h.invoked) == 5
    assert len(h.gave_up) == 1
    assert h.gave_up[0].approximate_invoke_count == 2  # two real attempts
    assert report.complete
    # Backed off after each not-run (growing within a streak) and before the retry.
    assert h.slept == [0.01, 0.01, 0.01, 0.02]
    assert [a for _, a in h.attempts] == [1, 1, 2, 2, 2]


async def test_record_age_split_off_the_head_before_each_attempt() -> None:
    batch = [Rec("r0", 100.0), Rec("r1", 150.0), Rec("r2", 1990.0), Rec("r3", 1995.0)]
    h = Harness(always(AttemptResult.success(request_id="ok")), clock=2000.0)
    report = await h.run(batch, fast(max_record_age=60.0))
    assert len(h.gave_up) == 1
    aged = h.gave_up[0]
    assert aged.condition is FailureCondition.RECORD_AGE_EXCEEDED
    assert names(aged.records) == ["r0", "r1"]
    assert aged.response_context is None
    assert aged.approximate_invoke_count == 1  # never delivered: AWS writes 1
    assert h.invoked == [["r2", "r3"]]
    assert h.finished == [["r0", "r1"], ["r2", "r3"]]
    assert report.complete


async def test_records_age_out_while_retrying() -> None:
    # Arrivals 1000, 1001, 1002; the clock starts at 1030 and each retry sleeps 20 s.
    h = Harness(poison("r0", request_id="x"), clock=1030.0)
    policy = RetryPolicy(
        max_retry_attempts=-1, max_record_age=60.0, backoff_base=20.0, backoff_cap=20.0
    )
    report = await h.run(records(3), policy)
    # 1030, 1050 invoke; at 1070 every record is older than 60 s.
    assert len(h.invoked) == 2
    assert len(h.gave_up) == 1
    assert h.gave_up[0].condition is FailureCondition.RECORD_AGE_EXCEEDED
    assert h.gave_up[0].approximate_invoke_count == 3  # the third attempt was due
    assert h.gave_up[0].request_id == "x-2"
    assert h.finished == [["r0", "r1", "r2"]]
    assert report.complete


async def test_bisect_isolates_one_poison_record_exactly_as_documented() -> None:
    """The module docstring's worked example: 8 records, r5 poison, MaximumRetryAttempts 2."""
    h = Harness(poison("r5"))
    policy = fast(max_retry_attempts=2, bisect_on_function_error=True)
    report = await h.run(records(8), policy)
    assert h.invoked == [
        ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"],
        ["r0", "r1", "r2", "r3"],
        ["r4", "r5", "r6", "r7"],
        ["r4", "r5"],
        ["r4"],
        ["r5"],
        ["r5"],
        ["r5"],
        ["r6", "r7"],
    ]
    assert h.finished == [["r0", "r1", "r2", "r3"], ["r4"], ["r5"], ["r6", "r7"]]
    assert len(h.gave_up) == 1
    assert names(h.gave_up[0].records) == ["r5"]
    assert h.gave_up[0].approximate_invoke_count == 3
    assert h.gave_up[0].response_context == ResponseContext()
    assert report.complete and report.invocations == 9
    # Splitting spends no attempt: only the two retries of r5 slept.
    assert h.slept == [0.01, 0.02]
    assert [a for _, a in h.attempts] == [1, 1, 1, 1, 1, 1, 2, 3, 1]


async def test_bisect_halves_each_get_the_remaining_budget() -> None:
    """r1 and r2 both poison: each single record is retried with the full budget."""
    h = Harness(poison("r1", "r2"))
    policy = fast(max_retry_attempts=1, bisect_on_function_error=True)
    report = await h.run(records(4), policy)
    assert h.invoked == [
        ["r0", "r1", "r2", "r3"],
        ["r0", "r1"],
        ["r0"],
        ["r1"],
        ["r1"],
        ["r2", "r3"],
        ["r2"],
        ["r2"],
        ["r3"],
    ]
    assert [names(g.records) for g in h.gave_up] == [["r1"], ["r2"]]
    assert [g.approximate_invoke_count for g in h.gave_up] == [2, 2]
    assert report.complete


async def test_bisect_single_record_cannot_split() -> None:
    h = Harness(poison("r0"))
    policy = fast(max_retry_attempts=1, bisect_on_function_error=True)
    await h.run(records(1), policy)
    assert h.invoked == [["r0"], ["r0"]]
    assert h.gave_up[0].approximate_invoke_count == 2


def partial_on(*bad: str) -> Responder:
    """ReportBatchItemFailures: the function reports the poison records it saw."""

    def respond(batch: Sequence[Rec], n: int) -> AttemptResult:
        failed = [r.seq for r in batch if r.seq in bad]
        return AttemptResult.partial(failed, request_id=f"p-{n}")

    return respond


async def test_partial_response_retries_from_the_lowest_failed_record() -> None:
    h = Harness(partial_on("r5", "r6"))
    policy = fast(max_retry_attempts=1, report_batch_item_failures=True)
    report = await h.run(records(8), policy)
    # The module docstring's worked example: progress makes the remainder a new batch.
    assert h.invoked == [
        ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"],
        ["r5", "r6", "r7"],  # r7 succeeded but is delivered again; no retry spent
        ["r5", "r6", "r7"],  # nothing finished: retry 1 of 1
    ]
    assert h.finished == [["r0", "r1", "r2", "r3", "r4"], ["r5", "r6", "r7"]]
    assert len(h.gave_up) == 1
    gave_up = h.gave_up[0]
    assert names(gave_up.records) == ["r5", "r6", "r7"]  # only the failed remainder
    assert gave_up.response_context == ResponseContext(function_error=None)
    assert gave_up.approximate_invoke_count == 2
    assert gave_up.request_id == "p-3"
    assert report.complete


async def test_partial_response_then_success() -> None:
    def respond(batch: Sequence[Rec], n: int) -> AttemptResult:
        return AttemptResult.partial(["r2"]) if n == 1 else AttemptResult.success()

    h = Harness(respond)
    report = await h.run(records(4), fast(max_retry_attempts=3))
    assert h.invoked == [["r0", "r1", "r2", "r3"], ["r2", "r3"]]
    assert h.finished == [["r0", "r1"], ["r2", "r3"]]
    assert report.complete and report.given_up == ()


async def test_partial_response_naming_nothing_in_range_fails_the_range() -> None:
    h = Harness(always(AttemptResult.partial(["zzz"])))
    await h.run(records(2), fast(max_retry_attempts=0))
    assert h.invoked == [["r0", "r1"]]
    assert names(h.gave_up[0].records) == ["r0", "r1"]


async def test_partial_response_with_bisect_splits_at_the_returned_record() -> None:
    h = Harness(partial_on("r5"))
    policy = fast(
        max_retry_attempts=1, bisect_on_function_error=True, report_batch_item_failures=True
    )
    report = await h.run(records(8), policy)
    assert h.invoked == [
        ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"],
        ["r5", "r6", "r7"],  # split at r5: no attempt spent
        ["r5", "r6", "r7"],  # r5 failed first: nothing finished, this one is retry 1
    ]
    assert h.finished == [["r0", "r1", "r2", "r3", "r4"], ["r5", "r6", "r7"]]
    assert names(h.gave_up[0].records) == ["r5", "r6", "r7"]
    assert h.gave_up[0].approximate_invoke_count == 2
    assert h.gave_up[0].response_context == ResponseContext(function_error=None)
    assert report.complete


async def test_partial_and_function_errors_mixed_under_bisect() -> None:
    """A function error bisects; a partial response inside a half splits at the record."""

    def respond(batch: Sequence[Rec], n: int) -> AttemptResult:
        if len(batch) == 8:
            return AttemptResult.failed()
        return AttemptResult.partial([r.seq for r in batch if r.seq == "r2"])

    h = Harness(respond)
    policy = fast(
        max_retry_attempts=0, bisect_on_function_error=True, report_batch_item_failures=True
    )
    await h.run(records(8), policy)
    assert h.invoked == [
        ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"],
        ["r0", "r1", "r2", "r3"],
        ["r2", "r3"],
        ["r4", "r5", "r6", "r7"],
    ]
    assert [names(g.records) for g in h.gave_up] == [["r2", "r3"]]
    assert h.finished == [["r0", "r1"], ["r2", "r3"], ["r4", "r5", "r6", "r7"]]


async def test_infinite_retries_stop_when_stopping() -> None:
    h = Harness(always(AttemptResult.failed()), stop_after_invocations=5)
    report = await h.run(records(3), fast(max_retry_attempts=-1))
    assert len(h.invoked) == 5
    assert report.stopped and not report.complete
    assert names(report.unfinished) == ["r0", "r1", "r2"]
    assert report.retries_used == 5
    assert h.finished == [] and h.gave_up == []
    assert max(h.slept) <= 0.05  # capped back-off


async def test_infinite_not_run_stops_when_stopping() -> None:
    h = Harness(always(AttemptResult.not_run("throttled")), stop_after_invocations=4)
    report = await h.run(records(2), fast())
    assert report.stopped
    assert report.retries_used == 0
    assert len(h.invoked) == 4


async def test_stopping_mid_bisect_reports_what_is_unfinished() -> None:
    h = Harness(poison("r5"), stop_after_invocations=3)
    policy = fast(max_retry_attempts=2, bisect_on_function_error=True)
    report = await h.run(records(8), policy)
    assert report.stopped
    assert h.finished == [["r0", "r1", "r2", "r3"]]
    assert names(report.unfinished) == ["r4", "r5", "r6", "r7"]


async def test_give_up_failing_leaves_records_unfinished() -> None:
    h = Harness(partial_on("r2"))
    h.give_up_error = RuntimeError("destination unreachable")
    policy = fast(max_retry_attempts=0, report_batch_item_failures=True)
    with pytest.raises(RuntimeError, match="unreachable"):
        await process_ordered_batch(
            records(4),
            policy=policy,
            invoke=h.invoke,
            give_up=h.give_up,
            finished=h.finish,
            record_arrival=lambda r: r.arrival,
            record_id=lambda r: r.seq,
            now=lambda: h.clock,
            sleep=h.sleep,
        )
    # Records before the failure are finished; the given-up ones are not.
    assert h.finished == [["r0", "r1"]]


async def test_attempts_so_far_continue_after_a_restart() -> None:
    h = Harness(poison("r0"))
    report = await h.run(records(2), fast(max_retry_attempts=3), attempts_so_far=2)
    # Attempts 1 and 2 happened before the restart: only 3 and 4 remain.
    assert [a for _, a in h.attempts] == [3, 4]
    assert h.gave_up[0].approximate_invoke_count == 4
    assert report.complete


async def test_restart_with_spent_budget_still_makes_one_attempt() -> None:
    h = Harness(poison("r0"))
    await h.run(records(1), fast(max_retry_attempts=1), attempts_so_far=7)
    assert len(h.invoked) == 1
    assert h.gave_up[0].approximate_invoke_count == 2
    assert h.gave_up[0].response_context == ResponseContext()


def test_policy_from_mapping_and_validation() -> None:
    policy = RetryPolicy.from_mapping(
        maximum_retry_attempts=2,
        maximum_record_age_in_seconds=-1,
        bisect_batch_on_function_error=True,
        function_response_types=["ReportBatchItemFailures"],
    )
    assert policy == RetryPolicy(
        max_retry_attempts=2,
        max_record_age=None,
        bisect_on_function_error=True,
        report_batch_item_failures=True,
    )
    assert RetryPolicy.from_mapping(maximum_record_age_in_seconds=60).max_record_age == 60.0
    assert RetryPolicy.from_mapping().infinite_retries
    assert RetryPolicy(backoff_base=1, backoff_cap=5).backoff(10) == 5
    assert RetryPolicy().backoff(0) == 0.0
    with pytest.raises(ValueError, match="max_retry_attempts"):
        RetryPolicy(max_retry_attempts=-2)
    with pytest.raises(ValueError, match="max_record_age"):
        RetryPolicy(max_record_age=0)


@dataclass
class FakeInvocation:
    ok: bool
    payload: Any = None
    function_error: str | None = None
    function_ran: bool = True
    request_id: str | None = "rid"


@pytest.mark.parametrize(
    ("invocation", "rbif", "outcome", "failed_ids", "function_error"),
    [
        (
            FakeInvocation(ok=True, payload={"batchItemFailures": [{"itemIdentifier": "b"}]}),
            False,
            AttemptOutcome.SUCCESS,
            (),
            None,
        ),
        (
            FakeInvocation(ok=True, payload={"batchItemFailures": [{"itemIdentifier": "b"}]}),
            True,
            AttemptOutcome.PARTIAL,
            ("b",),
            None,
        ),
        (FakeInvocation(ok=True, payload=None), True, AttemptOutcome.SUCCESS, (), None),
        (
            FakeInvocation(ok=True, payload={"batchItemFailures": [{"itemIdentifier": "zz"}]}),
            True,
            AttemptOutcome.FAILED,
            (),
            None,
        ),
        (
            FakeInvocation(ok=False, function_error="Unhandled"),
            True,
            AttemptOutcome.FAILED,
            (),
            "Unhandled",
        ),
        (FakeInvocation(ok=False), False, AttemptOutcome.FAILED, (), "Unhandled"),
        (FakeInvocation(ok=False, function_ran=False), True, AttemptOutcome.NOT_RUN, (), None),
    ],
    ids=[
        "ignored-without-rbif",
        "partial",
        "success",
        "bad-id",
        "error",
        "error-default",
        "not-run",
    ],
)
def test_classify_invocation(
    invocation: FakeInvocation,
    rbif: bool,
    outcome: AttemptOutcome,
    failed_ids: tuple[str, ...],
    function_error: str | None,
) -> None:
    result = classify_invocation(
        invocation,
        policy=RetryPolicy(report_batch_item_failures=rbif),
        batch_ids=["a", "b", "c"],
        id_of=stream_item_id,
    )
    assert result.outcome is outcome
    assert result.failed_ids == failed_ids
    if outcome in (AttemptOutcome.FAILED, AttemptOutcome.PARTIAL):
        assert result.response_context is not None
        assert result.response_context.function_error == function_error
        assert result.request_id == "rid"


def test_partial_without_ids_is_success() -> None:
    assert AttemptResult.partial([]).outcome is AttemptOutcome.SUCCESS
    assert sqs_item_id("m") == "m"


async def test_partial_progress_gives_the_remainder_a_fresh_budget_as_aws_records() -> None:
    """AWS-recorded (Kinesis and DynamoDB Streams): six records, BatchSize 3,
    MaximumRetryAttempts 3, the handler always reports r5. The batch r3 r4 r5 finishes
    r3 r4; r5 alone is then invoked 1 + 3 times: five deliveries of r5 in all, and the
    failure record says approximateInvokeCount 4."""
    policy = fast(max_retry_attempts=3, report_batch_item_failures=True)
    batch = records(6)
    first, second = Harness(partial_on("r5")), Harness(partial_on("r5"))
    await first.run(batch[:3], policy)
    await second.run(batch[3:], policy)
    assert first.invoked == [["r0", "r1", "r2"]]
    assert second.invoked == [["r3", "r4", "r5"]] + [["r5"]] * 4
    assert sum(run.count("r5") for run in second.invoked) == 5
    (gave_up,) = second.gave_up
    assert names(gave_up.records) == ["r5"]
    assert gave_up.approximate_invoke_count == 4
    assert gave_up.response_context == ResponseContext(function_error=None)


async def test_partial_progress_with_no_retries_still_invokes_the_remainder_once() -> None:
    """MaximumRetryAttempts 0: AWS invokes the remainder once more before giving up."""
    h = Harness(partial_on("r2"))
    policy = fast(max_retry_attempts=0, report_batch_item_failures=True)
    await h.run(records(3), policy)
    assert h.invoked == [["r0", "r1", "r2"], ["r2"]]
    (gave_up,) = h.gave_up
    assert gave_up.approximate_invoke_count == 1


async def test_record_never_delivered_ages_out_with_invoke_count_one() -> None:
    """AWS-recorded (Kinesis, expire-before-ingestion): approximateInvokeCount 1."""
    h = Harness(always(AttemptResult.success()), clock=5000.0)
    await h.run([Rec("r0", 1000.0)], fast(max_record_age=60.0, max_retry_attempts=0))
    assert h.invoked == []
    (aged,) = h.gave_up
    assert aged.condition is FailureCondition.RECORD_AGE_EXCEEDED
    assert aged.approximate_invoke_count == 1
