"""Tumbling windows on kinesis-mock: state carried across invokes and over a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from handlers.streams import support as s

from pumphouse.devstack import KinesisMock
from pumphouse.pollers.streams import iso_window_time, window_start

pytestmark = pytest.mark.slow

WINDOW = 6


async def test_tumbling_window_counts_across_invokes_and_a_restart(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 1)
        config = s.config_yaml(
            settings=s.settings(
                state_store=f"sqlite:///{tmp_path}/state.db", kinesis_url=kinesis_mock.url
            ),
            functions={"f": s.function("window.handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "TumblingWindowInSeconds": WINDOW,
                    "BatchSize": 100,
                }
            ],
        )
        async with s.running(config):
            # Start right after a window boundary, so the restart fits in one window.
            into = time.time() % WINDOW
            if into > 0.3:
                await asyncio.sleep(WINDOW - into + 0.05)
            first = await s.put_records(
                kinesis, unique_name, [("w", {"k": "w", "i": i}) for i in range(5)]
            )
            await s.wait_for(
                lambda: any(line["seqs"] for line in s.read_lines(record_file)),
                what="the first invoke of the window",
            )
        await s.put_records(kinesis, unique_name, [("w", {"k": "w", "i": i}) for i in range(5, 8)])
        async with s.running(config):
            await s.wait_for(
                lambda: any(line["final"] for line in s.read_lines(record_file)),
                within=3 * WINDOW,
                what="the final invoke of the window",
            )
            # A record of the next window opens a new window with an empty state.
            await s.put_records(kinesis, unique_name, [("w", {"k": "w", "i": 8})])
            await s.wait_for(
                lambda: any(8 in line["is"] for line in s.read_lines(record_file)),
                what="a record of the next window",
            )
    lines = s.read_lines(record_file)
    start = window_start(
        (await _arrival(kinesis_mock, unique_name, first[0][1])), WINDOW
    )
    window = {"start": iso_window_time(start), "end": iso_window_time(start + WINDOW)}
    in_window = [line for line in lines if line["window"] == window]
    assert len(in_window) >= 3, "two invokes with records, then the final one"
    finals = [line for line in in_window if line["final"]]
    assert len(finals) == 1 and finals[0] is in_window[-1]
    assert finals[0]["state_out"]["count"] == 8, "counts aggregated across invokes"
    assert not any(line["early"] for line in lines)
    # The invoke after the restart started from the state saved before it.
    after_restart = next(line for line in in_window if 5 in line["is"])
    assert after_restart["state_in"]["count"] == 5
    assert in_window[0]["state_in"] == {}
    assert all(line["shard"] == first[0][0] and line["source"] == arn for line in lines)
    nxt = next(line for line in lines if 8 in line["is"])
    assert nxt["window"] != window and nxt["state_in"] == {}
    assert sorted(i for line in in_window for i in line["is"]) == list(range(8))


async def _arrival(kinesis_mock: KinesisMock, stream: str, seq: str) -> float:
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        shard = (await kinesis.list_shards(StreamName=stream))["Shards"][0]["ShardId"]
        iterator = (
            await kinesis.get_shard_iterator(
                StreamName=stream,
                ShardId=shard,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                StartingSequenceNumber=seq,
            )
        )["ShardIterator"]
        record = (await kinesis.get_records(ShardIterator=iterator, Limit=1))["Records"][0]
        return float(record["ApproximateArrivalTimestamp"].timestamp())
