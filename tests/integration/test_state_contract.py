"""One contract for both state stores, against a real redis-server and real SQLite files.

Every ``backend``-parametrized test runs once on Redis (a ``redis-server`` this module
starts on a free loopback port) and once on SQLite (a file under ``tmp_path``). The
Redis-only tests at the end kill, stop and restart their own servers to check the
failure behaviour; the SQLite-only ones hold the file's write lock from outside.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError
from structlog.testing import capture_logs

from pumphouse.devstack import RedisServer, free_port
from pumphouse.errors import LeaseLost, StaleFencingToken, StateStoreError, VersionConflict
from pumphouse.state import (
    Checkpoint,
    Lease,
    StateStore,
    check_state_store,
    open_state_store,
    retry_state,
)
from pumphouse.state.mappings import StoredMapping
from pumphouse.telemetry.metrics import get_metrics

BACKENDS = ["redis", "sqlite"]
SHORT_TTL = 0.3


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    return f"sqlite:///{tmp_path}/state.db"  # tmp_path is absolute: sqlite:////tmp/...


@pytest.fixture
def key_prefix() -> str:
    """A fresh namespace per test, so tests sharing the Redis server never meet."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(store_url: str, key_prefix: str) -> AsyncIterator[StateStore]:
    state = open_state_store(store_url, key_prefix=key_prefix)
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
async def replica(store_url: str, key_prefix: str) -> AsyncIterator[StateStore]:
    """A second store object on the same backend: another replica (own connections)."""
    state = open_state_store(store_url, key_prefix=key_prefix)
    try:
        yield state
    finally:
        await state.close()


def errors_counted(store: str, operation: str) -> float:
    value = get_metrics().registry.get_sample_value(
        "pumphouse_state_store_errors_total", {"store": store, "operation": operation}
    )
    return value or 0.0


def store_up(store: str) -> float | None:
    return get_metrics().registry.get_sample_value("pumphouse_state_store_up", {"store": store})


FULL = Checkpoint(
    sequence_number="49590338271490256608559692538361571095921575989136588898",
    retries={
        "49590338271490256608559692538361571095921575989136588801": 2,
        "49590338271490256608559692538361571095921575989136588850": 7,
    },
    window={"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T00:05:00Z",
            "state": {"count": 3, "ids": [], "nested": {}, "big": 2**60, "ratio": 0.1}},
    shard_ended=True,
    stream_created=1733390000.123,
)


def same_content(a: Checkpoint | None, b: Checkpoint) -> bool:
    assert a is not None
    return (a.sequence_number, a.retries, a.window, a.shard_ended, a.stream_created) == (
        b.sequence_number, b.retries, b.window, b.shard_ended, b.stream_created
    )


# --- checkpoints ------------------------------------------------------------------------


async def test_stream_creation_time_is_kept_with_the_checkpoint_and_optional(
    store: StateStore,
) -> None:
    await store.checkpoints.put("orders", "shard-1", FULL)
    listed = await store.checkpoints.list("orders")
    assert listed["shard-1"].stream_created == FULL.stream_created
    await store.checkpoints.put("orders", "shard-1", Checkpoint(sequence_number="7"))
    got = await store.checkpoints.get("orders", "shard-1")
    assert got is not None
    assert got.stream_created is None


async def test_get_of_unknown_shard_is_none(store: StateStore) -> None:
    assert await store.checkpoints.get("orders", "shardId-000000000000") is None
    assert await store.checkpoints.list("orders") == {}


async def test_put_then_get_round_trips_every_field(store: StateStore) -> None:
    before = time.time()
    await store.checkpoints.put("orders", "shard-1", FULL)
    got = await store.checkpoints.get("orders", "shard-1")
    assert same_content(got, FULL)
    assert got is not None
    assert before - 1 <= got.updated_at <= time.time() + 1  # set by the store, not 0.0

    await store.checkpoints.put("orders", "shard-1", Checkpoint(sequence_number="7"))
    assert same_content(
        await store.checkpoints.get("orders", "shard-1"), Checkpoint(sequence_number="7")
    )


