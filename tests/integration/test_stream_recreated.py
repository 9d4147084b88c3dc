"""A stream or table deleted and recreated under the same name while its checkpoints
survive (a second ``make run``: the SQLite file stays, the local servers start empty):
the old checkpoints never mean "no records, no error" nor an endless restart. The shard
starts at TRIM_HORIZON of the new stream, logged and counted."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from handlers.streams import support as s

from pumphouse.devstack import KinesisMock, MotoServer

pytestmark = pytest.mark.slow


def _mapping(arn: str, mapping_uuid: str) -> dict[str, Any]:
    # LATEST: a mapping's first start would skip what is there; a reset never does.
    return {"FunctionName": "f", "EventSourceArn": arn, "StartingPosition": "LATEST",
            "UUID": mapping_uuid}  # fmt: skip


async def _table(ddb: Any, name: str) -> str:
    await ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    return str((await ddb.describe_table(TableName=name))["Table"]["LatestStreamArn"])


async def test_dynamodb_table_recreated_starts_the_new_stream_from_its_beginning(
    moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    mapping_uuid = str(uuid.uuid4())
    settings = s.settings(state_store=f"sqlite:///{tmp_path}/state.db", moto_url=moto_server.url)
    functions = {"f": s.function("recorder.handler", record_file)}
    async with s.client("dynamodb", moto_server.url) as ddb:
        first = await _table(ddb, unique_name)
        config = s.config_yaml(
            settings=settings, functions=functions, mappings=[_mapping(first, mapping_uuid)]
        )
        async with s.running(config) as service:
            await s.wait_for(lambda: service.readiness()[0], what="ready")
            await asyncio.sleep(1.0)  # LATEST: the shard iterator is taken before the puts
            for n in range(5):
                await ddb.put_item(TableName=unique_name, Item={"id": {"S": f"old-{n}"}})
            await s.wait_for(lambda: len(s.delivered(record_file)) >= 5, what="old items")

        await ddb.delete_table(TableName=unique_name)
        await asyncio.sleep(1.1)  # a new creation time (whole seconds on some servers)
        second = await _table(ddb, unique_name)
        for n in range(3):
            await ddb.put_item(TableName=unique_name, Item={"id": {"S": f"new-{n}"}})

        config = s.config_yaml(
            settings=settings, functions=functions, mappings=[_mapping(second, mapping_uuid)]
        )
        async with s.running(config) as service:
            await s.wait_for(lambda: len(s.delivered(record_file)) >= 8, what="new items")
            resets = s.metric(
                service, "pumphouse_position_resets_total", reason="earlier_stream"
            )
    ids = sorted(x["record"]["dynamodb"]["Keys"]["id"]["S"] for x in s.delivered(record_file))
    assert ids == sorted([f"old-{n}" for n in range(5)] + [f"new-{n}" for n in range(3)])
    assert resets >= 1


async def test_kinesis_stream_recreated_starts_the_new_stream_from_its_beginning(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    mapping_uuid = str(uuid.uuid4())
    settings = s.settings(
        state_store=f"sqlite:///{tmp_path}/state.db", kinesis_url=kinesis_mock.url
    )
    functions = {"f": s.function("recorder.handler", record_file)}
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 1)
        config = s.config_yaml(
            settings=settings, functions=functions, mappings=[_mapping(arn, mapping_uuid)]
        )
        async with s.running(config) as service:
            await s.wait_for(lambda: service.readiness()[0], what="ready")
            await asyncio.sleep(1.5)
            await s.put_records(kinesis, unique_name, [(f"k{n}", {"i": n}) for n in range(20)])
            await s.wait_for(lambda: len(s.delivered(record_file)) >= 20, what="old records")

        await kinesis.delete_stream(StreamName=unique_name)
        await asyncio.sleep(1.1)
        await s.create_stream(kinesis, unique_name, 1)
        new = await s.put_records(kinesis, unique_name, [(f"k{n}", {"i": 100 + n}) for n in range(3)])

        async with s.running(config) as service:
            await s.wait_for(lambda: len(s.delivered(record_file)) >= 23, what="new records")
            resets = s.metric(service, "pumphouse_position_resets_total")
            restarts = s.metric(service, "pumphouse_mapping_restarts_total")
    assert sorted(x["i"] for x in s.delivered(record_file))[-3:] == [100, 101, 102]
    assert len(new) == 3
    assert resets >= 1
    assert restarts == 0
