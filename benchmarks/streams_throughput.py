"""Kinesis throughput: pumphouse next to a raw aiobotocore ``GetRecords`` loop.

One run, one kinesis-mock server. For 1 and 4 shards, a fresh stream is filled with
~100-byte JSON records; then, on that same stream:

* **raw**: one task per shard, ``GetShardIterator(TRIM_HORIZON)`` and ``GetRecords``
  (``Limit`` 10000, pumphouse's page size) until every record was read — the most a
  reader can get from this server;
* **pumphouse**: the real :class:`~pumphouse.service.Service` in-process (SQLite state
  store, a no-op Python handler with one warm worker per shard), ``BatchSize`` 100 and
  1000, from ``service.start()`` until every record was invoked (read, shaped,
  serialized, batched, invoked and checkpointed).

Each figure is the best of ``REPEATS`` runs (every pumphouse run is a new mapping UUID
on the same stream, so it reads from the trim horizon again). The ratio pumphouse / raw
should be >= 0.85.

Run: ``.venv/bin/python benchmarks/streams_throughput.py``
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from aiobotocore.session import get_session

from pumphouse.config import parse_config
from pumphouse.devstack import LOCAL_CREDENTIALS, KinesisMock
from pumphouse.pollers.kinesis import KinesisStream
from pumphouse.service import Service
from pumphouse.telemetry.metrics import Metrics

RECORDS_PER_SHARD = 4000
REPEATS = 5
TARGETS = {1: 0.85, 4: 0.95}
"""Ratio to the raw loop each shard count must reach (4 shards: issue 17's target)."""
HANDLERS = Path(__file__).resolve().parent.parent / "tests" / "handlers" / "streams"


async def create_stream(kinesis: Any, name: str, shards: int) -> str:
    await kinesis.create_stream(StreamName=name, ShardCount=shards)
    while True:
        summary = (await kinesis.describe_stream_summary(StreamName=name))[
            "StreamDescriptionSummary"
        ]
        if summary["StreamStatus"] == "ACTIVE":
            return str(summary["StreamARN"])
        await asyncio.sleep(0.05)


async def fill(kinesis: Any, name: str, total: int) -> dict[str, int]:
    """Put ``total`` records; returns how many went to each shard."""
    per_shard: dict[str, int] = {}
    for start in range(0, total, 500):
        records = [
            {
                "PartitionKey": f"key-{i}",
                "Data": json.dumps({"i": i, "pad": "x" * 80}).encode(),
            }
            for i in range(start, min(total, start + 500))
        ]
        response = await kinesis.put_records(StreamName=name, Records=records)
        assert response.get("FailedRecordCount", 0) == 0
        for record in response["Records"]:
            per_shard[record["ShardId"]] = per_shard.get(record["ShardId"], 0) + 1
    return per_shard


async def raw_loop(kinesis: Any, name: str, per_shard: dict[str, int]) -> float:
    """Seconds to read every record with one GetRecords loop per shard, from the first
    GetRecords request to the last record read."""
    iterators = {
        shard: (
            await kinesis.get_shard_iterator(
                StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        for shard in per_shard
    }

    async def read(shard: str) -> None:
        iterator, seen = iterators[shard], 0
        while seen < per_shard[shard]:
            response = await kinesis.get_records(ShardIterator=iterator, Limit=10000)
            seen += len(response["Records"])
            iterator = response["NextShardIterator"]

    started = time.perf_counter()
    await asyncio.gather(*(read(shard) for shard in per_shard))
    return time.perf_counter() - started


class FirstRead:
    """Notes when pumphouse makes its first GetRecords request (benchmark probe)."""

    at: float | None = None

    @classmethod
    def install(cls) -> None:
        original = KinesisStream.get_records

        async def probe(self: KinesisStream, iterator: str, limit: int) -> Any:
            if cls.at is None:
                cls.at = time.perf_counter()
            return await original(self, iterator, limit)

        KinesisStream.get_records = probe  # type: ignore[method-assign]


async def pumphouse_run(
    url: str, arn: str, total: int, *, batch_size: int, shards: int, state_dir: Path
) -> tuple[float, float]:
    """(seconds from the first GetRecords to every record invoked, start-up seconds)."""
    config_text = yaml.safe_dump(
        {
            "Settings": {
                "StateStore": f"sqlite:///{state_dir}/state-{uuid.uuid4().hex}.db",
                "Region": "us-east-1",
                "MetricsAddress": "127.0.0.1:0",
                "Endpoints": {"Kinesis": url},
            },
            "Functions": {
                "noop": {
                    "Handler": "recorder.noop",
                    "CodeUri": str(HANDLERS),
                    "MemorySize": 512,
                    "ProvisionedConcurrency": shards,
                }
            },
            "EventSourceMappings": [
                {
                    "FunctionName": "noop",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": batch_size,
                    "UUID": str(uuid.uuid4()),
                }
            ],
        }
    )
    config = parse_config(config_text, base_dir=HANDLERS)
    metrics = Metrics()
    service = Service(config, metrics=metrics)
    FirstRead.at = None
    started = time.perf_counter()
    await service.start()
    invoked = metrics.invoked_events.labels(config.EventSourceMappings[0].label, "noop", "kinesis")
    try:
        while invoked._value.get() < total:  # noqa: ASYNC110 - polling a counter, no event
            await asyncio.sleep(0.001)
        finished = time.perf_counter()
    finally:
        service.stopping.set()
        await service.shutdown()
    assert FirstRead.at is not None
    return finished - FirstRead.at, FirstRead.at - started


async def measure(kinesis: Any, url: str, state_dir: Path) -> bool:
    """Print the table; True when every ratio meets the target."""
    print(
        f"kinesis-mock, {RECORDS_PER_SHARD} records per shard, best of {REPEATS} interleaved "
        "runs; timed from the first GetRecords request to the last record read / invoked"
    )
    print(f"{'shards':>6} {'reader':>26} {'records/s':>10} {'ratio':>6} {'start-up':>9}")
    met = True
    for shards in (1, 4):
        name = f"bench-{shards}-{uuid.uuid4().hex[:6]}"
        arn = await create_stream(kinesis, name, shards)
        total = RECORDS_PER_SHARD * shards
        per_shard = await fill(kinesis, name, total)
        await raw_loop(kinesis, name, per_shard)  # warm the server up on this stream
        raw_times: list[float] = []
        runs: dict[int, list[tuple[float, float]]] = {100: [], 1000: []}
        for _ in range(REPEATS):
            raw_times.append(await raw_loop(kinesis, name, per_shard))
            for batch_size, results in runs.items():
                results.append(
                    await pumphouse_run(
                        url, arn, total, batch_size=batch_size, shards=shards, state_dir=state_dir
                    )
                )
        raw_rate = total / min(raw_times)
        print(f"{shards:>6} {'raw GetRecords loop':>26} {raw_rate:>10.0f}")
        for batch_size, results in runs.items():
            best, startup = min(results)
            rate = total / best
            ratio = rate / raw_rate
            target = TARGETS[shards]
            met &= ratio >= target
            label = f"pumphouse BatchSize {batch_size}"
            verdict = f"(target >= {target}: {'met' if ratio >= target else 'missed'})"
            print(
                f"{shards:>6} {label:>26} {rate:>10.0f} {ratio:>6.2f} {startup * 1000:>7.0f}ms"
                f"  {verdict}"
            )
    return met


async def main() -> int:
    import logging

    import structlog

    os.environ.update(LOCAL_CREDENTIALS)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    FirstRead.install()
    server = KinesisMock()
    server.start()
    try:
        session = get_session()
        with tempfile.TemporaryDirectory() as tmp:
            async with session.create_client(
                "kinesis", endpoint_url=server.url, region_name="us-east-1"
            ) as kinesis:
                met = await measure(kinesis, server.url, Path(tmp))
    finally:
        server.stop()
    print(f"every target met: {'yes' if met else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
