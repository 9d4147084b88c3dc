"""The pure parts of the SQS source: start-up checks, acknowledgement plans, the scaler,
heartbeat timing and receive waits."""

from __future__ import annotations

import pytest

from pumphouse.errors import SourceError
from pumphouse.pollers.responses import PartialFailure, WholeFailure, WholeSuccess
from pumphouse.pollers.sqs import (
    MAX_WAIT_SECONDS,
    Hold,
    PollerScaler,
    QueueInfo,
    VisibilityKeeper,
    check_visibility_timeout,
    chunked,
    heartbeat_timing,
    plan_acknowledgement,
    read_response,
    receive_wait_seconds,
    split_kept_by_group,
)

IDS = ["m0", "m1", "m2", "m3", "m4", "m5"]


# --- start-up check -------------------------------------------------------------------


def test_function_timeout_above_visibility_refuses_to_start() -> None:
    with pytest.raises(SourceError) as caught:
        check_visibility_timeout(
            function_timeout=31, visibility_timeout=30, window=0, queue="arn:q"
        )
    assert caught.value.retryable is False
    assert "exceeds the visibility timeout (30 s) of queue arn:q" in str(caught.value)


def test_visibility_below_advice_warns_and_above_is_silent() -> None:
    warning = check_visibility_timeout(
        function_timeout=10, visibility_timeout=30, window=2, queue="arn:q"
    )
    assert warning is not None and "at least 62 s" in warning
    assert (
        check_visibility_timeout(
            function_timeout=10, visibility_timeout=62, window=2, queue="arn:q"
        )
        is None
    )
    # equal to the timeout is allowed (Lambda's check is "greater than")
    assert check_visibility_timeout(
        function_timeout=30, visibility_timeout=30, window=0, queue="arn:q"
    )


def test_queue_info_reads_attributes() -> None:
    info = QueueInfo.from_attributes(
        url="http://q",
        arn="arn:aws:sqs:us-east-1:000000000000:q.fifo",
        name="q.fifo",
        attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": "45",
            "RedrivePolicy": '{"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": 3}',
        },
    )
    assert info.fifo and info.visibility_timeout == 45
    assert info.redrive_policy == {"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": 3}
    plain = QueueInfo.from_attributes(
        url="u", arn="a", name="q", attributes={"RedrivePolicy": "not json"}
    )
    assert not plain.fifo and plain.visibility_timeout == 30 and plain.redrive_policy is None


# --- acknowledgement --------------------------------------------------------------------


def test_success_deletes_everything_failure_nothing() -> None:
    assert plan_acknowledgement(IDS, WholeSuccess()).delete == tuple(range(6))
    failed = plan_acknowledgement(IDS, WholeFailure("boom"))
    assert failed.delete == () and failed.keep == tuple(range(6))


def test_partial_failure_on_a_standard_queue_keeps_only_the_reported() -> None:
    plan = plan_acknowledgement(IDS, PartialFailure(failed_ids=("m1", "m4")))
    assert plan.keep == (1, 4)
    assert plan.delete == (0, 2, 3, 5)


def test_partial_failure_on_fifo_keeps_the_rest_of_the_group() -> None:
    # The module docstring's example: A1 B1 A2 C1 B2 A3, A2 reported.
    groups = ["A", "B", "A", "C", "B", "A"]
    plan = plan_acknowledgement(IDS, PartialFailure(failed_ids=("m2",)), group_ids=groups)
    assert plan.keep == (2, 5)
    assert plan.delete == (0, 1, 3, 4)


def test_fifo_failures_in_two_groups() -> None:
    groups = ["A", "B", "A", "B", "A", "B"]
    plan = plan_acknowledgement(IDS, PartialFailure(failed_ids=("m1", "m4")), group_ids=groups)
    assert plan.keep == (1, 3, 4, 5)
    assert plan.delete == (0, 2)


def test_fifo_kept_messages_split_into_group_heads_and_tails() -> None:
    assert split_kept_by_group(["A", "B", "A", "A", None], [3, 0, 2, 4]) == ([0, 4], [2, 3])
    assert split_kept_by_group(["A", "B"], []) == ([], [])
    assert split_kept_by_group(["A", "B", "A", "B"], [0, 1, 2, 3]) == ([0, 1], [2, 3])


@pytest.mark.parametrize(
    "payload",
    [None, "", {}, [], {"batchItemFailures": []}, {"batchItemFailures": None}, {"foo": 1}],
)
def test_whole_success_responses(payload: object) -> None:
    assert isinstance(read_response(payload, IDS, report_batch_item_failures=True), WholeSuccess)


