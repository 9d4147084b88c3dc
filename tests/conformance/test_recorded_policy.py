"""Recorded error-handling scenarios of Kinesis and DynamoDB Streams, replayed through
``policy.process_ordered_batch`` (the algorithm every ordered source shares), with the
failure records built by ``destinations`` as the pollers build them.

The recorded handler's behaviour is replayed as the response it returned; the clock and
the back-off sleeps are simulated, so a scenario that waited a minute on AWS runs here
in microseconds. What a poller adds (reading, checkpointing, delivery) is covered end to
end in ``test_recorded_e2e.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from conformance_support import params, same_keys

from pumphouse.pollers import shapes
from pumphouse.pollers.batching import assemble_event
from pumphouse.pollers.destinations import s3_failure_object, stream_failure_record_for
from pumphouse.pollers.policy import (
    AttemptResult,
    GiveUp,
    RetryPolicy,
    classify_invocation,
    process_ordered_batch,
)
from pumphouse.pollers.responses import stream_item_id

NOW = 1_764_085_000.0  # 2025-11-25, when most of these were validated
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"


@dataclass(frozen=True)
class Record:
    index: int
    seq: str
    arrival: float
    event_record: dict[str, Any]


@dataclass(frozen=True)
class Result:
    """What :func:`classify_invocation` reads of a runtime result."""

    ok: bool
    payload: Any
    function_error: str | None = None
    function_ran: bool = True
    request_id: str | None = "c9b8fa9f-5a7f-4a3b-af9c-0c604cde93a5"


def _records(source: str, count: int, *, expired: Sequence[int], age: float) -> list[Record]:
    out = []
    for i in range(count):
        seq = f"4959033827149025660855969253836157109592157598913658{8800 + i}"
        arrival = NOW - (age + 1 if i in expired else 1.0)
        if source == "kinesis":
            event_record = shapes.kinesis_record(
                {"SequenceNumber": seq, "ApproximateArrivalTimestamp": arrival,
                 "Data": json.dumps({"should_fail": False}).encode(), "PartitionKey": f"test_{i}"},
                shard_id="shardId-000000000000",
                stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
                region="us-east-1",
                invoke_identity_arn="arn:aws:iam::123456789012:role/r",
            )
        else:
            event_record = shapes.dynamodb_record(
                {"eventID": f"e{i}", "eventName": "INSERT",
                 "dynamodb": {"ApproximateCreationDateTime": arrival,
                              "Keys": {"my_partition_key": {"S": f"testId{i}"}},
                              "SequenceNumber": seq, "SizeBytes": 58,
                              "StreamViewType": "NEW_IMAGE"}},
                stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/x",
                region="us-east-1",
            )
        out.append(Record(i, seq, arrival, event_record))
    return out


@dataclass
class Replay:
    """Runs the recorded scenario through the policy and keeps what happened."""

    case: dict[str, Any]
    clock: float = NOW
    invoked: list[list[int]] = field(default_factory=list)
    given_up: list[GiveUp[Record]] = field(default_factory=list)
    failure_records: list[dict[str, Any]] = field(default_factory=list)
    s3_objects: list[bytes] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.case["id"].split(".", 1)[0]

    @property
    def setup(self) -> dict[str, Any]:
        return dict(self.case["setup"])

    def policy(self) -> RetryPolicy:
        setup = self.setup
        return RetryPolicy.from_mapping(
            maximum_retry_attempts=setup.get("max_retry_attempts", -1),
            maximum_record_age_in_seconds=setup.get("max_record_age", -1),
            function_response_types=(
                ["ReportBatchItemFailures"] if setup.get("report_batch_item_failures") else []
            ),
        )

    def respond(self, batch: Sequence[Record]) -> Result:
        setup = self.setup
        if "report" in setup:
            failed = [{"itemIdentifier": r.seq} for r in batch if r.index in setup["report"]]
            return Result(ok=True, payload={"batchItemFailures": failed})
        if setup.get("response") == "raise":
            return Result(ok=False, payload=None, function_error="Unhandled")
        return Result(ok=True, payload=setup.get("response"))

    async def run(self) -> None:
        setup = self.setup
        policy = self.policy()
        records = _records(
            self.source,
            setup["records"],
            expired=setup.get("expired", [0] if "record_age_at_start" in setup else []),
            age=float(setup.get("max_record_age", 60)),
        )
        size = setup["batch_size"]
        for start in range(0, len(records), size):
            await self._run_batch(records[start : start + size], policy)

    async def _run_batch(self, batch: Sequence[Record], policy: RetryPolicy) -> None:
        async def invoke(part: Sequence[Record]) -> AttemptResult:
            self.invoked.append([r.index for r in part])
            return classify_invocation(
                self.respond(part), policy=policy, batch_ids=[r.seq for r in part],
                id_of=stream_item_id,
            )

        async def give_up(gave_up: GiveUp[Record]) -> None:
            self.given_up.append(gave_up)
            record = stream_failure_record_for(
                gave_up,
                source="kinesis" if self.source == "kinesis" else "dynamodb",
                function_arn=FUNCTION_ARN,
                shard_id="shardId-000000000000",
                stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
                sequence_number=lambda r: r.seq,
                arrival=lambda r: r.arrival,
                timestamp=self.clock,
            )
            self.failure_records.append(record)
            event = assemble_event([orjson.dumps(r.event_record) for r in gave_up.records])
            self.s3_objects.append(s3_failure_object(record, payload=event))

        async def finished(part: Sequence[Record]) -> None:
            return None

        async def sleep(delay: float) -> None:
            self.clock += delay

        await process_ordered_batch(
            batch, policy=policy, invoke=invoke, give_up=give_up, finished=finished,
            record_arrival=lambda r: r.arrival, record_id=lambda r: r.seq,
            now=lambda: self.clock, sleep=sleep,
        )


def _check_failure(recorded: dict[str, Any], ours: dict[str, Any]) -> None:
    same_keys(recorded["keys"], list(ours))
    same_keys(recorded["requestContext_keys"], list(ours["requestContext"]))
    assert ours["requestContext"]["condition"] == recorded["condition"]
    assert ours.get("responseContext") == recorded["responseContext"]
    info = ours[recorded["batch_info_key"]]
    same_keys(recorded["batch_info_keys"], list(info))
    assert info["batchSize"] == recorded["batchSize"]
    assert ours["version"] == recorded["version"]


@pytest.mark.parametrize("case", params("policy"))
async def test_recorded_error_handling(case: dict[str, Any]) -> None:
    replay = Replay(case)
    await replay.run()
    facts = case["facts"]
    if "invocations" in facts:
        assert len(replay.invoked) == facts["invocations"]
    if "deliveries_per_record" in facts:
        per_record = [sum(run.count(i) for run in replay.invoked) for i in range(6)]
        assert per_record == facts["deliveries_per_record"]
    recorded_failures = facts.get("failures")
    if recorded_failures is None and "failure" in facts:
        recorded_failures = [facts["failure"]]
    if recorded_failures is None and "condition" in facts:
        recorded_failures = [facts]
    assert recorded_failures is not None
    written = replay.failure_records
    if case["setup"].get("destination") == "s3":
        written = [json.loads(body) for body in replay.s3_objects]
    assert len(written) == len(recorded_failures)
    for recorded, ours in zip(recorded_failures, written, strict=True):
        _check_failure(recorded, ours)
        count = ours["requestContext"]["approximateInvokeCount"]
        if case["id"] == "kinesis.record_age.expire-while-retrying":
            # AWS wrote 8: how many retries fit in 60 s depends on AWS's own back-off
            # schedule. What carries over is the rule: the attempt that was due.
            assert recorded["approximateInvokeCount"] > 1
            assert count == len(replay.invoked) + 1
        else:
            assert count == recorded["approximateInvokeCount"]


@pytest.mark.parametrize("case", params("destination"))
async def test_recorded_failure_record_as_written_to_its_destination(case: dict[str, Any]) -> None:
    replay = Replay(case)
    await replay.run()
    facts = case["facts"]
    if case["setup"]["destination"] != "s3":
        _check_failure(facts, replay.failure_records[0])  # SQS / SNS: the record as built
        return
    (body,) = replay.s3_objects
    written = json.loads(body)
    assert list(written) == facts["keys"]
    assert list(written["requestContext"]) == facts["requestContext_keys"]
    assert list(written["responseContext"]) == list(facts["responseContext"])
    assert written["responseContext"] == facts["responseContext"]
    assert list(written[facts["batch_info_key"]]) == facts["batch_info_keys"]
    assert isinstance(written["payload"], str)  # escaped JSON, see s3_failure_object
    payload = json.loads(written["payload"])
    assert list(payload) == facts["payload_keys"]
    same_keys(facts["payload_record_keys"], list(payload["Records"][0]))
