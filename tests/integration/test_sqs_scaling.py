"""Scaling: more receive loops while messages wait, never more concurrent invocations than
ScalingConfig.MaximumConcurrency, nor than the function's reserved concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_sqs_support import (
    create_queue,
    delivered,
    eventually,
    function,
    handler_log,
    make_config,
    mapping_labels,
    metric,
    queue_arn,
    running,
    send_bodies,
    sqs_client,
)

from pumphouse.devstack import MotoServer
from pumphouse.service import Service


def most_concurrent(invocations: list[dict[str, Any]]) -> int:
    """The largest number of invocations running at one instant (handler clocks)."""
    edges = sorted(
        [(entry["start"], 1) for entry in invocations]
        + [(entry["end"], -1) for entry in invocations]
    )
    running = peak = 0
    for _, step in edges:  # at equal times the end (-1) sorts first: touching is not overlap
        running += step
        peak = max(peak, running)
    return peak


async def _sample_pollers(service: Service, samples: list[float], stop: asyncio.Event) -> None:
    labels = mapping_labels(service)
    while not stop.is_set():
        samples.append(metric(service, "pumphouse_pollers_active", **labels))
        await asyncio.sleep(0.02)


async def test_scales_up_to_maximum_concurrency_and_never_beyond(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        await send_bodies(sqs, url, [f"m{i}" for i in range(48)])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={
                "slow": function("sqs_handlers.record", tmp_path, variables={"SLEEP": "0.5"})
            },
            mappings=[{
                "FunctionName": "slow",
                "EventSourceArn": queue_arn(unique_name),
                "BatchSize": 1,
                "ScalingConfig": {"MaximumConcurrency": 8},
            }],
        )
        samples: list[float] = []
        stop = asyncio.Event()
        async with running(config) as service:
            sampler = asyncio.create_task(_sample_pollers(service, samples, stop))
            await eventually(lambda: len(delivered(tmp_path, "slow")) >= 48, within=40)
            stop.set()
            await sampler
    peak = most_concurrent(handler_log(tmp_path, "slow"))
    assert peak <= 8
    assert peak > 5  # grew beyond the 5 loops it starts with
    assert max(samples) == 8


async def test_reserved_concurrency_caps_the_loops_and_invocations(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        await send_bodies(sqs, url, [f"m{i}" for i in range(12)])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={
                "slow": function(
                    "sqs_handlers.record",
                    tmp_path,
                    variables={"SLEEP": "0.3"},
                    ReservedConcurrentExecutions=2,
                )
            },
            mappings=[{
                "FunctionName": "slow",
                "EventSourceArn": queue_arn(unique_name),
                "BatchSize": 1,
            }],
        )
        samples: list[float] = []
        stop = asyncio.Event()
        async with running(config) as service:
            sampler = asyncio.create_task(_sample_pollers(service, samples, stop))
            await eventually(lambda: len(delivered(tmp_path, "slow")) >= 12, within=40)
            stop.set()
            await sampler
    assert most_concurrent(handler_log(tmp_path, "slow")) <= 2
    assert max(samples) == 2
