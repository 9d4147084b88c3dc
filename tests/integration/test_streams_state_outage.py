"""A Redis outage while a stream flows: the service keeps running, nothing is lost.

The state store (checkpoints, leases) goes away mid-stream and comes back. pumphouse must
not crash or acknowledge anything it could not checkpoint; it shows the outage in its
metrics and, once Redis answers again, resumes from the last checkpoint.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from handlers.streams import support as s

from pumphouse.devstack import KinesisMock, RedisServer

pytestmark = pytest.mark.slow


async def test_service_rides_out_a_redis_outage_without_losing_records(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    # Persistent, as production Redis must be: the fencing counters survive a restart.
    redis = RedisServer(persistent=True, workdir=tmp_path / "redis")
    redis.start()
    record_file = tmp_path / "records.jsonl"
    try:
        async with s.client("kinesis", kinesis_mock.url) as kinesis:
            arn = await s.create_stream(kinesis, unique_name, 1)
            config = s.config_yaml(
                settings=s.settings(
                    state_store=redis.url, kinesis_url=kinesis_mock.url, lease_seconds=2.0
                ),
                functions={"f": s.function("recorder.handler", record_file)},
                mappings=[
                    {
                        "FunctionName": "f",
                        "EventSourceArn": arn,
                        "StartingPosition": "TRIM_HORIZON",
                        "BatchSize": 5,
                    }
                ],
            )
            async with s.running(config) as service:
                first = [("k", {"k": "k", "i": i}) for i in range(20)]
                await s.put_records(kinesis, unique_name, first)
                await s.wait_for(
                    lambda: {d["i"] for d in s.delivered(record_file)} >= set(range(20)),
                    what="the first 20 records",
                )

                redis.kill()
                second = [("k", {"k": "k", "i": i}) for i in range(20, 40)]
                await s.put_records(kinesis, unique_name, second)
                await asyncio.sleep(3.0)  # longer than the lease: renewals fail meanwhile
                assert not any(task.done() for task in service._tasks), "a mapping task ended"
                assert s.metric(service, "pumphouse_state_store_errors_total") > 0

                redis.start()
                await s.wait_for(
                    lambda: {d["i"] for d in s.delivered(record_file)} >= set(range(40)),
                    within=45,
                    what="all 40 records after Redis came back",
                )
                # Order per partition key holds across the outage for first deliveries.
                firsts: list[int] = []
                for item in s.delivered(record_file):
                    if item["i"] not in firsts:
                        firsts.append(item["i"])
                assert firsts == list(range(40))
    finally:
        redis.stop()
