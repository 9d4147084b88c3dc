"""The visibility heartbeat: an invocation three times longer than the queue's
visibility timeout, and no message delivered twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from test_sqs_support import (
    create_queue,
    delivered,
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
from pumphouse.pollers.base import MappingContext
from pumphouse.pollers.sqs import SqsPoller
from pumphouse.service import PollerFactory


async def test_long_invocation_keeps_its_messages_hidden(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    pollers: list[SqsPoller] = []

    def factory(source: str) -> PollerFactory:
        def build(ctx: MappingContext) -> SqsPoller:
            # One receive loop with 1 s long polls: it asks for the new visibility
            # timeout within a second, and no other loop races it on moto.
            poller = SqsPoller(
                ctx, sample_interval=0.2, max_wait_seconds=1, initial_pollers=1, max_pollers=1
            )
            pollers.append(poller)
            return poller

        return build

    async with sqs_client(moto_server.url) as sqs:
        # The mapping starts against an 8 s visibility timeout (>= the function's 8 s
        # Timeout, so it is allowed to start) ...
        url = await create_queue(sqs, unique_name, visibility=8)
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={
                "slow": function(
                    "sqs_handlers.record", tmp_path, timeout=8, variables={"SLEEP": "6"}
                )
            },
            mappings=[{"FunctionName": "slow", "EventSourceArn": queue_arn(unique_name)}],
        )
        async with running(config, factory=factory) as service:
            await eventually(lambda: bool(pollers) and pollers[0].queue is not None)
            # ... then the queue's visibility timeout drops to 2 s: each invocation now
            # runs three times as long as a message stays hidden.
            await sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "2"})
            await eventually(lambda: pollers[0].visibility_timeout == 2, what="the new VT")
            await asyncio.sleep(1.2)  # the loop's 1 s long poll now asks for the new VT
            ids = await send_bodies(sqs, url, [f"m{i}" for i in range(5)])
            await eventually(
                lambda: metric(service, "pumphouse_concurrent_executions", function="slow") >= 1,
                what="the invocation to start",
            )
            await asyncio.sleep(4.0)  # twice the visibility timeout, mid-invocation
            # Without the heartbeat all five would be visible again by now.
            assert await queue_counts(sqs, url) == (0, 5)
            labels = mapping_labels(service)
            await eventually(
                lambda: metric(service, "pumphouse_deleted_events_total", **labels) >= 5,
                what="5 deletes",
            )
            extensions = metric(service, "pumphouse_sqs_visibility_extensions_total", **labels)
            polled = metric(service, "pumphouse_polled_events_total", **labels)
        # Shutdown drained every in-flight batch: a duplicate would be in the log now.
        seen = Counter(r["id"] for r in delivered(tmp_path, "slow"))
        assert sorted(seen) == sorted(ids)
        assert set(seen.values()) == {1}
        assert {r["count"] for r in delivered(tmp_path, "slow")} == {1}
        assert polled == 5  # no message was received a second time
        assert extensions >= 5  # each message extended at least once
        assert await queue_counts(sqs, url) == (0, 0)
