"""What the Kafka fetch wait (``FetchMaxWaitMs``) costs and buys, on tansu.

One run, one tansu broker (memory storage). For each fetch wait in ``WAITS``:

* **the broker's answer**: one ``Fetch`` request (aiokafka's protocol client, one
  partition): how long tansu holds it when the partition is empty, and when one record
  is produced ``ARRIVAL`` of the way into the wait. A broker that answers a waiting fetch
  as soon as data arrives (Apache Kafka) answers the second right after the produce;
* **idle CPU**: one pumphouse mapping (the real service, in its own process) on an
  empty ``PARTITIONS``-partition topic, over ``IDLE_SECONDS`` once it is assigned every
  partition: CPU of the service process and of the broker, next to a raw aiokafka
  consumer (a ``getmany`` loop, the same options) measured the same way. Group timeouts
  are aiokafka's (heartbeat every 3 s) except the rebalance timeout (2 s, for a quick
  join on tansu): the idle cost a deployment sees;
* **sparse latency**: a raw consumer while single records are produced ``SPARSE_GAP`` s
  apart (never aligned with the wait): produce → receive p50 and max;
* **drain rate**: a raw ``getmany`` + ``commit`` loop (batch 500) draining ``BACKLOG``
  records of 200 bytes, first record to last commit: whether the wait also slows a
  consumer that always has data waiting.

``ROUNDS`` interleaved rounds; median (min-max). Run:
``.venv/bin/python benchmarks/kafka_fetch_wait.py``
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
    cpu_seconds,
    produce_backlog,
    pumphouse_config,
    raw_consumer_options,
    raw_drain,
    ready,
    run_child,
    spread,
)

WAITS = (10, 100, 500)
ROUNDS = 2
IDLE_SECONDS = 10.0
IDLE_TIMEOUTS = {"RebalanceTimeoutMs": 2000}
ARRIVAL = 0.2
SPARSE_RECORDS = 30
SPARSE_GAP = 0.137
BACKLOG = 100_000
BATCH = 500
SCRIPT = str(Path(__file__).resolve())


# ---------------------------------------------------------------------------------------
# Children


async def child_idle_pumphouse(bootstrap: str, topic: str, wait_ms: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state_dir:
        config = pumphouse_config(
            bootstrap,
            topic,
            state_dir,
            handler="noop.handler",
            batch=BATCH,
            fetch_max_wait_ms=wait_ms,
            provisioned=0,
            timeouts=IDLE_TIMEOUTS,
        )
        run = ServiceRun(config, records=1)
        try:
            await run.start()
            await run.wait_assigned()
            ready()
            await asyncio.sleep(IDLE_SECONDS + 1)  # the driver measures IDLE_SECONDS of it
        finally:
            await run.stop()
    return {}


async def child_idle_raw(bootstrap: str, topic: str, wait_ms: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    settings = consumer_settings(wait_ms, timeouts=IDLE_TIMEOUTS)
    consumer = AIOKafkaConsumer(topic, **raw_consumer_options(bootstrap, settings))
    await consumer.start()
    deadline: float | None = None
    try:
        while deadline is None or time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            if deadline is None and len(consumer.assignment()) == PARTITIONS:
                deadline = time.monotonic() + IDLE_SECONDS + 1
                ready()
    finally:
        await consumer.stop()
    return {}


async def child_sparse(bootstrap: str, topic: str, wait_ms: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    settings = consumer_settings(wait_ms)
    consumer = AIOKafkaConsumer(topic, **raw_consumer_options(bootstrap, settings))
    await consumer.start()
    latencies: list[float] = []
    announced = False
    try:
        while len(latencies) < SPARSE_RECORDS:
            polled = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            now_ms = time.time() * 1000
            for messages in polled.values():
                latencies.extend(now_ms - m.timestamp for m in messages)
            if not announced and len(consumer.assignment()) == PARTITIONS:
                announced = True
                ready()
    finally:
        await consumer.stop()
    return {"p50_ms": statistics.median(latencies), "max_ms": max(latencies)}


async def child_drain(bootstrap: str, topic: str, wait_ms: int) -> dict[str, Any]:
    settings = consumer_settings(wait_ms)
    return await raw_drain(bootstrap, topic, BACKLOG, batch=BATCH, settings=settings)


CHILDREN = {
    "idle-pumphouse": child_idle_pumphouse,
    "idle-raw": child_idle_raw,
    "sparse": child_sparse,
    "drain": child_drain,
}


# ---------------------------------------------------------------------------------------
# The driver


async def broker_answer(bootstrap: str, wait_ms: int) -> dict[str, float]:
    """How long tansu holds one Fetch of an empty partition, and one during which a
    record arrives ``ARRIVAL`` of the way into the wait (ms, from the request's send)."""
    from aiokafka import AIOKafkaClient, AIOKafkaProducer, TopicPartition
    from aiokafka.protocol.fetch import FetchRequest

    from pumphouse.devstack import create_kafka_topics

    topic = f"answer-{uuid.uuid4().hex[:8]}"
    await create_kafka_topics(bootstrap, {topic: 1})
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await client.bootstrap()
    await producer.start()
    try:
        node = client.cluster.leader_for_partition(TopicPartition(topic, 0))
        assert node is not None
        request = FetchRequest(wait_ms, 1, 1 << 20, 0, [(topic, [(0, 0, 1 << 20)])])
        started = time.perf_counter()
        await client.send(node, request)
        empty = time.perf_counter() - started

        async def produce_later() -> None:
            await asyncio.sleep(ARRIVAL * wait_ms / 1000)
            await producer.send_and_wait(topic, b"a", partition=0)

        late = asyncio.create_task(produce_later())
        started = time.perf_counter()
        await client.send(node, request)
        arrived = time.perf_counter() - started
        await late
    finally:
        await producer.stop()
        await client.close()
    return {"empty_ms": empty * 1000, "arrival_ms": arrived * 1000}


async def idle_cpu(broker_pid: int, mode: str, bootstrap: str, wait_ms: int) -> dict[str, float]:
    """CPU (% of one core) of an idle consumer child and of the broker."""
    from pumphouse.devstack import create_kafka_topics

    topic = f"idle-{uuid.uuid4().hex[:8]}"
    await create_kafka_topics(bootstrap, {topic: PARTITIONS})
    child = Child(SCRIPT, mode, bootstrap, topic, wait_ms)
    await child.start()
    await asyncio.sleep(0.5)  # past the first fetches after the assignment
    before = cpu_seconds(child.pid), cpu_seconds(broker_pid), time.monotonic()
    await asyncio.sleep(IDLE_SECONDS - 1)
    after = cpu_seconds(child.pid), cpu_seconds(broker_pid), time.monotonic()
    await child.result()
    elapsed = after[2] - before[2]
    return {
        "consumer": 100 * (after[0] - before[0]) / elapsed,
        "broker": 100 * (after[1] - before[1]) / elapsed,
    }


async def sparse_latency(bootstrap: str, wait_ms: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    from pumphouse.devstack import create_kafka_topics

    topic = f"sparse-{uuid.uuid4().hex[:8]}"
    await create_kafka_topics(bootstrap, {topic: PARTITIONS})
    child = Child(SCRIPT, "sparse", bootstrap, topic, wait_ms)
    await child.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        for i in range(SPARSE_RECORDS):
            await asyncio.sleep(SPARSE_GAP)
            await producer.send_and_wait(topic, b"z", partition=i % PARTITIONS)
    finally:
        await producer.stop()
    return await child.result()


async def main() -> int:
    from pumphouse.devstack import TansuBroker, create_kafka_topics

    broker = TansuBroker()
    broker.start()
    assert broker.pid is not None
    rows: dict[int, list[dict[str, Any]]] = {w: [] for w in WAITS}
    try:
        bootstrap = broker.bootstrap
        backlog = f"backlog-{uuid.uuid4().hex[:8]}"
        await create_kafka_topics(bootstrap, {backlog: PARTITIONS})
        await produce_backlog(bootstrap, backlog, BACKLOG)
        for _ in range(ROUNDS):  # interleaved, so drift hits every wait alike
            for wait_ms in WAITS:
                rows[wait_ms].append(
                    {
                        "answer": await broker_answer(bootstrap, wait_ms),
                        "pumphouse": await idle_cpu(
                            broker.pid, "idle-pumphouse", bootstrap, wait_ms
                        ),
                        "raw": await idle_cpu(broker.pid, "idle-raw", bootstrap, wait_ms),
                        "sparse": await sparse_latency(bootstrap, wait_ms),
                        "drain": run_child(SCRIPT, "drain", bootstrap, backlog, wait_ms),
                    }
                )
    finally:
        broker.stop()

    default_wait = consumer_settings().FetchMaxWaitMs
    print(
        f"tansu; {ROUNDS} rounds, median (min-max). One Fetch: ms until tansu answered it "
        f"(empty partition / a record produced {ARRIVAL:.0%} into the wait)."
    )
    print(
        f"Idle: one consumer on {PARTITIONS} empty partitions, % of one core over "
        f"{IDLE_SECONDS - 1:.0f} s (heartbeat 3 s); raw = aiokafka with the same options."
    )
    for wait_ms, results in rows.items():
        star = " (default)" if wait_ms == default_wait else ""

        def pick(*path: str, results: list[dict[str, Any]] = results) -> list[float]:
            values = []
            for result in results:
                value: Any = result
                for key in path:
                    value = value[key]
                values.append(float(value))
            return values

        ph, raw = pick("pumphouse", "consumer"), pick("raw", "consumer")
        ratio = statistics.median(ph) / max(statistics.median(raw), 1e-9)
        drain = [BACKLOG / s for s in pick("drain", "steady")]
        print(f"fetch wait {wait_ms} ms{star}:")
        print(
            f"  one Fetch answered after: empty {spread(pick('answer', 'empty_ms'), '{:.0f}')}"
            f" ms; record at {ARRIVAL * wait_ms:.0f} ms "
            f"{spread(pick('answer', 'arrival_ms'), '{:.0f}')} ms"
        )
        print(
            f"  idle CPU: pumphouse {spread(ph, '{:.2f}')} %, raw {spread(raw, '{:.2f}')} %, "
            f"ratio {ratio:.2f}; broker {spread(pick('pumphouse', 'broker'), '{:.2f}')} % "
            f"(with pumphouse), {spread(pick('raw', 'broker'), '{:.2f}')} % (with raw)"
        )
        print(
            f"  raw produce -> receive, one record per {SPARSE_GAP * 1000:.0f} ms: "
            f"p50 {spread(pick('sparse', 'p50_ms'), '{:.1f}')} ms, "
            f"max {spread(pick('sparse', 'max_ms'), '{:.1f}')} ms"
        )
        print(
            f"  raw drain of {BACKLOG} records (getmany+commit, batch {BATCH}): "
            f"{spread(drain)} rec/s"
        )
    return 0


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=sorted(CHILDREN), required=True)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("wait_ms", type=int)
    args = parser.parse_args(argv)
    result = asyncio.run(CHILDREN[args.child](args.bootstrap, args.topic, args.wait_ms))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.exit(child_main(sys.argv[1:]))
    sys.exit(asyncio.run(main()))
