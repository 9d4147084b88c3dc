"""Two replicas (two ``pumphouse run`` processes) sharing a Redis state store: leases
split evenly, a SIGKILLed replica's shards are taken over from its checkpoints, and a
graceful stop releases every lease."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from handlers.streams import support as s

from pumphouse.config import parse_config
from pumphouse.devstack import KinesisMock, RedisServer
from pumphouse.state import LeaseInfo, open_state_store

pytestmark = pytest.mark.slow

LEASE_SECONDS = 2.0
BATCH_SIZE = 5


def _owners(leases: list[LeaseInfo]) -> Counter[str]:
    return Counter(info.owner for info in leases if info.owner and not info.expired)


async def test_two_replicas_split_shards_and_survive_a_sigkill(
    kinesis_mock: KinesisMock,
    redis_server: RedisServer,
    tmp_path: Path,
    unique_name: str,
) -> None:
    record_file = tmp_path / "records.jsonl"
    state_url = redis_server.url
    processes: list[s.ServiceProcess] = []

    def write_config(replica: str) -> tuple[Path, str]:
        text = s.config_yaml(
            settings=s.settings(
                state_store=state_url,
                kinesis_url=kinesis_mock.url,
                lease_seconds=LEASE_SECONDS,
            ),
            functions={
                "f": s.function(
                    "recorder.handler", record_file, SLEEP_SECONDS="0.05", REPLICA=replica
                )
            },
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": BATCH_SIZE,
                }
            ],
        )
        path = tmp_path / f"{replica}.yaml"
        path.write_text(text)
        return path, text

    store = open_state_store(state_url)
    counter = iter(range(100_000))
    put_total = 0

    async def put(kinesis: Any, count: int) -> None:
        nonlocal put_total
        batch = []
        for _ in range(count):
            i = next(counter)
            batch.append((f"k{i % 16}", {"k": f"k{i % 16}", "i": i}))
        await s.put_records(kinesis, unique_name, batch)
        put_total += count

    def distinct() -> int:
        return len({(x["k"], x["i"]) for x in s.delivered(record_file)})

    try:
        async with s.client("kinesis", kinesis_mock.url) as kinesis:
            arn = await s.create_stream(kinesis, unique_name, 4)
            path_a, text = write_config("A")
            path_b, _ = write_config("B")
            uuid = parse_config(text, base_dir=s.HANDLERS).EventSourceMappings[0].uuid
            prefix = f"{uuid}/"

            async def leases() -> list[LeaseInfo]:
                return await store.leases.list(prefix)

            a = s.ServiceProcess(path_a, log_path=tmp_path / "a.log").start()
            processes.append(a)

            async def a_owns_all() -> bool:
                return sorted(_owners(await leases()).values()) == [4]

            await s.wait_for(a_owns_all, within=30, what="A to lease all 4 shards")
            (owner_a,) = _owners(await leases())
            b = s.ServiceProcess(path_b, log_path=tmp_path / "b.log").start()
            processes.append(b)

            async def split_evenly() -> bool:
                return sorted(_owners(await leases()).values()) == [2, 2]

            await s.wait_for(split_evenly, within=30, what="leases to split 2/2")
            before_kill = {info.name: info for info in await leases()}

            await put(kinesis, 80)
            await s.wait_for(lambda: distinct() >= put_total, what="the first records")
            replicas = {line["replica"] for line in s.read_lines(record_file)}
            assert replicas == {"A", "B"}, "both replicas process records"

            # Keep records flowing while B is killed.
            async def flow() -> None:
                for _ in range(10):
                    await put(kinesis, 10)
                    await asyncio.sleep(0.1)

            flowing = asyncio.create_task(flow())
            await asyncio.sleep(0.3)
            b.kill()
            await flowing
            b_shards = {
                name for name, info in before_kill.items() if info.owner != owner_a
            }
            assert len(b_shards) == 2

            async def a_took_over() -> bool:
                now = {info.name: info for info in await leases()}
                return all(
                    now[name].owner == owner_a
                    and not now[name].expired
                    and now[name].token > before_kill[name].token
                    for name in b_shards
                )

            await s.wait_for(a_took_over, within=4 * LEASE_SECONDS + 5, what="A to take over")
            await s.wait_for(lambda: distinct() >= put_total, within=30, what="every record")

            items = s.delivered(record_file)
            idents = [(x["k"], x["i"]) for x in items]
            assert set(idents) == {(f"k{i % 16}", i) for i in range(put_total)}, "nothing lost"
            duplicates = len(idents) - len(set(idents))
            assert duplicates <= BATCH_SIZE * len(b_shards), (
                f"{duplicates} duplicates: more than one batch per taken-over shard"
            )
            assert s.keyed_order_ok(items)

            # A graceful stop releases every lease at once.
            assert a.stop() == 0, a.log_tail()
            released = await leases()
            assert released and all(info.owner is None for info in released)
    finally:
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop(timeout=5)
        await store.close()