async def test_retry_counters_of_several_batches_round_trip_and_replace(
    store: StateStore, replica: StateStore
) -> None:
    # One counter per retrying batch (one per lane), keyed by the batch's first sequence
    # number; each write replaces the whole set: a counter left out is gone.
    lanes = {"49590338271490256608559692538361571095921575989136588801": 3, "2": 1, "10": 10000}
    await store.checkpoints.put("orders", "shard-1", Checkpoint(sequence_number="1", retries=lanes))
    got = await replica.checkpoints.get("orders", "shard-1")
    assert got is not None and got.retries == lanes
    assert (await replica.checkpoints.list("orders"))["shard-1"].retries == lanes

    fewer = {"2": 2}
    await store.checkpoints.put("orders", "shard-1", Checkpoint(sequence_number="1", retries=fewer))
    got = await replica.checkpoints.get("orders", "shard-1")
    assert got is not None and got.retries == fewer

    await store.checkpoints.put("orders", "shard-1", Checkpoint(sequence_number="3"))
    got = await replica.checkpoints.get("orders", "shard-1")
    assert got is not None and got.retries == {}


async def test_put_ignores_caller_updated_at(store: StateStore) -> None:
    await store.checkpoints.put("m", "s", Checkpoint(sequence_number="1", updated_at=5.0))
    got = await store.checkpoints.get("m", "s")
    assert got is not None
    assert got.updated_at > 1_000_000_000


async def test_list_and_delete(store: StateStore, replica: StateStore) -> None:
    for shard in ("shard-2", "shard-0", "shard-1"):
        await store.checkpoints.put("orders", shard, Checkpoint(sequence_number=shard[-1]))
    await store.checkpoints.put("payments", "shard-0", Checkpoint(sequence_number="99"))

    listed = await replica.checkpoints.list("orders")
    assert list(listed) == ["shard-0", "shard-1", "shard-2"]
    assert [c.sequence_number for c in listed.values()] == ["0", "1", "2"]

    await store.checkpoints.delete("orders", "shard-1")
    await store.checkpoints.delete("orders", "shard-does-not-exist")  # no-op
    assert await replica.checkpoints.get("orders", "shard-1") is None
    assert sorted(await store.checkpoints.list("orders")) == ["shard-0", "shard-2"]
    assert (await store.checkpoints.list("payments"))["shard-0"].sequence_number == "99"


async def test_window_that_is_not_json_is_refused_before_writing(store: StateStore) -> None:
    with pytest.raises(TypeError):
        await store.checkpoints.put("m", "s", Checkpoint(window={"when": object()}))
    assert await store.checkpoints.get("m", "s") is None


async def test_namespaces_are_separate(store_url: str, store: StateStore) -> None:
    other = open_state_store(store_url, key_prefix="other-" + uuid.uuid4().hex[:8])
    try:
        await store.checkpoints.put("m", "s", Checkpoint(sequence_number="1"))
        assert await other.checkpoints.get("m", "s") is None
        assert await other.leases.acquire("m/s", "b", ttl=5) is not None
        assert await store.leases.acquire("m/s", "a", ttl=5) is not None
    finally:
        await other.close()


# --- fenced writes ----------------------------------------------------------------------


async def test_put_and_delete_with_current_lease(store: StateStore, replica: StateStore) -> None:
    lease = await store.leases.acquire("orders/shard-1", "replica-a", ttl=5)
    assert lease is not None
    await store.checkpoints.put("orders", "shard-1", Checkpoint(sequence_number="10"), lease=lease)
    assert (await replica.checkpoints.get("orders", "shard-1") or FULL).sequence_number == "10"
    await store.checkpoints.delete("orders", "shard-1", lease=lease)
    assert await replica.checkpoints.get("orders", "shard-1") is None


async def test_put_with_lease_never_acquired_is_refused(store: StateStore) -> None:
    forged = Lease(name="orders/shard-9", owner="a", token=1, expires_at=time.time() + 60)
    with pytest.raises(StaleFencingToken):
        await store.checkpoints.put(
            "orders", "shard-9", Checkpoint(sequence_number="1"), lease=forged
        )
    assert await store.checkpoints.get("orders", "shard-9") is None


