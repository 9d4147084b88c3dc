"""A Kinesis mapping changed through the API while records flow (kinesis-mock, boto3's
``lambda`` client): each update drains the in-flight batch, keeps the checkpoint, and
restarts only that mapping, so no record is lost and none is delivered twice."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from handlers.streams import support as s

from pumphouse.devstack import KinesisMock

pytestmark = pytest.mark.slow

KEY, SECRET = "AKIDSTREAMS", "streams-secret"


async def test_kinesis_mapping_updated_while_records_flow(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    settings = {
        **s.settings(state_store=f"sqlite:///{tmp_path}/state.db", kinesis_url=kinesis_mock.url),
        "ApiAddress": "127.0.0.1:0",
        "ApiCredentials": [{"AccessKeyId": KEY, "SecretAccessKey": SECRET}],
    }
    config = s.config_yaml(
        settings=settings,
        functions={"f": s.function("recorder.handler", record_file, SLEEP_SECONDS="0.05")},
        mappings=[],
    )
    total = 600
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 2)
        async with s.running(config) as service:
            assert service.api is not None
            client: Any = boto3.client(
                "lambda",
                endpoint_url=f"http://127.0.0.1:{service.api.port}",
                region_name=s.REGION,
                aws_access_key_id=KEY,
                aws_secret_access_key=SECRET,
                config=BotoConfig(retries={"max_attempts": 1}),
            )
            created = await asyncio.to_thread(
                client.create_event_source_mapping,
                FunctionName="f",
                EventSourceArn=arn,
                StartingPosition="TRIM_HORIZON",
                BatchSize=5,
            )
            uuid = created["UUID"]

            async def produce() -> None:
                for start in range(0, total, 20):
                    batch = [(f"key-{i % 7}", {"i": i}) for i in range(start, start + 20)]
                    await s.put_records(kinesis, unique_name, batch)
                    await asyncio.sleep(0.05)

            producer = asyncio.create_task(produce())
            sizes = [7, 20, 3, 50]
            for size in sizes:
                # Each update waits until the previous one is applied and records flow.
                seen = len(s.delivered(record_file))
                await s.wait_for(
                    lambda seen=seen: len(s.delivered(record_file)) > seen + 10,
                    what="records flowing",
                )
                await s.wait_for(
                    lambda: service.statuses[uuid].state.value == "Enabled",
                    what="the mapping running",
                )
                reply = await asyncio.to_thread(
                    client.update_event_source_mapping, UUID=uuid, BatchSize=size
                )
                assert reply["State"] == "Updating"
                assert reply["BatchSize"] == size
            await producer
            await s.wait_for(
                lambda: {x["i"] for x in s.delivered(record_file)} == set(range(total)),
                within=60,
                what="every record delivered",
            )
            got = await asyncio.to_thread(client.get_event_source_mapping, UUID=uuid)
            assert got["BatchSize"] == sizes[-1]
    lines = s.read_lines(record_file)
    delivered = [x["i"] for line in lines for x in line["items"]]
    twice = {i: n for i, n in Counter(delivered).items() if n > 1}
    assert twice == {}, f"delivered more than once: {json.dumps(twice)}"
    # Records of one partition key arrive in order across the restarts.
    by_key: dict[str, list[int]] = {}
    for line in lines:
        for x in line["items"]:
            by_key.setdefault(x["key"], []).append(x["i"])
    assert all(values == sorted(values) for values in by_key.values())
    # Batches after the last update are no larger than its BatchSize; earlier ones no
    # larger than the largest size ever set.
    assert max(len(line["items"]) for line in lines) <= max(sizes)
