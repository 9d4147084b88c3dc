"""The dispatcher's counting and status rule, with a scripted runtime and destination.

The runtime and destination here are pumphouse's own interfaces, scripted: what is tested
is what the dispatcher counts and reports for each outcome (the sources run it against
real servers in tests/integration/test_metric_contract.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pumphouse.errors import DestinationError
from pumphouse.pollers.base import OK, MappingStatus
from pumphouse.pollers.batching import assemble_event
from pumphouse.pollers.destinations import S3KeyParts
from pumphouse.pollers.dispatch import (
    LAST_ERROR_CHARS,
    Dispatcher,
    FailureMessage,
    describe_error,
)
from pumphouse.pollers.policy import (
    AttemptOutcome,
    FailureCondition,
    GiveUp,
    RetryPolicy,
)
from pumphouse.runtime.result import InvocationResult, Outcome, lambda_error, service_error
from pumphouse.telemetry.metrics import MappingMetrics, Metrics


@dataclass(frozen=True)
class Rec:
    id: str
    arrival: float = 100.0


class Binding:
    def record_id(self, record: Rec) -> Hashable:
        return record.id

    def item_id(self, identifier: Any) -> Hashable | None:
        return identifier if isinstance(identifier, str) and identifier else None

    def arrival(self, record: Rec) -> float:
        return record.arrival

    def oldest_arrival(self, records: Sequence[Rec]) -> float:
        return min(r.arrival for r in records)

    def fragment(self, record: Rec) -> bytes:
        return b'{"id":"' + record.id.encode() + b'"}'

    def event(self, records: Sequence[Rec]) -> bytes:
        return assemble_event(self.fragment(r) for r in records)

    def failure_messages(
        self, gave_up: GiveUp[Rec], *, destination_type: str, now: float
    ) -> Sequence[FailureMessage]:
        return [FailureMessage({"ids": [r.id for r in gave_up.records]}, payload=b"{}")]

    def s3_location(self, records: Sequence[Rec]) -> str:
        return "shard-0"


def result(outcome: Outcome, payload: Any = None, **error: str) -> InvocationResult:
    return InvocationResult(
        request_id="req-1",
        outcome=outcome,
        payload=payload,
        error=lambda_error(**error) if error else None,  # type: ignore[arg-type]
        function_error=None if outcome is Outcome.SUCCESS else "Unhandled",
        duration_ms=1.0,
        billed_duration_ms=1,
        init_duration_ms=None,
        max_memory_used_mb=10,
        memory_size_mb=128,
        cold_start=False,
    )


class ScriptedRuntime:
    """Answers each invoke with the next scripted result (or raises it)."""

    def __init__(self, *answers: InvocationResult | Exception) -> None:
        self.answers = list(answers)
        self.events: list[bytes] = []

    async def invoke(self, function: str, event: bytes, **_: Any) -> InvocationResult:
        self.events.append(event)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Caller:
    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        yield None


class Destination:
    """Fails the first ``failures`` deliveries."""

    destination_type = "s3"
    target = "arn:aws:s3:::failures"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.delivered: list[tuple[Mapping[str, Any], S3KeyParts | None]] = []

    async def deliver(
        self,
        record: Mapping[str, Any],
        *,
        payload: bytes | None = None,
        s3_key_parts: S3KeyParts | None = None,
        message_key: bytes | None = None,
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise DestinationError("the bucket is unreachable")
        self.delivered.append((record, s3_key_parts))


def make(
    *answers: InvocationResult | Exception,
    destination: Destination | None = None,
    report: bool = True,
) -> tuple[Dispatcher[Rec], MappingMetrics, MappingStatus]:
    metrics = MappingMetrics(
        Metrics(CollectorRegistry()), mapping="m", function="f", source="kinesis"
    )
    status = MappingStatus(uuid="u", label="m", function="f", source="kinesis", metrics=metrics)
    dispatcher: Dispatcher[Rec] = Dispatcher(
        binding=Binding(),
        runtime=ScriptedRuntime(*answers),  # type: ignore[arg-type]
        function="f",
        caller=Caller(),  # type: ignore[arg-type]
        metrics=metrics,
        status=status,
        policy=RetryPolicy(
            report_batch_item_failures=report, max_retry_attempts=0, backoff_base=0.0
        ),
        destination=destination,
        mapping_uuid="u",
        secrets=("hunter22",),
        wall_clock=lambda: 110.0,
    )
    return dispatcher, metrics, status


def counts(metrics: MappingMetrics) -> dict[str, float]:
    registry = metrics.metrics.registry
    names = ["invoked", "failed_invoke", "dropped", "on_failure_delivered"]
    out = {
        name: registry.get_sample_value(f"pumphouse_{name}_events_total", metrics.labels) or 0.0
        for name in names
    }
    out["invoke_errors"] = (
        registry.get_sample_value("pumphouse_invoke_errors_total", metrics.labels) or 0.0
    )
    return out


RECORDS = [Rec("a"), Rec("b"), Rec("c")]


async def test_success_counts_invoked_and_sets_ok() -> None:
    dispatcher, metrics, status = make(result(Outcome.SUCCESS))
    attempt = await dispatcher.attempt(RECORDS)
    assert attempt.outcome is AttemptOutcome.SUCCESS
    assert counts(metrics) == {
        "invoked": 3,
        "failed_invoke": 0,
        "dropped": 0,
        "on_failure_delivered": 0,
        "invoke_errors": 0,
    }
    assert status.last_processing_result == OK
    assert dispatcher.runtime.events == [b'{"Records":[{"id":"a"},{"id":"b"},{"id":"c"}]}']  # type: ignore[attr-defined]


async def test_a_partial_response_is_a_success_that_counts_the_reported_records() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "c"}]}
    dispatcher, metrics, status = make(result(Outcome.SUCCESS, response))
    attempt = await dispatcher.attempt(RECORDS)
    assert attempt.outcome is AttemptOutcome.PARTIAL
    assert counts(metrics)["invoked"] == 3
    assert counts(metrics)["failed_invoke"] == 2
    assert counts(metrics)["invoke_errors"] == 0
    assert status.last_processing_result == OK


async def test_a_function_error_counts_every_record_and_sets_the_last_error() -> None:
    failed = result(
        Outcome.FUNCTION_ERROR, error_type="ValueError", message="bad password hunter22\nmore"
    )
    dispatcher, metrics, status = make(failed, result(Outcome.SUCCESS))
    assert (await dispatcher.attempt(RECORDS)).outcome is AttemptOutcome.FAILED
    assert counts(metrics)["invoked"] == 3
    assert counts(metrics)["failed_invoke"] == 3
    assert counts(metrics)["invoke_errors"] == 1
    assert status.last_processing_result == "PROBLEM: Function call failed"
    # Type and first line of the message; the function's environment values masked.
    assert status.last_error == "ValueError: bad password ***"
    assert status.to_json()["LastError"] == "ValueError: bad password ***"
    await dispatcher.attempt(RECORDS)
    assert status.last_processing_result == OK
    assert status.last_error == "ValueError: bad password ***"  # the last error seen


async def test_a_function_that_did_not_run_is_a_failed_invoke_but_not_invoked() -> None:
    not_run = service_error("req-1", "Pumphouse.SpawnFailed", "no worker", memory_size_mb=128)
    dispatcher, metrics, status = make(not_run, RuntimeError("the runtime broke"))
    assert (await dispatcher.attempt(RECORDS)).outcome is AttemptOutcome.NOT_RUN
    assert (await dispatcher.attempt(RECORDS)).outcome is AttemptOutcome.NOT_RUN
    assert counts(metrics)["invoked"] == 0
    assert counts(metrics)["failed_invoke"] == 6
    assert counts(metrics)["invoke_errors"] == 2
    assert status.last_processing_result == "PROBLEM: Function call failed"
    assert status.last_error == "RuntimeError: the runtime broke"


async def test_an_unusable_partial_response_fails_the_whole_batch() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": "zzz"}]}
    dispatcher, metrics, status = make(result(Outcome.SUCCESS, response))
    attempt = await dispatcher.attempt(RECORDS)
    assert attempt.outcome is AttemptOutcome.FAILED
    assert counts(metrics)["failed_invoke"] == 3
    assert counts(metrics)["invoke_errors"] == 0  # the function returned normally
    assert status.last_processing_result == "PROBLEM: Function call failed"


def test_describe_error_is_bounded() -> None:
    long = result(Outcome.FUNCTION_ERROR, error_type="E", message="x" * 1000)
    assert len(describe_error(long)) == LAST_ERROR_CHARS


def gave_up() -> GiveUp[Rec]:
    return GiveUp(
        records=RECORDS,
        condition=FailureCondition.RETRY_ATTEMPTS_EXHAUSTED,
        approximate_invoke_count=1,
        response_context=None,
        request_id="req-1",
    )


async def never_sleep(_: float) -> None:
    return None


async def test_given_up_without_a_destination_is_dropped() -> None:
    dispatcher, metrics, _ = make()
    await dispatcher.give_up(gave_up(), stopping=lambda: False, sleep=never_sleep)
    assert counts(metrics)["dropped"] == 3


async def test_given_up_and_delivered_is_not_dropped() -> None:
    destination = Destination(failures=0)
    dispatcher, metrics, _ = make(destination=destination)
    await dispatcher.give_up(gave_up(), stopping=lambda: False, sleep=never_sleep)
    assert counts(metrics)["dropped"] == 0
    [(record, parts)] = destination.delivered
    assert record == {"ids": ["a", "b", "c"]}
    assert parts == S3KeyParts(mapping_uuid="u", location="shard-0", when=110.0)


async def test_a_failed_delivery_counts_the_records_dropped_once_and_keeps_retrying() -> None:
    destination = Destination(failures=3)
    dispatcher, metrics, _ = make(destination=destination)
    await dispatcher.give_up(gave_up(), stopping=lambda: False, sleep=never_sleep)
    assert counts(metrics)["dropped"] == 3  # once, not once per failed attempt
    assert len(destination.delivered) == 1


async def test_a_delivery_abandoned_at_shutdown_raises_so_nothing_is_acknowledged() -> None:
    destination = Destination(failures=10)
    dispatcher, metrics, _ = make(destination=destination)
    with pytest.raises(DestinationError):
        await dispatcher.give_up(gave_up(), stopping=lambda: True, sleep=never_sleep)
    assert counts(metrics)["dropped"] == 3
    assert destination.delivered == []


async def test_process_ordered_gives_up_through_the_destination_before_finishing() -> None:
    failed = result(Outcome.FUNCTION_ERROR, error_type="ValueError", message="poison")
    destination = Destination(failures=0)
    dispatcher, metrics, _ = make(failed, destination=destination)
    finished: list[list[str]] = []

    async def finish(records: Sequence[Rec]) -> None:
        assert destination.delivered, "finished before the failure record was delivered"
        finished.append([r.id for r in records])

    report = await dispatcher.process_ordered(
        RECORDS, finished=finish, stopping=lambda: False, sleep=never_sleep
    )
    assert report.complete
    assert finished == [["a", "b", "c"]]
    assert counts(metrics)["invoked"] == 3
    assert counts(metrics)["dropped"] == 0