async def test_put_with_wrong_owner_or_token_is_refused(store: StateStore) -> None:
    lease = await store.leases.acquire("m/s", "a", ttl=5)
    assert lease is not None
    for bad in (
        Lease(name=lease.name, owner="b", token=lease.token, expires_at=lease.expires_at),
        Lease(name=lease.name, owner="a", token=lease.token + 1, expires_at=lease.expires_at),
        Lease(name=lease.name, owner="a", token=lease.token - 1, expires_at=lease.expires_at),
    ):
        with pytest.raises(StaleFencingToken):
            await store.checkpoints.put("m", "s", Checkpoint(sequence_number="x"), lease=bad)
        with pytest.raises(StaleFencingToken):
            await store.checkpoints.delete("m", "s", lease=bad)
    assert await store.checkpoints.get("m", "s") is None


async def test_stale_token_refused_after_steal(store: StateStore, replica: StateStore) -> None:
    """The worked example of pumphouse.state: A is paused, B steals, A's write bounces."""
    a = await store.leases.acquire("orders/shard-1", "A", ttl=10)
    assert a is not None
    await store.checkpoints.put("orders", "shard-1", Checkpoint(sequence_number="4950"), lease=a)

    b = await replica.leases.steal("orders/shard-1", "B", ttl=10, expected_owner="A")
    assert b is not None
    assert b.owner == "B"
    assert b.token > a.token
    await replica.checkpoints.put("orders", "shard-1", Checkpoint(sequence_number="4960"), lease=b)

    with pytest.raises(StaleFencingToken, match="held by 'B'"):
        await store.checkpoints.put(
            "orders", "shard-1", Checkpoint(sequence_number="4955"), lease=a
        )
    with pytest.raises(StaleFencingToken):
        await store.checkpoints.delete("orders", "shard-1", lease=a)
    with pytest.raises(LeaseLost):
        await store.leases.renew(a, ttl=10)
    assert (await store.checkpoints.get("orders", "shard-1") or FULL).sequence_number == "4960"

    await replica.leases.release(b)
    again = await store.leases.acquire("orders/shard-1", "A", ttl=10)
    assert again is not None
    assert again.token > b.token


# --- leases -----------------------------------------------------------------------------


async def test_acquire_is_exclusive_and_reacquire_renews(
    store: StateStore, replica: StateStore
) -> None:
    first = await store.leases.acquire("m/s", "a", ttl=5)
    assert first is not None
    assert (first.name, first.owner) == ("m/s", "a")
    assert first.token >= 1
    assert await replica.leases.acquire("m/s", "b", ttl=5) is None

    await asyncio.sleep(0.01)
    again = await replica.leases.acquire("m/s", "a", ttl=5)
    assert again is not None
    assert again.token == first.token
    assert again.expires_at > first.expires_at


async def test_renew_all_renews_each_lease_or_reports_its_loss(
    store: StateStore, replica: StateStore
) -> None:
    ttl = 5.0
    kept = [await store.leases.acquire(f"m/s{i}", "a", ttl=ttl) for i in range(3)]
    assert all(lease is not None for lease in kept)
    mine = [lease for lease in kept if lease is not None]
    stolen = await replica.leases.steal("m/s1", "b", ttl=ttl, expected_owner="a")
    assert stolen is not None
    short = await store.leases.acquire("m/short", "a", ttl=0.05)
    assert short is not None
    await asyncio.sleep(0.2)

    results = await store.leases.renew_all([*mine, short], ttl=ttl)

    assert len(results) == 4
    first, lost, third, expired = results
    assert isinstance(first, Lease) and isinstance(third, Lease)
    assert first.token == mine[0].token and first.expires_at > mine[0].expires_at
    assert third.token == mine[2].token and third.expires_at > mine[2].expires_at
    assert isinstance(lost, LeaseLost) and "'b'" in str(lost)
    assert isinstance(expired, LeaseLost) and "expired before renewal" in str(expired)
    assert await store.leases.renew_all([], ttl=ttl) == []
    # What renew_all reported is what renew says of the same leases.
    with pytest.raises(LeaseLost):
        await store.leases.renew(mine[1], ttl=ttl)
    assert (await store.leases.renew(first, ttl=ttl)).token == first.token


