"""Where a Kinesis mapping starts reading without a checkpoint: ``AT_TIMESTAMP`` on
kinesis-mock (records that arrived before the timestamp are not delivered)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from handlers.streams import support as s

from pumphouse.devstack import KinesisMock

pytestmark = pytest.mark.slow


async def test_at_timestamp_starts_at_the_first_record_arrived_since(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 2)
        keys = [f"key-{n}" for n in range(8)]  # spread over both shards
        before = await s.put_records(kinesis, unique_name, [(k, {"k": k, "i": 0}) for k in keys])
        await asyncio.sleep(1.0)
        stamp = round(time.time(), 3)
        await asyncio.sleep(1.0)
        after = await s.put_records(kinesis, unique_name, [(k, {"k": k, "i": 1}) for k in keys])
        config = s.config_yaml(
            settings=s.settings(
                state_store=f"sqlite:///{tmp_path}/state.db", kinesis_url=kinesis_mock.url
            ),
            functions={"f": s.function("recorder.handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "AT_TIMESTAMP",
                    "StartingPositionTimestamp": stamp,
                }
            ],
        )
        async with s.running(config):
            await s.wait_for(
                lambda: len(s.delivered(record_file)) >= len(after), what="the later records"
            )
            # And what is written while the mapping runs.
            live = await s.put_records(kinesis, unique_name, [("key-0", {"k": "key-0", "i": 2})])
            await s.wait_for(
                lambda: len(s.delivered(record_file)) >= len(after) + 1, what="a live record"
            )
        arrivals = await _arrivals(kinesis, unique_name)
    delivered = s.delivered(record_file)
    assert len({shard for shard, _ in after}) == 2, "both shards take part"
    assert sorted((x["shard"], x["seq"]) for x in delivered) == sorted(after + live)
    assert all(x["i"] in (1, 2) for x in delivered)
    # The server's own arrival times put the timestamp between the two puts.
    assert max(arrivals[seq] for _, seq in before) < stamp <= min(arrivals[seq] for _, seq in after)


async def _arrivals(kinesis: Any, stream: str) -> dict[str, float]:
    """Sequence number → ApproximateArrivalTimestamp of every record of the stream."""
    out: dict[str, float] = {}
    shards = (await kinesis.list_shards(StreamName=stream))["Shards"]
    for shard in shards:
        iterator = (
            await kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        response = await kinesis.get_records(ShardIterator=iterator, Limit=100)
        for record in response["Records"]:
            out[record["SequenceNumber"]] = record["ApproximateArrivalTimestamp"].timestamp()
    return out
