"""Chaos for a Kafka mapping: the broker restarted empty, unreachable for 30 s, and the
topic deleted and recreated — each under steady traffic, each on its own tansu."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from chaos_support import Ledger, ProxiedTansu, TcpProxy, Watch, record_figures
from integration.test_kafka_helpers import (
    create_topic,
    delete_topic,
    kafka_config,
    read_lines,
    running,
    wait_for,
)

from pumphouse.devstack import TansuBroker, free_port
from pumphouse.service import Service

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

PARTITIONS = 2
BATCH = 20
STALL_AFTER = 4


def delivered(out: Path) -> list[str]:
    return [str(line["value"]) for line in read_lines(out)]


@contextlib.asynccontextmanager
async def traffic(bootstrap: str, topic: str, ledger: Ledger, *, per_second: int = 100,
                  prefix: str = "r") -> AsyncIterator[Callable[[str], None]]:  # fmt: skip
    """Produce ``per_second`` records a second (straight to the broker) until the block
    ends; records whose send failed (the broker was down) are not in the ledger. The
    yielded function renames what is produced next (a new phase)."""
    stop = asyncio.Event()
    names = {"prefix": prefix}

    async def run() -> None:
        n = 0
        producer: AIOKafkaProducer | None = None
        while not stop.is_set():
            try:
                if producer is None:
                    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=2000)
                    await producer.start()
                batch = [f"{names['prefix']}-{n + j}" for j in range(per_second // 10)]
                futures = [
                    await producer.send(topic, value.encode(), partition=i % PARTITIONS)
                    for i, value in enumerate(batch)
                ]
                await asyncio.gather(*futures)
                ledger.produced.extend(batch)
                n += len(batch)
            except Exception:  # the broker is down: nothing of this batch counts
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                producer = None
                await asyncio.sleep(0.5)
                continue
            await asyncio.sleep(0.1)
        if producer is not None:
            await producer.stop()

    task = asyncio.create_task(run())
    try:
        yield lambda prefix: names.update(prefix=prefix)
    finally:
        stop.set()
        await task


def mapping_config(tmp_path: Path, bootstrap: str, topic: str) -> str:
    return kafka_config(
        tmp_path, bootstrap=bootstrap, topic=topic, mapping={"BatchSize": BATCH},
        settings={"StallAfterSeconds": STALL_AFTER},
    )  # fmt: skip


async def healthy(watch: Watch, within: float = 60) -> None:
    await wait_for(
        lambda: (o := watch.sample()) and not o.stalled and o.ready
        and o.result in ("OK", "No records processed"),
        within=within, message="the mapping healthy again",
    )  # fmt: skip


async def test_kafka_broker_unreachable_30s(tmp_path: Path, unique_name: str) -> None:
    proxy_port = free_port()
    broker = ProxiedTansu(advertised_port=proxy_port).start()
    proxy = await TcpProxy(broker.port, port=proxy_port).start()
    out = tmp_path / "records.jsonl"
    ledger = Ledger()
    topic = f"{unique_name}-t"
    try:
        await create_topic(proxy.address, topic, PARTITIONS)
        async with running(mapping_config(tmp_path, proxy.address, topic)) as service:
            watch = Watch(service).start()
            # The broker advertises the proxy, so the producer is cut off too: what it
            # could not produce during the fault is not in the ledger.
            async with traffic(proxy.address, topic, ledger):
                await wait_for(lambda: len(delivered(out)) >= 200, within=30, message="flow")
                fault_at = time.monotonic()
                await proxy.cut()
                await asyncio.sleep(30)
                await proxy.restore()
                healed_at = time.monotonic()
                await asyncio.sleep(3)
            await wait_for(lambda: not ledger.lost(delivered(out)), within=60, message="all")
            await healthy(watch)
            await watch.stop()
    finally:
        await proxy.stop()
        broker.stop()
    during = watch.between(fault_at, healed_at)
    assert any(o.stalled and o.result.startswith("PROBLEM: ") and not o.ready for o in during)
    lost, duplicates = ledger.lost(delivered(out)), Ledger.duplicates(delivered(out))
    assert lost == []
    assert duplicates <= PARTITIONS * BATCH
    record_figures(
        "Kafka broker unreachable 30 s", produced=len(ledger.produced), lost=len(lost),
        duplicates=duplicates,
        stalled_after_s=round(watch.first(lambda o: o.stalled, after=fault_at).at - fault_at, 1),
        recovered_after_s=round(
            watch.first(lambda o: not o.stalled and o.ready, after=healed_at).at - healed_at, 1
        ),
    )  # fmt: skip


async def produce_now(bootstrap: str, topic: str, ledger: Ledger, values: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, v.encode(), partition=i % PARTITIONS)
            for i, v in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    ledger.produced.extend(values)


async def test_kafka_broker_killed_and_restarted_empty(tmp_path: Path, unique_name: str) -> None:
    """Killed right after the last batch finished (its commit in flight), down 8 s, back
    empty on the same port, topic recreated, 5,000 records: every one is delivered."""
    broker = TansuBroker().start()
    out = tmp_path / "records.jsonl"
    ledger = Ledger()
    topic = f"{unique_name}-t"
    try:
        await create_topic(broker.bootstrap, topic, PARTITIONS)
        async with running(mapping_config(tmp_path, broker.bootstrap, topic)) as service:
            watch = Watch(service).start()
            async with traffic(broker.bootstrap, topic, ledger, prefix="before"):
                await wait_for(lambda: len(delivered(out)) >= 300, within=30, message="flow")
            await wait_for(lambda: not ledger.lost(delivered(out)), within=30, message="before")
            fault_at = time.monotonic()
            broker.kill()
            await asyncio.sleep(8)
            broker.start()
            healed_at = time.monotonic()
            await create_topic(broker.bootstrap, topic, PARTITIONS)
            await produce_now(broker.bootstrap, topic, ledger, [f"after-{n}" for n in range(5000)])
            await wait_for(lambda: not ledger.lost(delivered(out)), within=90, message="after")
            await healthy(watch)
            await watch.stop()
    finally:
        broker.stop()
    during = watch.between(fault_at, healed_at)
    assert any(o.stalled and not o.ready for o in during), "the outage was not reported"
    lost, duplicates = ledger.lost(delivered(out)), Ledger.duplicates(delivered(out))
    assert lost == []
    assert duplicates <= PARTITIONS * BATCH
    record_figures(
        "Kafka broker killed, restarted empty, topic recreated, 5,000 records",
        produced=len(ledger.produced), lost=len(lost), duplicates=duplicates,
        stalled_after_s=round(watch.first(lambda o: o.stalled, after=fault_at).at - fault_at, 1),
        recovered_after_s=round(
            watch.first(lambda o: not o.stalled and o.ready, after=healed_at).at - healed_at, 1
        ),
    )  # fmt: skip


async def test_kafka_topic_deleted_and_recreated(tmp_path: Path, unique_name: str) -> None:
    """The consumer's positions (hundreds per partition) are beyond the recreated log's
    end: each partition restarts at its beginning, counted; nothing new is skipped."""
    broker = TansuBroker().start()
    out = tmp_path / "records.jsonl"
    ledger = Ledger()
    topic = f"{unique_name}-t"
    try:
        await create_topic(broker.bootstrap, topic, PARTITIONS)
        async with running(mapping_config(tmp_path, broker.bootstrap, topic)) as service:
            watch = Watch(service).start()
            async with traffic(broker.bootstrap, topic, ledger, prefix="before"):
                await wait_for(lambda: len(delivered(out)) >= 600, within=30, message="flow")
            await wait_for(lambda: not ledger.lost(delivered(out)), within=30, message="before")
            fault_at = time.monotonic()
            await delete_topic(broker.bootstrap, topic)
            await create_topic(broker.bootstrap, topic, PARTITIONS)
            await produce_now(broker.bootstrap, topic, ledger, [f"after-{n}" for n in range(100)])
            await wait_for(lambda: not ledger.lost(delivered(out)), within=60, message="after")
            healed_at = time.monotonic()
            await healthy(watch)
            await watch.stop()
            resets = service.metrics.registry.get_sample_value(
                "pumphouse_position_resets_total",
                {**_labels(service), "reason": "ahead_of_log_end"},
            )
    finally:
        broker.stop()
    lost, duplicates = ledger.lost(delivered(out)), Ledger.duplicates(delivered(out))
    assert lost == []
    assert duplicates <= PARTITIONS * BATCH
    assert resets == PARTITIONS
    record_figures(
        "Kafka topic deleted and recreated", produced=len(ledger.produced), lost=len(lost),
        duplicates=duplicates, position_resets=resets,
        recovered_after_s=round(healed_at - fault_at, 1),
    )  # fmt: skip


def _labels(service: Service) -> dict[str, str]:
    view = service.mapping_views()[0]
    return {"mapping": view["Label"], "function": view["FunctionName"], "source": "kafka"}


async def test_handler_timeouts_ooms_and_crashes_at_ten_percent_under_load(
    tmp_path: Path, tansu: TansuBroker, unique_name: str
) -> None:
    """10 % of invocations time out, run out of memory, crash or raise; a failed batch
    is retried until it succeeds (no retry limit): every record is processed, and a
    record is never processed twice (failed invocations record nothing)."""
    out = tmp_path / "records.jsonl"
    faults = tmp_path / "faults.txt"
    ledger = Ledger()
    topic = f"{unique_name}-t"
    await create_topic(tansu.bootstrap, topic, PARTITIONS)
    config = kafka_config(
        tmp_path, bootstrap=tansu.bootstrap, topic=topic, handler="faulty.handler",
        env={"FAULTS_TO": str(faults), "FAULT_PERCENT": "10"}, timeout=1,
        mapping={"BatchSize": BATCH}, settings={"StallAfterSeconds": 30},
    )  # fmt: skip
    started = time.monotonic()
    async with running(config) as service:
        watch = Watch(service).start()
        await produce_now(tansu.bootstrap, topic, ledger, [f"r-{n}" for n in range(3000)])
        await wait_for(lambda: not ledger.lost(delivered(out)), within=180, message="all")
        elapsed = time.monotonic() - started
        await healthy(watch)
        await watch.stop()
    kinds = faults.read_text().split() if faults.exists() else []
    lost, duplicates = ledger.lost(delivered(out)), Ledger.duplicates(delivered(out))
    assert len(set(kinds)) == 4, kinds  # each kind of fault happened
    assert lost == []
    assert duplicates == 0
    assert any(o.result == "PROBLEM: Function call failed" for o in watch.seen)
    assert not any(o.stalled for o in watch.seen)  # slowed down, never stalled
    record_figures(
        "Handler timeouts / OOM / crashes / errors at 10 % (3,000 records)",
        produced=len(ledger.produced), lost=len(lost), duplicates=duplicates,
        faults=len(kinds), seconds=round(elapsed, 1),
    )  # fmt: skip


async def test_sigterm_with_batches_in_flight(
    tmp_path: Path, tansu: TansuBroker, unique_name: str
) -> None:
    """``pumphouse run`` gets SIGTERM while every partition has a batch in the function:
    the batches finish, their offsets are committed, exit 0; the next run resumes there
    — nothing lost, nothing delivered twice."""
    from handlers.streams.support import ServiceProcess

    out = tmp_path / "records.jsonl"
    ledger = Ledger()
    topic = f"{unique_name}-t"
    await create_topic(tansu.bootstrap, topic, PARTITIONS)
    config = tmp_path / "pumphouse.yaml"
    text = kafka_config(
        tmp_path, bootstrap=tansu.bootstrap, topic=topic, env={"SLEEP_MS": "400"},
        mapping={"BatchSize": BATCH}, settings={"ShutdownTimeoutSeconds": 10},
    )  # fmt: skip
    config.write_text(text)
    await produce_now(tansu.bootstrap, topic, ledger, [f"r-{n}" for n in range(400)])
    first = ServiceProcess(config, log_path=tmp_path / "first.log").start()
    try:
        await wait_for(lambda: len(delivered(out)) >= 2 * BATCH, within=60, message="flow")
        in_flight_at = len(delivered(out))
        assert first.proc is not None
        first.proc.send_signal(15)
        status = await asyncio.to_thread(first.proc.wait, 30)
    finally:
        first.stop()
    assert status == 0, first.log_tail()
    after_stop = len(delivered(out))
    second = ServiceProcess(config, log_path=tmp_path / "second.log").start()
    try:
        await wait_for(lambda: not ledger.lost(delivered(out)), within=90, message="all")
    finally:
        second.stop()
    lost, duplicates = ledger.lost(delivered(out)), Ledger.duplicates(delivered(out))
    assert lost == []
    assert duplicates == 0
    record_figures(
        "SIGTERM with batches in flight (pumphouse run, Kafka)", produced=len(ledger.produced),
        lost=len(lost), duplicates=duplicates,
        finished_after_sigterm=after_stop - in_flight_at, exit_status=status,
    )  # fmt: skip
