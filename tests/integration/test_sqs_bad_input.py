"""Bad input, each handled per spec with a clear log event: a queue that does not exist,
a function timeout above the visibility timeout, a body that is not JSON, a handler that
returns garbage."""

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
    queue_arn,
    queue_counts,
    running,
    send_bodies,
    sqs_client,
)

from pumphouse.devstack import MotoServer
from pumphouse.service import Service


def _view(service: Service, queue: str) -> dict[str, object]:
    return next(v for v in service.mapping_views() if str(v["Label"]).endswith(queue))


async def test_missing_queue_is_a_problem_of_its_mapping_only(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    missing = f"{unique_name}-missing"
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        await send_bodies(sqs, url, ["a", "b", "c"])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"rec": function("sqs_handlers.record", tmp_path)},
            mappings=[
                {"FunctionName": "rec", "EventSourceArn": queue_arn(missing)},
                {"FunctionName": "rec", "EventSourceArn": queue_arn(unique_name)},
            ],
        )
        with capture_logs() as logs:
            async with running(config, factory=ONE_LOOP) as service:
                await eventually(lambda: len(delivered(tmp_path, "rec")) == 3, what="3 messages")
                await eventually(
                    lambda: str(_view(service, missing)["LastProcessingResult"]).startswith(
                        "PROBLEM:"
                    ),
                    what="the missing queue's problem",
                )
                bad = _view(service, missing)
                good = _view(service, unique_name)
        assert "does not exist" in str(bad["LastProcessingResult"])
        assert queue_arn(missing) in str(bad["LastProcessingResult"])
        assert bad["SourceReachable"] is False
        assert good["LastProcessingResult"] == "OK"
        assert good["State"] == "Enabled"
    failures = [e for e in logs if e["event"] == "mapping failed; restarting"]
    assert failures and queue_arn(missing) in failures[0]["error"]


async def test_function_timeout_above_visibility_timeout_refuses_to_start(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name, visibility=2)
        await send_bodies(sqs, url, ["never delivered"])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"rec": function("sqs_handlers.record", tmp_path, timeout=5)},
            mappings=[{"FunctionName": "rec", "EventSourceArn": queue_arn(unique_name)}],
        )
        with capture_logs() as logs:
            async with running(config) as service:
                await eventually(
                    lambda: str(_view(service, unique_name)["LastProcessingResult"]).startswith(
                        "PROBLEM:"
                    )
                )
                result = str(_view(service, unique_name)["LastProcessingResult"])
        assert "function timeout (5 s) exceeds the visibility timeout (2 s)" in result
        assert delivered(tmp_path, "rec") == []
        assert await queue_counts(sqs, url) == (1, 0)  # never received
    assert any(e["event"] == "mapping failed; restarting" for e in logs)


async def test_body_that_is_not_json_is_delivered_as_is_and_fails_a_json_handler(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    dlq = f"{unique_name}-dlq"
    not_json = "\u00ff\u00fe not json {\t\u2028"
    async with sqs_client(moto_server.url) as sqs:
        dlq_url = await create_queue(sqs, dlq)
        url = await create_queue(sqs, unique_name, visibility=1, dlq=dlq, max_receive=1)
        ids = await send_bodies(sqs, url, [json.dumps({"ok": True}), not_json])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"json": function("sqs_handlers.parse_json", tmp_path, timeout=1)},
            mappings=[{
                "FunctionName": "json", "EventSourceArn": queue_arn(unique_name), "BatchSize": 1,
            }],
        )
        with capture_logs() as logs:
            async with running(config, factory=ONE_LOOP):
                await eventually(lambda: _has(sqs, dlq_url, 1), what="the bad body in the DLQ")
        bodies = {r["id"]: r["body"] for r in delivered(tmp_path, "json")}
        assert bodies[ids[1]] == not_json  # delivered byte for byte
        (moved,) = await drain(sqs, dlq_url)
        assert moved["MessageId"] == ids[1] and moved["Body"] == not_json
        assert await queue_counts(sqs, url) == (0, 0)
    failed = [e for e in logs if e["event"].startswith("batch failed")]
    assert failed and failed[0]["error_type"] == "JSONDecodeError"
    assert failed[0]["outcome"] == "function_error"


async def _has(sqs: object, url: str, count: int) -> bool:
    visible, _ = await queue_counts(sqs, url)
    return visible == count


async def test_garbage_response_without_report_batch_item_failures_is_a_success(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    """Lambda only reads the response when ReportBatchItemFailures is on; here the
    handler's unreadable answers are ignored and the messages deleted."""
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name, visibility=2)
        rows = ["invalid_json", "unknown_id", "failures_not_a_list", "report_self"]
        await send_bodies(sqs, url, [json.dumps({"row": row}) for row in rows])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"respond": function("sqs_handlers.respond", tmp_path, timeout=1)},
            mappings=[{
                "FunctionName": "respond", "EventSourceArn": queue_arn(unique_name),
                "BatchSize": 1,
            }],
        )
        async with running(config, factory=ONE_LOOP):
            await eventually(lambda: _empty(sqs, url), what="every message deleted")
        counts = Counter(r["id"] for r in delivered(tmp_path, "respond"))
        assert sorted(counts.values()) == [1, 1, 1, 1]


async def _empty(sqs: object, url: str) -> bool:
    return await queue_counts(sqs, url) == (0, 0)
