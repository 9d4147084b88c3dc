"""Positions that no longer exist: the pure decisions and the commit fence."""

from __future__ import annotations

import pytest

from pumphouse.pollers.positions import (
    CommitFence,
    PositionReset,
    check_kafka_position,
    check_stream_checkpoint,
)


@pytest.mark.parametrize(
    ("position", "start", "end"),
    [(0, 0, 0), (5, 0, 10), (10, 0, 10), (100, 100, 100), (7, None, None)],
)
def test_a_position_inside_the_log_is_kept(position: int, start: int | None, end: int | None) -> None:
    assert check_kafka_position(position=position, log_start=start, log_end=end) is None


def test_behind_the_log_start_resumes_there_counting_what_retention_removed() -> None:
    decision = check_kafka_position(position=40, log_start=100, log_end=250)
    assert decision is not None
    assert decision.reason is PositionReset.BEHIND_LOG_START
    assert (decision.resume_at, decision.records_lost) == (100, 60)


def test_ahead_of_the_log_end_resumes_at_the_log_s_beginning_not_its_end() -> None:
    decision = check_kafka_position(position=900, log_start=3, log_end=120)
    assert decision is not None
    assert decision.reason is PositionReset.AHEAD_OF_LOG_END
    assert (decision.resume_at, decision.records_lost) == (3, 0)


def test_a_checkpoint_of_the_current_stream_is_kept() -> None:
    assert (
        check_stream_checkpoint(
            shard_id="s-1",
            sequence_number="42",
            checkpoint_stream_created=1700000000.5,
            stream_created=1700000000.5,
            shard_in_stream=True,
        )
        is None
    )


def test_a_checkpoint_without_a_stored_creation_time_belongs_to_the_current_stream() -> None:
    assert (
        check_stream_checkpoint(
            shard_id="s-1",
            sequence_number="42",
            checkpoint_stream_created=None,
            stream_created=1700000000.0,
            shard_in_stream=True,
        )
        is None
    )


@pytest.mark.parametrize(
    ("created", "in_stream", "rejected", "reason"),
    [
        (1.0, True, False, PositionReset.EARLIER_STREAM),
        (1.0, False, True, PositionReset.EARLIER_STREAM),  # the incarnation explains all
        (2.0, False, False, PositionReset.SHARD_NOT_IN_STREAM),
        (2.0, True, True, PositionReset.SEQUENCE_REJECTED),
    ],
)
def test_stream_checkpoints_that_no_longer_exist_start_at_trim_horizon(
    created: float, in_stream: bool, rejected: bool, reason: PositionReset
) -> None:
    decision = check_stream_checkpoint(
        shard_id="s-1",
        sequence_number="42",
        checkpoint_stream_created=created,
        stream_created=2.0,
        shard_in_stream=in_stream,
        sequence_rejected=rejected,
    )
    assert decision is not None
    assert (decision.reason, decision.position) == (reason, "TRIM_HORIZON")


def test_commit_fence_drops_positions_recorded_under_another_generation() -> None:
    fence: CommitFence[str] = CommitFence()
    fence.record("p0", (7, 1))
    fence.record("p1", (7, 1))
    fence.record("p1", (1, 2))  # finished again after the group moved on: the latest counts
    assert fence.admit({"p0": 500, "p1": 30}, (1, 2)) == (["p1"], ["p0"])
    assert fence.admit({"p0": 500, "p1": 30}, (7, 1)) == (["p0"], ["p1"])
    fence.forget("p0")
    assert fence.admit({"p0": 500}, (1, 2)) == (["p0"], [])  # nothing recorded: not fenced


def test_a_checkpoint_of_a_shard_no_longer_listed_is_counted_once() -> None:
    from prometheus_client import CollectorRegistry
    from structlog.testing import capture_logs

    from pumphouse.pollers.stream_positions import report_vanished
    from pumphouse.state import Checkpoint
    from pumphouse.telemetry.metrics import MappingMetrics, Metrics

    metrics = Metrics(CollectorRegistry())
    mapping = MappingMetrics(metrics, mapping="m", function="f", source="kinesis")
    checkpoints = {
        "s-0": Checkpoint(sequence_number="5"),  # trimmed away before its end
        "s-1": Checkpoint(sequence_number="9", shard_ended=True),  # read to its end
        "s-2": Checkpoint(sequence_number="7"),  # still listed
    }
    reported: set[str] = set()
    import structlog

    logger = structlog.get_logger("test")
    with capture_logs() as logs:
        report_vanished(checkpoints, listed=set(), reported=reported, metrics=mapping, logger=logger)
        assert reported == set()  # nothing listed yet: no verdict
        for _ in range(2):
            report_vanished(
                checkpoints, listed={"s-2"}, reported=reported, metrics=mapping, logger=logger
            )
    assert reported == {"s-0"}
    assert [entry["reason"] for entry in logs] == ["shard_not_in_stream"]
    assert metrics.registry.get_sample_value(
        "pumphouse_position_resets_total",
        {"mapping": "m", "function": "f", "source": "kinesis", "reason": "shard_not_in_stream"},
    ) == 1.0