@pytest.mark.parametrize(
    "payload",
    [
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"foo": "m1"}]},
        {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
        {"batchItemFailures": "m1"},
        b"{not json",
    ],
)
def test_whole_failure_responses(payload: object) -> None:
    assert isinstance(read_response(payload, IDS, report_batch_item_failures=True), WholeFailure)


def test_responses_are_ignored_without_report_batch_item_failures() -> None:
    payload = {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert isinstance(read_response(payload, IDS, report_batch_item_failures=False), WholeSuccess)
    partial = read_response(payload, IDS, report_batch_item_failures=True)
    assert partial == PartialFailure(failed_ids=("m1",))


def test_chunked_in_tens() -> None:
    assert [len(c) for c in chunked(list(range(23)))] == [10, 10, 3]
    assert list(chunked([])) == []


# --- receive waits and heartbeat timing -----------------------------------------------------


def test_receive_wait_is_a_full_long_poll_without_an_open_batch() -> None:
    assert receive_wait_seconds(None, 100.0) == MAX_WAIT_SECONDS


def test_receive_wait_is_bounded_by_the_window() -> None:
    assert receive_wait_seconds(105.0, 100.0) == 5
    assert receive_wait_seconds(100.0 + 1.9, 100.0) == 1
    assert receive_wait_seconds(100.5, 100.0) == 0  # under a second left: short poll
    assert receive_wait_seconds(99.0, 100.0) == 0
    assert receive_wait_seconds(400.0, 100.0) == MAX_WAIT_SECONDS


@pytest.mark.parametrize("vt", [1, 2, 4, 30, 900, 43200])
def test_heartbeat_leaves_at_least_one_tick_before_expiry(vt: int) -> None:
    tick, margin = heartbeat_timing(vt)
    assert 0.05 <= tick <= 5.0
    assert margin >= 2 * tick
    assert margin <= vt  # extending never happens before the message was even hidden


def test_keeper_picks_holds_near_expiry_and_drops_empty_ones() -> None:
    async def change(handles: list[str], seconds: int) -> list[str]:
        return handles

    extended: list[int] = []
    keeper = VisibilityKeeper(
        change_visibility=change, visibility_timeout=lambda: 4, on_extended=extended.append
    )
    near = Hold(["a", "b"], visible_at=101.5)  # margin for VT 4 is 2 s
    far = Hold(["c"], visible_at=110.0)
    empty = Hold([], visible_at=100.5)
    for hold in (near, far, empty):
        keeper.track(hold)
    assert keeper.due(now=100.0) == [near]
    assert empty not in keeper.holds


async def test_keeper_extends_and_forgets_handles_that_are_gone() -> None:
    calls: list[tuple[list[str], int]] = []

    async def change(handles: list[str], seconds: int) -> list[str]:
        calls.append((sorted(handles), seconds))
        return [h for h in handles if h != "gone"]

    extended: list[int] = []
    keeper = VisibilityKeeper(
        change_visibility=change, visibility_timeout=lambda: 3, on_extended=extended.append
    )
    hold = Hold(["a", "gone"], visible_at=0.0)  # long expired by monotonic time
    keeper.track(hold)
    await keeper.extend_due()
    assert calls == [(["a", "gone"], 3)]
    assert hold.handles == {"a"}
    assert extended == [1]
    assert hold.visible_at > 0.0


# --- scaling ---------------------------------------------------------------------------


def test_scaler_starts_at_five_within_the_limit() -> None:
    assert PollerScaler(maximum=100).target == 5
    assert PollerScaler(maximum=2).target == 2
    assert PollerScaler(maximum=100, initial=1).target == 1


def test_scaler_grows_on_full_receives_at_most_five_per_second() -> None:
    scaler = PollerScaler(maximum=8)
    assert scaler.on_full(10.0)
    assert not scaler.on_full(10.1)  # within 0.2 s of the last step
    assert scaler.on_full(10.25)
    assert scaler.on_full(10.5)
    assert scaler.target == 8
    assert not scaler.on_full(20.0)  # never above the maximum
    assert scaler.target == 8


def test_scaler_shrinks_on_empty_polls_but_keeps_one() -> None:
    scaler = PollerScaler(maximum=10, initial=3)
    assert scaler.on_empty(1.0)
    assert not scaler.on_empty(1.5)  # at most one per second
    assert scaler.on_empty(2.0)
    assert scaler.target == 1
    assert not scaler.on_empty(10.0)
    assert scaler.target == 1


def test_scaler_follows_a_lowered_maximum() -> None:
    scaler = PollerScaler(maximum=10)
    scaler.set_maximum(3)
    assert scaler.target == 3 and scaler.maximum == 3
    assert not scaler.on_full(100.0)
