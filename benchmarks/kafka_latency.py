"""Kafka produce-to-invoke latency: pumphouse next to a raw aiokafka consumer.

One run, one tansu broker (memory storage). For each fetch wait (10 ms, and
pumphouse's default ``FetchMaxWaitMs``) and each of ``ROUNDS`` rounds, each reader in
turn (which goes first alternates from round to round) reads a fresh
``PARTITIONS``-partition topic, in its own process and group, with the same aiokafka
options (see :mod:`kafka_harness`):

* **raw**: a ``getmany`` loop; a record's latency is the time ``getmany`` returned it
  minus its timestamp (produce → receive). It commits nothing: the lower bound;
* **pumphouse**: the real service, one mapping, ``BatchSize`` 500, window 0, a probe
  handler on warm workers (one per partition) that writes ``now - record timestamp`` per
  record (produce → invoke).

Once the reader is assigned every partition, a producer sends ``RATE`` records/s in
10 ms ticks for ``SECONDS`` s (each record's timestamp is its send time, in ms). The
readers run one at a time: run side by side, each one's processes load the 2 cores the
other needs (pumphouse's p99 at 10 ms doubled that way). Printed: p50 and p99 per reader
(median and range over the rounds) and the ratios pumphouse / raw of the medians.
Target at 10 ms: p50 and p99 <= 1.2 x raw.

Run: ``.venv/bin/python benchmarks/kafka_latency.py``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafka_harness import (
    PARTITIONS,
    POLL_TIMEOUT_MS,
    Child,
    ServiceRun,
    consumer_settings,
    produce_steadily,
    pumphouse_config,
    quantiles,
    raw_consumer_options,
    ready,
    spread,
    steady_count,
)

RATE = 2_000
SECONDS = 5.0
ROUNDS = 4
BATCH = 500
FAST_WAIT_MS = 10
TARGET_RATIO = 1.2
SCRIPT = str(Path(__file__).resolve())


# ---------------------------------------------------------------------------------------
# Children


async def child_raw(bootstrap: str, topic: str, records: int, wait_ms: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    options = raw_consumer_options(bootstrap, consumer_settings(wait_ms))
    consumer = AIOKafkaConsumer(topic, **options)
    await consumer.start()
    latencies: list[float] = []
    announced = False
    try:
        while len(latencies) < records:
            batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            now_ms = time.time() * 1000
            for messages in batch.values():
                latencies.extend(now_ms - m.timestamp for m in messages)
            if not announced and len(consumer.assignment()) == PARTITIONS:
                announced = True
                ready()
    finally:
        await consumer.stop()
    p50, p99 = quantiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "count": len(latencies)}


async def child_pumphouse(bootstrap: str, topic: str, records: int, wait_ms: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state_dir:
        probe = Path(state_dir) / "latency.txt"
        config = pumphouse_config(
            bootstrap,
            topic,
            state_dir,
            handler="latency.handler",
            batch=BATCH,
            fetch_max_wait_ms=wait_ms,
            env={"LATENCY_TO": str(probe)},
        )
        run = ServiceRun(config, records)
        try:
            await run.start()
            await run.wait_assigned()
            ready()
            await asyncio.wait_for(run.done.wait(), timeout=120)
        finally:
            await run.stop()
        latencies = [float(x) for x in probe.read_text().split()]
    p50, p99 = quantiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "count": len(latencies)}


# ---------------------------------------------------------------------------------------
# The driver


async def one_run(bootstrap: str, mode: str, wait_ms: int) -> dict[str, Any]:
    """One reader on a fresh topic while the producer sends."""
    from pumphouse.devstack import create_kafka_topics

    topic = f"latency-{uuid.uuid4().hex[:8]}"
    await create_kafka_topics(bootstrap, {topic: PARTITIONS})
    expected = steady_count(RATE, SECONDS)
    child = Child(SCRIPT, mode, bootstrap, topic, expected, wait_ms)
    await child.start()
    sent = await produce_steadily(bootstrap, topic, RATE, SECONDS)
    assert sent == expected
    return await child.result()


async def main() -> int:
    from pumphouse.devstack import TansuBroker

    default_wait = consumer_settings().FetchMaxWaitMs
    waits = [FAST_WAIT_MS] + ([default_wait] if default_wait != FAST_WAIT_MS else [])
    broker = TansuBroker()
    broker.start()
    rounds: dict[int, list[dict[str, dict[str, Any]]]] = {w: [] for w in waits}
    try:
        for number in range(ROUNDS):
            order = ("raw", "pumphouse") if number % 2 == 0 else ("pumphouse", "raw")
            for wait_ms in waits:
                rounds[wait_ms].append(
                    {mode: await one_run(broker.bootstrap, mode, wait_ms) for mode in order}
                )
    finally:
        broker.stop()

    print(
        f"tansu, {RATE} records/s x {SECONDS:.0f} s of {PARTITIONS} partitions, window 0, "
        f"batch {BATCH}; raw (produce -> receive) and pumphouse (produce -> invoke), one at "
        f"a time; {ROUNDS} rounds, median (min-max) in ms"
    )
    for wait_ms in waits:
        label = f"fetch wait {wait_ms} ms" + (" (default)" if wait_ms == default_wait else "")
        print(f"{label}:")
        medians: dict[str, dict[str, float]] = {}
        for mode in ("raw", "pumphouse"):
            results = [r[mode] for r in rounds[wait_ms]]
            p50s = [r["p50_ms"] for r in results]
            p99s = [r["p99_ms"] for r in results]
            medians[mode] = {"p50": statistics.median(p50s), "p99": statistics.median(p99s)}
            print(
                f"  {mode:>10}  p50 {spread(p50s, '{:.1f}'):>20}  p99 {spread(p99s, '{:.1f}'):>20}"
            )
        ratios = {q: medians["pumphouse"][q] / medians["raw"][q] for q in ("p50", "p99")}
        verdict = ""
        if wait_ms == FAST_WAIT_MS:
            met = all(r <= TARGET_RATIO for r in ratios.values())
            verdict = f" (target <= {TARGET_RATIO}: {'met' if met else 'missed'})"
        print(
            f"  pumphouse / raw: p50 {ratios['p50']:.2f}, p99 {ratios['p99']:.2f} of the "
            f"medians{verdict}"
        )
    return 0


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["raw", "pumphouse"], required=True)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("records", type=int)
    parser.add_argument("wait_ms", type=int)
    args = parser.parse_args(argv)
    runner = child_raw if args.child == "raw" else child_pumphouse
    result = asyncio.run(runner(args.bootstrap, args.topic, args.records, args.wait_ms))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.exit(child_main(sys.argv[1:]))
    sys.exit(asyncio.run(main()))