async def test_renew_extends_and_keeps_token(store: StateStore) -> None:
    ttl = 0.4
    lease = await store.leases.acquire("m/s", "a", ttl=ttl)
    assert lease is not None
    for _ in range(4):
        await asyncio.sleep(0.15)
        renewed = await store.leases.renew(lease, ttl=ttl)
        assert renewed.token == lease.token
        assert renewed.expires_at > lease.expires_at
        lease = renewed
    # 0.6 s after acquiring with a 0.4 s ttl, still ours thanks to the renewals:
    await store.checkpoints.put("m", "s", Checkpoint(sequence_number="1"), lease=lease)


async def test_expiry_frees_the_lease_for_another_owner(
    store: StateStore, replica: StateStore
) -> None:
    a = await store.leases.acquire("m/s", "a", ttl=SHORT_TTL)
    assert a is not None
    assert await replica.leases.acquire("m/s", "b", ttl=SHORT_TTL) is None

    await asyncio.sleep(SHORT_TTL + 0.1)
    # Expired but not yet taken: a's fenced write is already refused.
    with pytest.raises(StaleFencingToken, match="expired"):
        await store.checkpoints.put("m", "s", Checkpoint(sequence_number="late"), lease=a)
    with pytest.raises(LeaseLost, match="expired"):
        await store.leases.renew(a, ttl=5)

    infos = await replica.leases.list("m/")
    assert [(i.name, i.owner, i.expired) for i in infos] == [("m/s", "a", True)]

    b = await replica.leases.acquire("m/s", "b", ttl=5)
    assert b is not None
    assert b.token > a.token
    with pytest.raises(LeaseLost):
        await store.leases.renew(a, ttl=5)
    with pytest.raises(StaleFencingToken):
        await store.checkpoints.put("m", "s", Checkpoint(sequence_number="late"), lease=a)
    await replica.checkpoints.put("m", "s", Checkpoint(sequence_number="b1"), lease=b)


async def test_same_owner_gets_a_new_token_after_expiry(store: StateStore) -> None:
    first = await store.leases.acquire("m/s", "a", ttl=SHORT_TTL)
    assert first is not None
    await asyncio.sleep(SHORT_TTL + 0.1)
    second = await store.leases.acquire("m/s", "a", ttl=5)
    assert second is not None
    assert second.token > first.token
    with pytest.raises(StaleFencingToken):  # the old incarnation is fenced off
        await store.checkpoints.put("m", "s", Checkpoint(sequence_number="x"), lease=first)


async def test_steal_with_expected_owner_is_compare_and_set(
    store: StateStore, replica: StateStore
) -> None:
    a = await store.leases.acquire("m/s", "a", ttl=5)
    assert a is not None
    assert await replica.leases.steal("m/s", "b", ttl=5, expected_owner="c") is None
    assert await replica.leases.renew(a, ttl=5)  # nothing changed

    b = await replica.leases.steal("m/s", "b", ttl=5, expected_owner="a")
    assert b is not None
    assert b.owner == "b"
    assert b.token > a.token
    # A second balancer acting on the same (now stale) view loses the race:
    assert await store.leases.steal("m/s", "c", ttl=5, expected_owner="a") is None
    assert [(i.owner, i.token) for i in await store.leases.list("m/s")] == [("b", b.token)]

    c = await store.leases.steal("m/s", "c", ttl=5)  # unconditional
    assert c is not None
    assert c.token > b.token
    with pytest.raises(LeaseLost):
        await replica.leases.renew(b, ttl=5)


async def test_steal_of_free_or_expired_lease(store: StateStore) -> None:
    fresh = await store.leases.steal("m/new", "a", ttl=5)
    assert fresh is not None
    assert await store.leases.steal("m/none", "a", ttl=5, expected_owner="x") is None

    old = await store.leases.acquire("m/old", "x", ttl=SHORT_TTL)
    assert old is not None
    await asyncio.sleep(SHORT_TTL + 0.1)
    # Expired, but still recorded as x's: a CAS on x succeeds.
    taken = await store.leases.steal("m/old", "a", ttl=5, expected_owner="x")
    assert taken is not None
    assert taken.token > old.token


