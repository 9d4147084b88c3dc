"""Tumbling windows on kinesis-mock: state carried across invokes and over a restart, and
a window terminated early when its state outgrows 1 MB."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from handlers.streams import support as s

from pumphouse.config import parse_config
from pumphouse.devstack import KinesisMock
from pumphouse.pollers.streams import MAX_WINDOW_STATE_BYTES, iso_window_time, window_start
from pumphouse.state import open_state_store

pytestmark = pytest.mark.slow

WINDOW = 6
PAD_BYTES_OVER_LIMIT = 1024 * 1024 + 1  # what handlers/streams/window.py pads a state with


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


async def test_a_state_over_one_megabyte_terminates_the_window_early(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    state_url = f"sqlite:///{tmp_path}/state.db"
    seconds = 300  # every record of the test falls in one window, which stays open
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 1)
        config = s.config_yaml(
            settings=s.settings(state_store=state_url, kinesis_url=kinesis_mock.url),
            functions={"f": s.function("window.handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "TumblingWindowInSeconds": seconds,
                    "BatchSize": 2,
                }
            ],
        )
        uuid = parse_config(config, base_dir=s.HANDLERS).EventSourceMappings[0].uuid
        into = time.time() % seconds
        if into > seconds - 30:
            await asyncio.sleep(seconds - into + 0.05)
        # The batch holding i=1 returns a state just over 1 MB.
        first = await s.put_records(
            kinesis,
            unique_name,
            [("w", {"k": "w", "i": 0}), ("w", {"k": "w", "i": 1, "case": "big"})],
        )
        shard = first[0][0]
        store = open_state_store(state_url)
        try:
            async with s.running(config):
                await s.wait_for(
                    lambda: any(line["early"] for line in s.read_lines(record_file)),
                    what="the invoke that terminates the window",
                )

                async def state_dropped() -> bool:
                    # (The batch's own success wrote i=1 with the big state first.)
                    checkpoint = await store.checkpoints.get(uuid, shard)
                    return checkpoint is not None and checkpoint.window is None

                await s.wait_for(state_dropped, interval=0.05, what="the window's state dropped")
                after_termination = await store.checkpoints.get(uuid, shard)
                rest = await s.put_records(
                    kinesis, unique_name, [("w", {"k": "w", "i": i}) for i in range(2, 5)]
                )
                await s.wait_for(
                    lambda: 4 in [i for line in s.read_lines(record_file) for i in line["is"]],
                    what="the records after the early end",
                )
            final = await store.checkpoints.get(uuid, shard)
        finally:
            await store.close()
    lines = s.read_lines(record_file)
    start = window_start(await _arrival(kinesis_mock, unique_name, first[0][1]), seconds)
    window = {"start": iso_window_time(start), "end": iso_window_time(start + seconds)}
    assert all(line["window"] == window for line in lines)
    assert PAD_BYTES_OVER_LIMIT > MAX_WINDOW_STATE_BYTES
    # 1: the batch whose response outgrows 1 MB (not final, not terminated).
    assert lines[0]["is"] == [0, 1] and lines[0]["state_in"] == {}
    assert (lines[0]["final"], lines[0]["early"]) == (False, False)
    assert lines[0]["state_out"]["pad"] == PAD_BYTES_OVER_LIMIT
    # 2: one more invoke, with no record, carrying that state: both flags true.
    assert lines[1]["is"] == [] and (lines[1]["final"], lines[1]["early"]) == (True, True)
    assert lines[1]["state_in"] == {"count": 2, "invokes": 1, "pad": PAD_BYTES_OVER_LIMIT}
    assert sum(line["early"] for line in lines) == 1
    # Its success dropped the state and checkpointed the terminated part of the window.
    assert after_termination is not None and after_termination.window is None
    assert after_termination.sequence_number == first[1][1]
    # 3: the window's later records start over with an empty state, in the same window.
    later = lines[2:]
    assert later[0]["state_in"] == {}
    assert [i for line in later for i in line["is"]] == [2, 3, 4]
    assert not any(line["final"] or line["early"] for line in later)
    assert final is not None and final.sequence_number == rest[-1][1]
    assert final.window is not None and final.window["state"] == {"count": 3, "invokes": len(later)}


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
