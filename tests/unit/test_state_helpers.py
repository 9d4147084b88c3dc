"""Pure helpers of pumphouse.state: URL parsing, checkpoint encoding, retry_state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pumphouse.errors import LeaseLost, StaleFencingToken, StateStoreError
from pumphouse.state import Checkpoint, open_state_store, retry_state, sqlite_path
from pumphouse.state.base import decode_checkpoint, encode_checkpoint, ttl_millis


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///.pumphouse/state.db", ".pumphouse/state.db"),
        ("sqlite:///./.pumphouse/state.db", ".pumphouse/state.db"),  # the config default
        ("sqlite:////var/lib/pumphouse/state.db", "/var/lib/pumphouse/state.db"),
        ("sqlite:///state.db", "state.db"),
        ("SQLITE:////tmp/x.db?mode=rwc", "/tmp/x.db"),
    ],
)
def test_sqlite_path(url: str, path: str) -> None:
    assert sqlite_path(url) == Path(path)


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///", "sqlite:////", "sqlite:///data/", "sqlite:///:memory:",
     "sqlite://state.db", "sqlite:state.db"],
)
def test_sqlite_url_without_a_file_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite"):
        sqlite_path(url)


def test_open_state_store_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unsupported state store URL 'ftp://x'"):
        open_state_store("ftp://x")
    with pytest.raises(ValueError, match="unsupported"):
        open_state_store("just-a-path.db")
    with pytest.raises(ValueError, match="invalid state store URL"):
        open_state_store("redis://127.0.0.1:notaport/0")
    with pytest.raises(ValueError, match="timeout"):
        open_state_store("sqlite:///tmp/x.db", timeout=0)


def test_checkpoint_encoding_round_trips_and_leaves_updated_at_to_the_store() -> None:
    checkpoint = Checkpoint(
        sequence_number="123",
        retries={"100": 3, "99": 2},
        window={"start": 1, "end": 2, "state": {"sum": 1.5, "ids": []}},
        shard_ended=True,
        updated_at=99.0,
    )
    text = encode_checkpoint(checkpoint)
    assert "updated_at" not in json.loads(text)
    decoded = decode_checkpoint(text, updated_at=7.0)
    assert decoded == Checkpoint(
        sequence_number="123",
        retries={"100": 3, "99": 2},
        window={"start": 1, "end": 2, "state": {"sum": 1.5, "ids": []}},
        shard_ended=True,
        updated_at=7.0,
    )
    assert decode_checkpoint('{"sequence_number": "5", "future_field": 1}') == Checkpoint(
        sequence_number="5"
    )
    with pytest.raises(ValueError, match="Out of range float"):
        encode_checkpoint(Checkpoint(window={"x": float("nan")}))


def test_checkpoint_of_an_older_version_keeps_its_one_retry_counter() -> None:
    # Written before per-batch counters: one counter for the batch at the head.
    old = '{"sequence_number": "5", "retry_attempts": 2, "retry_sequence_number": "9",' \
        ' "window": null, "shard_ended": false}'
    assert decode_checkpoint(old).retries == {"9": 2}
    unused = '{"sequence_number": "5", "retry_attempts": 0, "retry_sequence_number": null}'
    assert decode_checkpoint(unused).retries == {}
    # ... and what this version writes still carries that form for an older reader (the
    # counter of the lowest sequence number), next to every counter.
    doc = json.loads(encode_checkpoint(Checkpoint(retries={"10": 2, "9": 4})))
    assert (doc["retry_sequence_number"], doc["retry_attempts"]) == ("9", 4)
    assert decode_checkpoint(json.dumps(doc)).retries == {"10": 2, "9": 4}
    assert "retry_attempts" not in json.loads(encode_checkpoint(Checkpoint()))


def test_ttl_millis() -> None:
    assert ttl_millis(0.3) == 300
    assert ttl_millis(0.0001) == 1
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="ttl"):
            ttl_millis(bad)


async def test_retry_state_retries_outages_until_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise StateStoreError("Redis at 127.0.0.1:1: Connection refused")
        return "ok"

    assert await retry_state(flaky, what="test", max_delay=0.01) == "ok"
    assert calls == 4


@pytest.mark.parametrize("error", [StaleFencingToken("stale"), LeaseLost("lost"), KeyError("x")])
async def test_retry_state_does_not_retry_answers(error: Exception) -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await retry_state(op, what="test")
    assert calls == 1


async def test_retry_state_gives_up_when_stopped() -> None:
    stop = asyncio.Event()
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise StateStoreError(f"down {calls}")

    task = asyncio.create_task(retry_state(down, what="test", stop=stop, max_delay=10.0))
    await asyncio.sleep(0.3)
    stop.set()
    with pytest.raises(StateStoreError, match="down"):
        await asyncio.wait_for(task, timeout=1.0)  # does not sit out a long backoff
    assert calls >= 2

    stop_first = asyncio.Event()
    stop_first.set()
    with pytest.raises(StateStoreError, match="down"):
        await retry_state(down, what="test", stop=stop_first)