async def test_tokens_strictly_increase_across_release_and_reacquire(
    store: StateStore, replica: StateStore
) -> None:
    tokens: list[int] = []
    for round_ in range(6):
        mgr = store.leases if round_ % 2 == 0 else replica.leases
        owner = "a" if round_ % 3 else "b"
        lease = await mgr.acquire("m/s", owner, ttl=5)
        assert lease is not None
        tokens.append(lease.token)
        await mgr.release(lease)
    lease = await store.leases.acquire("m/s", "a", ttl=SHORT_TTL)
    assert lease is not None
    tokens.append(lease.token)
    await asyncio.sleep(SHORT_TTL + 0.1)
    stolen = await replica.leases.steal("m/s", "b", ttl=5)
    assert stolen is not None
    tokens.append(stolen.token)
    assert tokens == sorted(set(tokens)), tokens  # strictly increasing, never reused


async def test_release_frees_and_is_a_noop_when_not_ours(
    store: StateStore, replica: StateStore
) -> None:
    a = await store.leases.acquire("m/s", "a", ttl=5)
    assert a is not None
    b = await replica.leases.steal("m/s", "b", ttl=5)
    assert b is not None
    await store.leases.release(a)  # no longer a's: must not free b's lease
    assert [(i.owner, i.expired) for i in await store.leases.list("m/")] == [("b", False)]

    await replica.leases.release(b)
    await replica.leases.release(b)  # twice is fine
    [info] = await store.leases.list("m/")
    assert (info.owner, info.expired, info.token) == (None, True, b.token)
    with pytest.raises(LeaseLost):
        await replica.leases.renew(b, ttl=5)
    with pytest.raises(StaleFencingToken):
        await replica.checkpoints.put("m", "s", Checkpoint(sequence_number="x"), lease=b)
    assert await store.leases.acquire("m/s", "c", ttl=5) is not None


async def test_list_leases_by_prefix(store: StateStore) -> None:
    assert await store.leases.list("orders/") == []
    held = await store.leases.acquire("orders/shard-2", "a", ttl=5)
    short = await store.leases.acquire("orders/shard-1", "b", ttl=SHORT_TTL)
    other = await store.leases.acquire("orders-v2/shard-1", "a", ttl=5)
    unicode_name = await store.leases.acquire("orders/shard-é", "c", ttl=5)
    assert held and short and other and unicode_name
    await asyncio.sleep(SHORT_TTL + 0.1)

    infos = await store.leases.list("orders/")
    assert [(i.name, i.owner, i.token, i.expired) for i in infos] == [
        ("orders/shard-1", "b", short.token, True),
        ("orders/shard-2", "a", held.token, False),
        ("orders/shard-é", "c", unicode_name.token, False),
    ]
    assert abs(infos[1].expires_at - held.expires_at) < 0.01
    assert [i.name for i in await store.leases.list("orders")] == [
        "orders-v2/shard-1", "orders/shard-1", "orders/shard-2", "orders/shard-é",
    ]
    assert len(await store.leases.list("")) == 4
    assert await store.leases.list("payments/") == []


async def test_invalid_lease_arguments(store: StateStore) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await store.leases.acquire("m/s", "a", ttl=0)
    with pytest.raises(ValueError, match="owner"):
        await store.leases.acquire("m/s", "", ttl=1)
    assert await store.leases.list("m/") == []


async def test_concurrent_acquires_in_one_process_have_one_winner(
    store: StateStore, replica: StateStore
) -> None:
    for round_ in range(10):
        name = f"m/race-{round_}"
        results = await asyncio.gather(*(
            (store if i % 2 else replica).leases.acquire(name, f"owner-{i}", ttl=5)
            for i in range(8)
        ))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, results


# --- stored mappings (the API's) ---------------------------------------------------------


def _stored(uuid_: str, batch_size: int = 10, **kwargs: object) -> StoredMapping:
    return StoredMapping(
        uuid=uuid_,
        spec={"FunctionName": "f", "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q",
              "BatchSize": batch_size},
        tags={"team": "orders"},
        last_modified=1700000000.5,
        **kwargs,  # type: ignore[arg-type]  # the optional fields of StoredMapping
    )


