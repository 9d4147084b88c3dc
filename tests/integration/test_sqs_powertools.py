"""A real Lambda handler written with aws-lambda-powertools' ``BatchProcessor``
(``EventType.SQS``) and ``process_partial_response``: the one failing record, and only
it, is retried."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from test_sqs_support import (
    ONE_LOOP,
    create_queue,
    eventually,
    function,
    handler_log,
    make_config,
    queue_arn,
    queue_counts,
    running,
    send_bodies,
    sqs_client,
)

from pumphouse.devstack import MotoServer


async def test_powertools_partial_response_retries_exactly_the_failed_record(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name, visibility=2)
        bodies = ["one", "two", "poison", "four", "five"]
        ids = await send_bodies(sqs, url, bodies)
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"pt": function("powertools_handler.handler", tmp_path, timeout=2)},
            mappings=[{
                "FunctionName": "pt",
                "EventSourceArn": queue_arn(unique_name),
                "BatchSize": 10,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }],
        )
        async with running(config, factory=ONE_LOOP):
            await eventually(lambda: len(handler_log(tmp_path, "pt")) >= 6, what="the retry")
            await eventually(lambda: _empty(sqs, url), what="every message deleted")
    calls = handler_log(tmp_path, "pt")
    poison = ids[bodies.index("poison")]
    assert Counter(c["id"] for c in calls) == {**dict.fromkeys(ids, 1), poison: 2}
    retried = [c for c in calls if c["count"] > 1]
    assert [(c["id"], c["ok"]) for c in retried] == [(poison, True)]
    assert json.dumps(sorted(c["body"] for c in calls if c["ok"])) == json.dumps(sorted(bodies))


async def _empty(sqs: object, url: str) -> bool:
    return await queue_counts(sqs, url) == (0, 0)
