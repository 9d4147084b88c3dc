"""Chaos: Redis (the state store of two replicas) down for 15 s while a stream flows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from chaos_support import Ledger, Watch, record_figures
from handlers.streams import support as s

from pumphouse.devstack import KinesisMock, RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SHARDS = 2
BATCH = 10
OUTAGE_SECONDS = 15.0


async def test_redis_down_15s_with_two_replicas(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    redis = RedisServer(persistent=True, workdir=tmp_path / "redis").start()
    record_file = tmp_path / "records.jsonl"
    ledger = Ledger()
    try:
        async with s.client("kinesis", kinesis_mock.url) as kinesis:
            arn = await s.create_stream(kinesis, unique_name, SHARDS)
            settings = s.settings(
                state_store=redis.url, kinesis_url=kinesis_mock.url, lease_seconds=2.0
            )
            settings["StallAfterSeconds"] = 4
            config = s.config_yaml(
                settings=settings,
                functions={"f": s.function("recorder.handler", record_file)},
                mappings=[{"FunctionName": "f", "EventSourceArn": arn,
                           "StartingPosition": "TRIM_HORIZON", "BatchSize": BATCH}],
            )  # fmt: skip

            async def produce(stop: asyncio.Event) -> None:
                n = 0
                while not stop.is_set():
                    batch = [(f"k{(n + j) % 8}", {"k": f"k{(n + j) % 8}", "i": n + j})
                             for j in range(10)]  # fmt: skip
                    await s.put_records(kinesis, unique_name, batch)
                    ledger.produced.extend(str(i) for _, d in batch for i in [d["i"]])
                    n += len(batch)
                    await asyncio.sleep(0.2)

            async with s.running(config, replica_id="a") as a, s.running(
                config, replica_id="b"
            ) as b:
                watches = [Watch(a).start(), Watch(b).start()]
                stop = asyncio.Event()
                await s.wait_for(
                    lambda: all(w.sample().shards_owned == 1 for w in watches),
                    within=30, what="one shard per replica",
                )  # fmt: skip
                producer = asyncio.create_task(produce(stop))  # traffic once the split holds
                try:
                    await asyncio.sleep(2.0)
                    fault_at = time.monotonic()
                    redis.kill()
                    await asyncio.sleep(OUTAGE_SECONDS)
                    redis.start()
                    healed_at = time.monotonic()
                    await asyncio.sleep(3.0)
                finally:
                    stop.set()
                    await producer
                delivered = lambda: [str(x["i"]) for x in s.delivered(record_file)]  # noqa: E731 - a probe
                await s.wait_for(
                    lambda: not ledger.lost(delivered()), within=60, what="every record"
                )
                await s.wait_for(
                    lambda: all(not w.sample().stalled and w.sample().ready for w in watches)
                    and sum(w.sample().shards_owned or 0 for w in watches) == SHARDS,
                    within=30, what="both replicas healthy again",
                )  # fmt: skip
                for w in watches:
                    await w.stop()
    finally:
        with contextlib.suppress(Exception):
            redis.stop()

    during = [w.between(fault_at, healed_at) for w in watches]
    for seen in during:
        # Each replica said so during the outage: stalled, not ready, no shard counted.
        stalled = [o for o in seen if o.stalled]
        assert stalled, "the stalled gauge never said so"
        assert any(o.result.startswith("PROBLEM: ") for o in stalled)
        assert any(not o.ready and o.reason.startswith("stalled: ") for o in seen)
        assert any(o.shards_owned == 0 for o in seen)
    reported = min(
        w.first(lambda o: o.stalled, after=fault_at).at - fault_at for w in watches
    )
    lost = ledger.lost(delivered())
    duplicates = Ledger.duplicates(delivered())
    assert lost == []
    # Per shard: the batch in flight when the store went away (its checkpoint could not
    # be written), and the one in flight when the replicas split the shards again after
    # it came back (the first replica back takes every expired lease; the other steals
    # its share, and the old owner's running batch finishes, fenced, meanwhile).
    assert duplicates <= 2 * SHARDS * BATCH
    record_figures(
        "Redis down 15 s, two replicas",
        produced=len(ledger.produced), lost=len(lost), duplicates=duplicates,
        stalled_after_s=round(reported, 1),
        recovered_after_s=round(
            min(w.first(lambda o: not o.stalled and o.ready, after=healed_at).at for w in watches)
            - healed_at, 1,
        ),
    )  # fmt: skip