async def test_stored_mapping_round_trips_with_versions(
    store: StateStore, replica: StateStore
) -> None:
    assert await store.mappings.get("m-1") is None
    assert await store.mappings.revision() == 0
    first = await store.mappings.put(_stored("m-1"), expected_version=0)
    assert first.version == 1
    override = _stored("m-2", origin="file", file_fingerprint="abc", deleted=True)
    await replica.mappings.put(override, expected_version=0)
    got = await replica.mappings.get("m-1")
    assert got == first
    assert [m.uuid for m in await store.mappings.list()] == ["m-1", "m-2"]
    assert (await store.mappings.list())[1] == StoredMapping(
        **{**override.__dict__, "version": 1}
    )
    assert await store.mappings.revision() == 2


async def test_stored_mapping_writes_are_compare_and_set(
    store: StateStore, replica: StateStore
) -> None:
    await store.mappings.put(_stored("m"), expected_version=0)
    with pytest.raises(VersionConflict, match="version 1, not 0"):
        await replica.mappings.put(_stored("m", 20), expected_version=0)
    second = await replica.mappings.put(_stored("m", 20), expected_version=1)
    assert second.version == 2
    with pytest.raises(VersionConflict):
        await store.mappings.put(_stored("m", 30), expected_version=1)
    with pytest.raises(VersionConflict):
        await store.mappings.delete("m", expected_version=1)
    revision = await store.mappings.revision()
    got = await store.mappings.get("m")
    assert got is not None and got.spec["BatchSize"] == 20
    await store.mappings.delete("m", expected_version=2)
    assert await replica.mappings.get("m") is None
    assert await replica.mappings.list() == []
    assert await replica.mappings.revision() == revision + 1
    assert (await store.mappings.put(_stored("m"), expected_version=0)).version == 1


async def test_concurrent_mapping_writes_have_one_winner(
    store: StateStore, replica: StateStore
) -> None:
    await store.mappings.put(_stored("m"), expected_version=0)
    results = await asyncio.gather(
        *(
            (store if i % 2 else replica).mappings.put(_stored("m", 100 + i), expected_version=1)
            for i in range(6)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, StoredMapping)]
    assert len(winners) == 1
    assert all(isinstance(r, VersionConflict) for r in results if r not in winners)
    got = await replica.mappings.get("m")
    assert got is not None and got.version == 2
    assert got.spec == winners[0].spec


# --- two processes racing ---------------------------------------------------------------

RACER = r"""
import asyncio, json, sys, time
from pumphouse.state import open_state_store

url, prefix, owner = sys.argv[1:4]
rounds, slot = int(sys.argv[4]), float(sys.argv[5])

async def main():
    store = open_state_store(url, key_prefix=prefix)
    await store.ping()  # connected (Redis) / schema created (SQLite) before the race
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    won = []
    for i in range(rounds):
        delay = start + i * slot - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lease = await store.leases.acquire(f"race/{i:04d}", owner, ttl=60)
        if lease is not None:
            won.append([i, lease.token])
    await store.close()
    print("won", json.dumps(won), flush=True)

asyncio.run(main())
"""


async def test_two_processes_race_for_each_lease(
    store_url: str, key_prefix: str, store: StateStore
) -> None:
    rounds, slot = 60, 0.01
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", RACER, store_url, key_prefix, owner, str(rounds), str(slot),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for owner in ("proc-a", "proc-b")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = b""
            while line.strip() != b"ready":  # (a log line may come first)
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=15)
                assert line, "racer exited before it was ready"
        start = f"{time.time() + 0.2}\n".encode()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(start)
            await proc.stdin.drain()
        outputs = await asyncio.wait_for(
            asyncio.gather(*(proc.communicate() for proc in procs)), timeout=20
        )
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0]
    won = {
        owner: {
            i: token
            for line in out.decode().splitlines()
            if line.startswith("won ")
            for i, token in json.loads(line[4:])
        }
        for owner, (out, _) in zip(("proc-a", "proc-b"), outputs, strict=True)
    }
    # Exactly one winner per round, with the name's first token.
    assert not set(won["proc-a"]) & set(won["proc-b"])
    assert set(won["proc-a"]) | set(won["proc-b"]) == set(range(rounds))
    assert {token for owners in won.values() for token in owners.values()} == {1}
    # And the store agrees about who holds what.
    holders = {info.name: info.owner for info in await store.leases.list("race/")}
    for owner, rounds_won in won.items():
        for i in rounds_won:
            assert holders[f"race/{i:04d}"] == owner


