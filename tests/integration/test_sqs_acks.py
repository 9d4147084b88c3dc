"""What SQS messages are deleted: success, failure (redrive to the DLQ), the partial
batch response matrix of docs/behaviour.md §3, and filtered-out messages."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from structlog.testing import capture_logs
from test_sqs_support import (
    ONE_LOOP,
    create_queue,
    delivered,
    drain,
    eventually,
    function,
    make_config,
    mapping_labels,
    metric,
    queue_arn,
    queue_counts,
    running,
    send_bodies,
    sqs_client,
)

from pumphouse.devstack import MotoServer


async def test_success_deletes_and_status_is_ok(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        await send_bodies(sqs, url, [f"m{i}" for i in range(25)])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"rec": function("sqs_handlers.record", tmp_path)},
            mappings=[{"FunctionName": "rec", "EventSourceArn": queue_arn(unique_name)}],
        )
        async with running(config, factory=ONE_LOOP) as service:
            labels = mapping_labels(service)
            await eventually(
                lambda: metric(service, "pumphouse_deleted_events_total", **labels) == 25,
                what="25 deletes",
            )
            (view,) = service.mapping_views()
            assert view["LastProcessingResult"] == "OK"
            assert view["State"] == "Enabled"
            assert metric(service, "pumphouse_batch_size_records_count", **labels) >= 3
            assert metric(service, "pumphouse_record_age_seconds_count", **labels) >= 3
            assert metric(service, "pumphouse_pollers_active", **labels) >= 1
        assert await queue_counts(sqs, url) == (0, 0)
        assert len(delivered(tmp_path, "rec")) == 25


async def test_failures_return_after_visibility_then_go_to_the_dlq(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    dlq = f"{unique_name}-dlq"
    async with sqs_client(moto_server.url) as sqs:
        dlq_url = await create_queue(sqs, dlq)
        url = await create_queue(sqs, unique_name, visibility=1, dlq=dlq, max_receive=2)
        ids = await send_bodies(sqs, url, [f"m{i}" for i in range(10)])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"fail": function("sqs_handlers.always_fail", tmp_path, timeout=1)},
            mappings=[{"FunctionName": "fail", "EventSourceArn": queue_arn(unique_name)}],
        )
        async with running(config, factory=ONE_LOOP) as service:
            await eventually(
                lambda: len(delivered(tmp_path, "fail")) >= 20, what="two deliveries each"
            )
            await eventually(
                lambda: _visible(sqs, dlq_url, 10), within=20, what="10 messages in the DLQ"
            )
            (view,) = service.mapping_views()
            assert view["LastProcessingResult"] == "PROBLEM: Function call failed"
            labels = mapping_labels(service)
            assert metric(service, "pumphouse_failed_invoke_events_total", **labels) == 20
            assert metric(service, "pumphouse_deleted_events_total", **labels) == 0
        seen = Counter((r["id"], r["count"]) for r in delivered(tmp_path, "fail"))
        assert set(seen) == {(i, n) for i in ids for n in (1, 2)}  # each id twice, in order
        assert all(times == 1 for times in seen.values())  # no duplicate delivery
        moved = await drain(sqs, dlq_url)
        assert sorted(m["MessageId"] for m in moved) == sorted(ids)  # nothing lost
        assert await queue_counts(sqs, url) == (0, 0)


async def _visible(sqs: object, url: str, count: int) -> bool:
    visible, _ = await queue_counts(sqs, url)
    return visible == count


SUCCESS_ROWS = [
    "null", "empty_string", "empty_object", "empty_list", "empty_failures", "null_failures",
    "no_key", "plain_string",
]
FAILURE_ROWS = [
    "raise", "timeout", "crash", "garbage", "empty_id", "null_id", "missing_id",
    "unknown_id", "failures_not_a_list", "invalid_json", "report_self",
]


async def test_partial_batch_response_matrix(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    """Each row is one message (BatchSize 1). The handler answers as the row says on the
    first delivery and succeeds afterwards: a success row is delivered once, a failure
    row twice."""
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name, visibility=2)
        rows = SUCCESS_ROWS + FAILURE_ROWS
        ids = await send_bodies(sqs, url, [json.dumps({"row": row}) for row in rows])
        row_of = dict(zip(ids, rows, strict=True))
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"respond": function("sqs_handlers.respond", tmp_path, timeout=1)},
            mappings=[{
                "FunctionName": "respond",
                "EventSourceArn": queue_arn(unique_name),
                "BatchSize": 1,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }],
        )
        with capture_logs() as logs:
            async with running(config, factory=ONE_LOOP):
                await eventually(
                    lambda: len(delivered(tmp_path, "respond"))
                    >= len(SUCCESS_ROWS) + 2 * len(FAILURE_ROWS),
                    within=40,
                    what="every row",
                )
                await eventually(
                    lambda: _empty(sqs, url), within=20, what="the queue to empty"
                )
    deliveries = Counter(row_of[r["id"]] for r in delivered(tmp_path, "respond"))
    assert {row: deliveries[row] for row in SUCCESS_ROWS} == dict.fromkeys(SUCCESS_ROWS, 1)
    assert {row: deliveries[row] for row in FAILURE_ROWS} == dict.fromkeys(FAILURE_ROWS, 2)
    unusable = [e for e in logs if e["event"].startswith("unusable batch item failures")]
    reasons = " | ".join(e["reason"] for e in unusable)
    assert len(unusable) == 6, reasons  # empty, null, missing, unknown, not a list, not JSON
    assert "not valid JSON" in reasons and "names no record of the batch" in reasons
    failed = [e for e in logs if e["event"].startswith("batch failed")]
    assert {e["error_type"] for e in failed} >= {
        "ValueError", "Sandbox.Timedout", "Runtime.ExitError", "Runtime.MarshalError",
    }


async def _empty(sqs: object, url: str) -> bool:
    return await queue_counts(sqs, url) == (0, 0)


async def test_partial_failures_in_big_batches_keep_exactly_the_reported(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name, visibility=1)
        bodies = [json.dumps({"n": i, "fail": i % 7 == 3}) for i in range(30)]
        ids = await send_bodies(sqs, url, bodies)
        failing = {ids[i] for i in range(30) if i % 7 == 3}
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"marked": function("sqs_handlers.fail_marked", tmp_path, timeout=1)},
            mappings=[{
                "FunctionName": "marked",
                "EventSourceArn": queue_arn(unique_name),
                "BatchSize": 10,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }],
        )
        async with running(config, factory=ONE_LOOP) as service:
            await eventually(
                lambda: len(delivered(tmp_path, "marked")) >= 30 + len(failing), what="retries"
            )
            labels = mapping_labels(service)
            await eventually(
                lambda: metric(service, "pumphouse_deleted_events_total", **labels) == 30,
                what="30 deletes",
            )
            assert await _empty(sqs, url)
    counts = Counter(r["id"] for r in delivered(tmp_path, "marked"))
    assert {i for i, n in counts.items() if n == 2} == failing
    assert {i for i, n in counts.items() if n == 1} == set(ids) - failing


async def test_filtered_out_messages_are_deleted_without_invoking(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        orders = [json.dumps({"type": "order", "n": i}) for i in range(4)]
        others = [json.dumps({"type": "refund", "n": i}) for i in range(3)]
        not_json = ["caf\u00e9 {this is not json", "<xml/>"]
        await send_bodies(sqs, url, orders + others + not_json)
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"rec": function("sqs_handlers.record", tmp_path)},
            mappings=[{
                "FunctionName": "rec",
                "EventSourceArn": queue_arn(unique_name),
                "FilterCriteria": {"Filters": [{"Pattern": '{"body": {"type": ["order"]}}'}]},
            }],
        )
        with capture_logs() as logs:
            async with running(config, factory=ONE_LOOP) as service:
                labels = mapping_labels(service)
                await eventually(
                    lambda: metric(service, "pumphouse_deleted_events_total", **labels) == 9,
                    what="every message deleted",
                )
                assert metric(service, "pumphouse_filtered_out_events_total", **labels) == 5
                assert metric(service, "pumphouse_invoked_events_total", **labels) == 4
        assert sorted(r["body"] for r in delivered(tmp_path, "rec")) == sorted(orders)
        assert await queue_counts(sqs, url) == (0, 0)
    warned = [e for e in logs if e["event"].startswith("messages whose body is not JSON")]
    assert sum(e["count"] for e in warned) == 2
