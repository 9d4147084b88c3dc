"""ParallelizationFactor on kinesis-mock: lanes by partition key on one shard."""

from __future__ import annotations

from pathlib import Path

import pytest
from handlers.streams import support as s

from pumphouse.config import parse_config
from pumphouse.devstack import KinesisMock
from pumphouse.pollers.streams import lane_of
from pumphouse.state import open_state_store

pytestmark = pytest.mark.slow


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(t0, 1) for t0, _ in intervals] + [(t1, -1) for _, t1 in intervals])
    running = best = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


async def test_parallelization_factor_4_on_one_shard(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    # Two keys per lane, so that every lane has work.
    keys: list[str] = []
    for n in range(1000):
        key = f"key-{n}"
        if sum(1 for k in keys if lane_of(k, 4) == lane_of(key, 4)) < 2:
            keys.append(key)
        if len(keys) == 8:
            break
    data = [(k, {"k": k, "i": i}) for i in range(8) for k in keys]
    state_url = f"sqlite:///{tmp_path}/state.db"
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 1)
        put = await s.put_records(kinesis, unique_name, data)
        config = s.config_yaml(
            settings=s.settings(state_store=state_url, kinesis_url=kinesis_mock.url),
            functions={"f": s.function("recorder.handler", record_file, SLEEP_SECONDS="0.25")},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 4,
                    "ParallelizationFactor": 4,
                }
            ],
        )
        uuid = parse_config(config, base_dir=s.HANDLERS).EventSourceMappings[0].uuid
        shard = put[0][0]
        seq_of = {(d["k"], d["i"]): int(seq) for (_, d), (_, seq) in zip(data, put, strict=True)}
        store = open_state_store(state_url)
        samples = 0
        try:
            async with s.running(config):

                async def contiguous_checkpoint() -> bool:
                    nonlocal samples
                    checkpoint = await store.checkpoints.get(uuid, shard)
                    done = {(x["k"], x["i"]) for x in s.delivered(record_file)}
                    if checkpoint is not None and checkpoint.sequence_number:
                        samples += 1
                        upto = int(checkpoint.sequence_number)
                        below = {ident for ident, seq in seq_of.items() if seq <= upto}
                        assert below <= done, "checkpoint passed an unfinished record"
                    return len(done) == len(data)

                await s.wait_for(contiguous_checkpoint, interval=0.05, what="all records")
            final = await store.checkpoints.get(uuid, shard)
        finally:
            await store.close()
    assert samples >= 2
    assert final is not None and final.sequence_number == put[-1][1]
    lines = s.read_lines(record_file)
    items = [x for line in lines for x in line["items"]]
    assert len(items) == len(data)
    assert s.keyed_order_ok(items), "order per partition key holds across lanes"
    for line in lines:
        assert len({lane_of(x["key"], 4) for x in line["items"]}) == 1, "a batch is one lane"
    assert _max_overlap([(line["t0"], line["t1"]) for line in lines]) == 4
