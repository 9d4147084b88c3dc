"""Shutdown drains: the batch running when SIGTERM comes finishes and is deleted; a queue
deleted under a running mapping makes it a PROBLEM, nothing else."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from test_sqs_support import (
    ONE_LOOP,
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
    sqs_pollers,
)

from pumphouse.devstack import MotoServer
from pumphouse.service import Service
from pumphouse.telemetry.metrics import Metrics

#: 1 s long polls, so the loop notices a deleted queue quickly.
SHORT_POLLS = sqs_pollers(max_wait_seconds=1, initial_pollers=1, max_pollers=1)


async def test_shutdown_lets_the_running_batch_finish_and_deletes_it(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name, visibility=10)
        ids = await send_bodies(sqs, url, [f"m{i}" for i in range(5)])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={
                "slow": function("sqs_handlers.record", tmp_path, variables={"SLEEP": "1.5"})
            },
            mappings=[{"FunctionName": "slow", "EventSourceArn": queue_arn(unique_name)}],
        )
        service = Service(config, metrics=Metrics(CollectorRegistry()), factory=ONE_LOOP)
        await service.start()
        try:
            await eventually(
                lambda: metric(service, "pumphouse_concurrent_executions", function="slow") >= 1,
                what="the batch to be running",
            )
            assert delivered(tmp_path, "slow") == []  # still sleeping
        finally:
            service.stopping.set()
            await service.shutdown()
        labels = mapping_labels(service)
        assert sorted(r["id"] for r in delivered(tmp_path, "slow")) == sorted(ids)
        assert metric(service, "pumphouse_deleted_events_total", **labels) == 5
        assert metric(service, "pumphouse_pollers_active", **labels) == 0
        assert await queue_counts(sqs, url) == (0, 0)
        (view,) = service.mapping_views()
        assert view["State"] == "Disabled"


async def test_queue_deleted_under_a_running_mapping_is_a_problem(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        await send_bodies(sqs, url, ["before"])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"rec": function("sqs_handlers.record", tmp_path)},
            mappings=[{"FunctionName": "rec", "EventSourceArn": queue_arn(unique_name)}],
        )
        async with running(config, factory=SHORT_POLLS) as service:
            await eventually(lambda: len(delivered(tmp_path, "rec")) == 1)
            await sqs.delete_queue(QueueUrl=url)
            await eventually(
                lambda: "does not exist" in str(service.mapping_views()[0]["LastProcessingResult"]),
                what="the problem to show",
            )
            labels = mapping_labels(service)
            assert metric(service, "pumphouse_mapping_restarts_total", **labels) >= 1
