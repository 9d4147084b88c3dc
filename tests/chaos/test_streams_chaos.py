"""Chaos for stream mappings: a Kinesis stream deleted and recreated under traffic, a
DynamoDB table recreated, a replica SIGKILLed."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from chaos_support import Ledger, Watch, record_figures
from handlers.streams import support as s

from pumphouse.devstack import KinesisMock, MotoServer

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

BATCH = 10


def ids(record_file: Path) -> list[str]:
    return [str(x["i"]) for x in s.delivered(record_file)]


async def test_kinesis_stream_deleted_and_recreated(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    ledger = Ledger()
    settings = s.settings(
        state_store=f"sqlite:///{tmp_path}/state.db", kinesis_url=kinesis_mock.url
    )
    settings["StallAfterSeconds"] = 4
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 1)
        config = s.config_yaml(
            settings=settings, functions={"f": s.function("recorder.handler", record_file)},
            mappings=[{"FunctionName": "f", "EventSourceArn": arn,
                       "StartingPosition": "TRIM_HORIZON", "BatchSize": BATCH}],
        )  # fmt: skip

        async def put(start: int, count: int) -> None:
            items = [(f"k{i % 4}", {"k": f"k{i % 4}", "i": i}) for i in range(start, start + count)]
            await s.put_records(kinesis, unique_name, items)
            ledger.produced.extend(str(i) for i in range(start, start + count))

        async with s.running(config) as service:
            watch = Watch(service).start()
            for n in range(5):
                await put(n * 20, 20)
                await asyncio.sleep(0.3)
            await s.wait_for(lambda: not ledger.lost(ids(record_file)), what="before")
            fault_at = time.monotonic()
            await kinesis.delete_stream(StreamName=unique_name)
            await asyncio.sleep(8)
            await s.create_stream(kinesis, unique_name, 1)
            healed_at = time.monotonic()
            for n in range(5):
                await put(1000 + n * 20, 20)
            await s.wait_for(lambda: not ledger.lost(ids(record_file)), within=90, what="after")
            await s.wait_for(
                lambda: (o := watch.sample()) and not o.stalled and o.ready, what="healthy"
            )
            await watch.stop()
            resets = s.metric(service, "pumphouse_position_resets_total", reason="earlier_stream")
    during = watch.between(fault_at, healed_at)
    assert any(o.stalled and o.result.startswith("PROBLEM: ") and not o.ready for o in during)
    lost, duplicates = ledger.lost(ids(record_file)), Ledger.duplicates(ids(record_file))
    assert lost == []
    assert duplicates <= BATCH
    assert resets >= 1
    record_figures(
        "Kinesis stream deleted and recreated", produced=len(ledger.produced),
        lost=len(lost), duplicates=duplicates, position_resets=resets,
        stalled_after_s=round(watch.first(lambda o: o.stalled, after=fault_at).at - fault_at, 1),
        recovered_after_s=round(
            watch.first(lambda o: not o.stalled and o.ready, after=healed_at).at - healed_at, 1
        ),
    )  # fmt: skip


async def _table(ddb: Any, name: str) -> str:
    await ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    return str((await ddb.describe_table(TableName=name))["Table"]["LatestStreamArn"])


def item_ids(record_file: Path) -> list[str]:
    return [x["record"]["dynamodb"]["NewImage"]["id"]["S"] for x in s.delivered(record_file)]


async def test_dynamodb_table_recreated(
    moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    """The table is deleted under a running mapping (the mapping says so), then created
    again; the mapping, pointed at the new table's stream with the same UUID (as
    ``pumphouse dev`` does on its next run), starts that stream from its beginning."""
    record_file = tmp_path / "records.jsonl"
    ledger = Ledger()
    mapping_uuid = str(uuid.uuid4())
    settings = s.settings(state_store=f"sqlite:///{tmp_path}/state.db", moto_url=moto_server.url)
    settings["StallAfterSeconds"] = 4

    def config(arn: str) -> str:
        return s.config_yaml(
            settings=settings, functions={"f": s.function("recorder.handler", record_file)},
            mappings=[{"FunctionName": "f", "EventSourceArn": arn, "UUID": mapping_uuid,
                       "StartingPosition": "TRIM_HORIZON", "BatchSize": BATCH}],
        )  # fmt: skip

    async with s.client("dynamodb", moto_server.url) as ddb:

        async def put(prefix: str, count: int) -> None:
            for n in range(count):
                await ddb.put_item(TableName=unique_name, Item={"id": {"S": f"{prefix}-{n}"}})
                ledger.produced.append(f"{prefix}-{n}")

        first = await _table(ddb, unique_name)
        async with s.running(config(first)) as service:
            watch = Watch(service).start()
            await put("before", 30)
            await s.wait_for(lambda: not ledger.lost(item_ids(record_file)), what="before")
            fault_at = time.monotonic()
            await ddb.delete_table(TableName=unique_name)
            await s.wait_for(
                lambda: (o := watch.sample()).stalled and not o.ready, what="the stall reported"
            )
            reported_at = time.monotonic()
            await watch.stop()
        await asyncio.sleep(1.1)
        second = await _table(ddb, unique_name)
        await put("after", 30)
        async with s.running(config(second)) as service:
            watch2 = Watch(service).start()
            healed_at = time.monotonic()
            await s.wait_for(
                lambda: not ledger.lost(item_ids(record_file)), within=60, what="after"
            )
            await s.wait_for(
                lambda: (o := watch2.sample()) and not o.stalled and o.ready, what="healthy"
            )
            await watch2.stop()
            resets = s.metric(service, "pumphouse_position_resets_total", reason="earlier_stream")
    lost = ledger.lost(item_ids(record_file))
    duplicates = Ledger.duplicates(item_ids(record_file))
    assert lost == []
    assert duplicates <= BATCH
    assert resets >= 1
    record_figures(
        "DynamoDB table recreated (mapping re-pointed, same UUID)",
        produced=len(ledger.produced), lost=len(lost), duplicates=duplicates,
        position_resets=resets, stalled_after_s=round(reported_at - fault_at, 1),
        recovered_after_s=round(
            watch2.first(lambda o: not o.stalled and o.ready, after=healed_at).at - healed_at, 1
        ),
    )  # fmt: skip


async def test_a_replica_sigkilled(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    """Two replicas on Redis, one (a ``pumphouse run`` process) SIGKILLed mid-stream: the
    other takes its shard over from the checkpoint once the lease expires."""
    from pumphouse.devstack import RedisServer

    redis = RedisServer().start()
    record_file = tmp_path / "records.jsonl"
    ledger = Ledger()
    settings = s.settings(state_store=redis.url, kinesis_url=kinesis_mock.url, lease_seconds=2.0)
    settings["StallAfterSeconds"] = 4
    try:
        async with s.client("kinesis", kinesis_mock.url) as kinesis:
            arn = await s.create_stream(kinesis, unique_name, 2)
            config = s.config_yaml(
                settings=settings,
                functions={"f": s.function("recorder.handler", record_file, SLEEP_SECONDS="0.05")},
                mappings=[{"FunctionName": "f", "EventSourceArn": arn,
                           "StartingPosition": "TRIM_HORIZON", "BatchSize": BATCH}],
            )  # fmt: skip
            path = tmp_path / "pumphouse.yaml"
            path.write_text(config)
            stop = asyncio.Event()

            async def produce() -> None:
                n = 0
                while not stop.is_set():
                    items = [(f"k{(n + j) % 8}", {"k": f"k{(n + j) % 8}", "i": n + j})
                             for j in range(10)]  # fmt: skip
                    await s.put_records(kinesis, unique_name, items)
                    ledger.produced.extend(str(n + j) for j in range(10))
                    n += 10
                    await asyncio.sleep(0.2)

            async with s.running(config, replica_id="survivor") as survivor:
                watch = Watch(survivor).start()
                victim = s.ServiceProcess(path, log_path=tmp_path / "victim.log").start()
                producer = asyncio.create_task(produce())
                try:
                    await s.wait_for(
                        lambda: watch.sample().shards_owned == 1, within=30, what="a split"
                    )
                    await asyncio.sleep(3)
                    fault_at = time.monotonic()
                    victim.kill()
                    await s.wait_for(
                        lambda: watch.sample().shards_owned == 2, within=30, what="the takeover"
                    )
                    taken_over = time.monotonic() - fault_at
                    await asyncio.sleep(2)
                finally:
                    stop.set()
                    await producer
                    victim.stop()
                await s.wait_for(
                    lambda: not ledger.lost(ids(record_file)), within=60, what="every record"
                )
                await watch.stop()
    finally:
        redis.stop()
    lost, duplicates = ledger.lost(ids(record_file)), Ledger.duplicates(ids(record_file))
    assert lost == []
    assert duplicates <= BATCH  # the victim's one batch in flight on its one shard
    assert not any(o.stalled for o in watch.seen)  # the survivor did its share throughout
    record_figures(
        "A replica SIGKILLed (two replicas, Redis)", produced=len(ledger.produced),
        lost=len(lost), duplicates=duplicates, takeover_s=round(taken_over, 1),
    )  # fmt: skip