# --- restarts ---------------------------------------------------------------------------


async def test_checkpoint_and_tokens_survive_a_restart(backend: str, tmp_path: Path) -> None:
    server: RedisServer | None = None
    if backend == "redis":
        server = RedisServer(persistent=True, workdir=tmp_path / "redis")
        server.start()
        url = server.url
    else:
        url = f"sqlite:///{tmp_path}/state.db"
    try:
        first = open_state_store(url, key_prefix="restart")
        lease = await first.leases.acquire("orders/shard-1", "a", ttl=60)
        assert lease is not None
        await first.checkpoints.put("orders", "shard-1", FULL, lease=lease)
        await first.leases.release(lease)
        if server is not None:
            old_pid = server.pid
            server.kill()  # SIGKILL: no shutdown save, only the append-only file
            server.start()
            assert server.pid != old_pid
            # The store object that lived through the crash works again.
            assert same_content(await first.checkpoints.get("orders", "shard-1"), FULL)
        await first.close()

        second = open_state_store(url, key_prefix="restart")
        try:
            assert same_content(await second.checkpoints.get("orders", "shard-1"), FULL)
            assert list(await second.checkpoints.list("orders")) == ["shard-1"]
            again = await second.leases.acquire("orders/shard-1", "b", ttl=60)
            assert again is not None
            assert again.token > lease.token  # the fence counter survived too
        finally:
            await second.close()
    finally:
        if server is not None:
            server.stop()


# --- URLs and health checks -------------------------------------------------------------


async def test_check_state_store_passes_when_reachable(store_url: str) -> None:
    await check_state_store(store_url)  # raises if not
    assert store_up("redis" if store_url.startswith("redis") else "sqlite") == 1


async def test_check_state_store_unreachable_redis_is_one_clear_line() -> None:
    port = free_port()
    with pytest.raises(StateStoreError) as caught:
        await check_state_store(f"redis://127.0.0.1:{port}/0")
    assert str(caught.value) == f"cannot reach Redis at 127.0.0.1:{port}: Connection refused"
    assert not isinstance(caught.value, RedisError)
    assert store_up("redis") == 0


async def test_check_state_store_unopenable_sqlite(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateStoreError) as caught:
        await check_state_store(f"sqlite:///{blocker}/state.db")
    message = str(caught.value)
    assert message.startswith(f"cannot open SQLite database {blocker}/state.db: ")
    assert "\n" not in message


def test_unknown_scheme_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"unsupported state store URL 'postgres://\*\*\*@db/x'"):
        open_state_store("postgres://user:secret@db/x")
    with pytest.raises(ValueError, match=re.escape("sqlite:////absolute/path.db")):
        open_state_store("memcached://localhost")


# --- Redis outages ----------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server this test may kill, stop and restart."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)  # in case a test left it stopped
        server.stop()


