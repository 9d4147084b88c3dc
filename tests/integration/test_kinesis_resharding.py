"""Kinesis on kinesis-mock: shard lineage while records flow, and restarts.

Every test runs the real Service in-process against kinesis-mock, with the SQLite state
store in the test's temporary directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from handlers.streams import support as s

from pumphouse.config import parse_config
from pumphouse.devstack import KinesisMock
from pumphouse.state import open_state_store

pytestmark = pytest.mark.slow


def _first_deliveries(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, int]] = set()
    firsts = []
    for item in items:
        ident = (item["k"], item["i"])
        if ident not in seen:
            seen.add(ident)
            firsts.append(item)
    return firsts


async def test_split_and_merge_while_records_flow(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    keys = [f"key-{n}" for n in range(8)]
    counter = iter(range(10_000))

    def phase(count: int) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for _ in range(count):
            i = next(counter)
            out.append((keys[i % len(keys)], {"k": keys[i % len(keys)], "i": i}))
        return out

    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 2)
        config = s.config_yaml(
            settings=s.settings(
                state_store=f"sqlite:///{tmp_path}/state.db", kinesis_url=kinesis_mock.url
            ),
            functions={"f": s.function("recorder.handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 7,
                }
            ],
        )
        async with s.running(config):
            await s.put_records(kinesis, unique_name, phase(40))
            await s.wait_for(lambda: len(s.delivered(record_file)) >= 20, what="first records")

            shards = (await kinesis.list_shards(StreamName=unique_name))["Shards"]
            first = shards[0]
            low = int(first["HashKeyRange"]["StartingHashKey"])
            high = int(first["HashKeyRange"]["EndingHashKey"])
            await kinesis.split_shard(
                StreamName=unique_name,
                ShardToSplit=first["ShardId"],
                NewStartingHashKey=str((low + high) // 2),
            )
            await s.wait_active(kinesis, unique_name)
            await s.put_records(kinesis, unique_name, phase(40))

            shards = (await kinesis.list_shards(StreamName=unique_name))["Shards"]
            children = [x for x in shards if x.get("ParentShardId") == first["ShardId"]]
            assert len(children) == 2
            children.sort(key=lambda x: int(x["HashKeyRange"]["StartingHashKey"]))
            await kinesis.merge_shards(
                StreamName=unique_name,
                ShardToMerge=children[0]["ShardId"],
                AdjacentShardToMerge=children[1]["ShardId"],
            )
            await s.wait_active(kinesis, unique_name)
            await s.put_records(kinesis, unique_name, phase(40))

            await s.wait_for(
                lambda: len({(x["k"], x["i"]) for x in s.delivered(record_file)}) >= 120,
                within=40,
                what="all 120 records",
            )
        lineage = {
            x["ShardId"]: [p for p in (x.get("ParentShardId"), x.get("AdjacentParentShardId")) if p]
            for x in (await kinesis.list_shards(StreamName=unique_name))["Shards"]
        }

    items = s.delivered(record_file)
    idents = [(x["k"], x["i"]) for x in items]
    assert sorted(set(idents)) == sorted((keys[i % 8], i) for i in range(120))
    assert len(idents) == len(set(idents)), "happy path: every record processed exactly once"
    assert s.keyed_order_ok(items), "order per partition key kept across the reshard"

    # Parents before children: every record of a parent is delivered before any record
    # of its child.
    position = {(x["k"], x["i"]): n for n, x in enumerate(_first_deliveries(items))}
    by_shard: dict[str, list[int]] = {}
    for item in items:
        by_shard.setdefault(item["shard"], []).append(position[(item["k"], item["i"])])
    merged = [sid for sid, parents in lineage.items() if len(parents) == 2]
    assert len(merged) == 1 and merged[0] in by_shard, "records reached the merged shard"
    checked = 0
    for shard, parents in lineage.items():
        for parent in parents:
            if shard in by_shard and parent in by_shard:
                assert max(by_shard[parent]) < min(by_shard[shard]), (parent, shard)
                checked += 1
    assert checked >= 3, "split children and the merged shard each followed a parent"

    # Closed shards were drained and recorded as ended.
    store = open_state_store(f"sqlite:///{tmp_path}/state.db")
    try:
        uuid = parse_config(config, base_dir=s.HANDLERS).EventSourceMappings[0].uuid
        checkpoints = await store.checkpoints.list(uuid)
    finally:
        await store.close()
    ended = {shard for shard, c in checkpoints.items() if c.shard_ended}
    assert ended == {first["ShardId"], children[0]["ShardId"], children[1]["ShardId"]}


async def test_restart_resumes_after_the_checkpoint(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 2)
        config = s.config_yaml(
            settings=s.settings(
                state_store=f"sqlite:///{tmp_path}/state.db", kinesis_url=kinesis_mock.url
            ),
            functions={"f": s.function("recorder.handler", record_file, SLEEP_SECONDS="0.05")},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 4,
                }
            ],
        )
        data = [(f"k{i % 6}", {"k": f"k{i % 6}", "i": i}) for i in range(100)]
        await s.put_records(kinesis, unique_name, data[:60])
        async with s.running(config):
            await s.wait_for(
                lambda: len(s.delivered(record_file)) >= 16, what="some records before the stop"
            )
        first_run = len(s.delivered(record_file))
        assert first_run < 60, "stopped mid-stream"
        await s.put_records(kinesis, unique_name, data[60:])
        async with s.running(config):
            await s.wait_for(
                lambda: len({(x["k"], x["i"]) for x in s.delivered(record_file)}) >= 100,
                what="all records after the restart",
            )
    items = s.delivered(record_file)
    idents = [(x["k"], x["i"]) for x in items]
    assert set(idents) == {(k, d["i"]) for k, d in data}, "nothing lost"
    assert len(idents) == len(set(idents)), "a graceful stop checkpoints what it finished"
    assert s.keyed_order_ok(items)