async def test_redis_killed_mid_operation_then_recovers(own_redis: RedisServer) -> None:
    store = open_state_store(own_redis.url, key_prefix="outage", timeout=1.0)
    await store.checkpoints.put("m", "s", Checkpoint(sequence_number="0"))
    assert store_up("redis") == 1
    puts_failed = errors_counted("redis", "put")
    gets_failed = errors_counted("redis", "get")

    async def keep_writing() -> tuple[BaseException, int]:
        written = 0
        while True:
            try:
                await store.checkpoints.put("m", "s", Checkpoint(sequence_number=str(written)))
            except Exception as err:  # the test inspects whatever escapes
                return err, written
            written += 1

    try:
        with capture_logs() as logs:
            writer = asyncio.create_task(keep_writing())
            await asyncio.sleep(0.1)
            own_redis.kill()
            err, written = await asyncio.wait_for(writer, timeout=5)
            for _ in range(3):  # while it stays down, every operation fails the same way
                with pytest.raises(StateStoreError) as caught:
                    await store.checkpoints.get("m", "s")
        assert written > 0
        assert type(err) is StateStoreError, repr(err)  # typed, not a redis exception
        assert isinstance(err.__cause__, RedisError)
        assert str(err).startswith(f"Redis at 127.0.0.1:{own_redis.port}: ")
        assert "\n" not in str(err)
        assert str(caught.value) == f"Redis at 127.0.0.1:{own_redis.port}: Connection refused"
        assert errors_counted("redis", "put") == puts_failed + 1
        assert errors_counted("redis", "get") == gets_failed + 3
        assert store_up("redis") == 0
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [e["event"] for e in warnings] == ["state_store_down"]  # one per outage
        assert warnings[0]["store"] == "redis"

        own_redis.start()  # same port, empty (not persistent)
        await store.checkpoints.put("m", "s", Checkpoint(sequence_number="after"))
        assert (await store.checkpoints.get("m", "s") or FULL).sequence_number == "after"
        assert store_up("redis") == 1
        lease = await store.leases.acquire("m/s", "a", ttl=5)  # scripts reloaded (NOSCRIPT)
        assert lease is not None
    finally:
        await store.close()


async def test_redis_hung_server_times_out(own_redis: RedisServer) -> None:
    store = open_state_store(own_redis.url, key_prefix="hung", timeout=0.3)
    try:
        await store.ping()
        assert own_redis.pid is not None
        os.kill(own_redis.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StateStoreError, match=r"timed out after 0\.3s"):
                await store.leases.acquire("m/s", "a", ttl=5)
            assert time.monotonic() - started < 2.0
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        await store.ping()
        assert await store.leases.list("m/") is not None
    finally:
        await store.close()


async def test_retry_state_rides_out_a_redis_outage(own_redis: RedisServer) -> None:
    store = open_state_store(own_redis.url, key_prefix="retry", timeout=0.5)
    try:
        await store.ping()
        own_redis.kill()
        attempts = 0

        async def write() -> None:
            nonlocal attempts
            attempts += 1
            await store.checkpoints.put("m", "s", Checkpoint(sequence_number="42"))

        task = asyncio.create_task(retry_state(write, what="checkpoint m/s", max_delay=0.2))
        await asyncio.sleep(0.5)
        assert not task.done()
        own_redis.start()
        await asyncio.wait_for(task, timeout=5)
        assert attempts > 1
        assert (await store.checkpoints.get("m", "s") or FULL).sequence_number == "42"

        # With the store down and stop set, retry_state gives up with the typed error.
        own_redis.kill()
        stop = asyncio.Event()
        reader = asyncio.create_task(
            retry_state(lambda: store.checkpoints.get("m", "s"), what="read", stop=stop)
        )
        await asyncio.sleep(0.2)
        stop.set()
        with pytest.raises(StateStoreError, match="Connection refused"):
            await asyncio.wait_for(reader, timeout=2)
    finally:
        await store.close()


# --- SQLite specifics -------------------------------------------------------------------


async def test_sqlite_write_lock_held_elsewhere_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = open_state_store(f"sqlite:///{path}", timeout=0.2)
    try:
        await store.ping()  # creates the schema
        failed = errors_counted("sqlite", "put")
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StateStoreError, match="database is locked"):
                await store.checkpoints.put("m", "s", Checkpoint(sequence_number="1"))
            assert errors_counted("sqlite", "put") == failed + 1
            assert store_up("sqlite") == 0
            # Readers are not blocked by a writer in WAL mode.
            assert await store.checkpoints.get("m", "s") is None
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await store.checkpoints.put("m", "s", Checkpoint(sequence_number="1"))
        assert store_up("sqlite") == 1
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
        assert mode == ("wal",)
    finally:
        await store.close()
    with pytest.raises(StateStoreError, match="closed"):
        await store.checkpoints.get("m", "s")


async def test_sqlite_relative_url_and_missing_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_state_store("sqlite:///./data/nested/state.db")
    try:
        await store.checkpoints.put("m", "s", Checkpoint(sequence_number="1"))
    finally:
        await store.close()
    assert (tmp_path / "data" / "nested" / "state.db").is_file()
