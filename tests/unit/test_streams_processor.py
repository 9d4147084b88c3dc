"""The shared stream poller driven by an in-memory stream and an in-process runtime.

Fast and deterministic: the source is a :class:`StreamSource` over Python lists (it
can throttle, expire iterators and report trimmed data on demand), the runtime calls a
Python function in-process, and checkpoints and leases go to a real SQLite state store
in the test's temporary directory. What needs a real server (shapes, resharding on
kinesis-mock, Redis leases) is tested under ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml

from pumphouse.config import parse_config
from pumphouse.errors import SourceError, SourceThrottled
from pumphouse.pollers.base import MappingContext, MappingStatus
from pumphouse.pollers.kinesis import KinesisPoller
from pumphouse.pollers.streams import (
    ConsumerState,
    DataTrimmed,
    IteratorExpired,
    ReadResult,
    ShardInfo,
    ShardProcessor,
    StartPosition,
    StreamPoller,
    StreamRecord,
    StreamSource,
)
from pumphouse.runtime.result import InvocationResult, Outcome
from pumphouse.runtime.slots import CallerSlots, Slot, SlotScheduler
from pumphouse.state import open_state_store
from pumphouse.telemetry.metrics import MappingMetrics, Metrics

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/memory"


class MemoryStream(StreamSource):
    """Shards as lists of ``(sequence number, key, data, arrival)``."""

    kind = "kinesis"
    poll_interval = 0.02
    min_call_interval = 0.0
    page_limit = 4

    def __init__(self) -> None:
        self.stream_arn = ARN
        self.shards: dict[str, list[tuple[str, str, Any, float]]] = {}
        self.parents: dict[str, tuple[str, ...]] = {}
        self.closed: set[str] = set()
        self.trim: dict[str, int] = {}
        self.errors: list[Exception] = []
        self.calls = 0

    def add(self, shard: str, key: str, data: Any, *, arrival: float | None = None) -> str:
        records = self.shards.setdefault(shard, [])
        seq = f"{len(self.shards)}{len(records):06d}"
        records.append((seq, key, data, time.time() if arrival is None else arrival))
        return seq

    async def describe(self) -> None:
        return None

    async def list_shards(self) -> list[ShardInfo]:
        return [
            ShardInfo(s, self.parents.get(s, ()), closed=s in self.closed) for s in self.shards
        ]

    async def shard_iterator(self, shard_id: str, position: StartPosition) -> str | None:
        records = self.shards[shard_id]
        if position.kind == "AFTER_SEQUENCE_NUMBER":
            index = next(i + 1 for i, r in enumerate(records) if r[0] == position.sequence_number)
        elif position.kind == "LATEST":
            index = len(records)
        else:
            index = self.trim.get(shard_id, 0)
        return f"{shard_id}|{index}"

    async def get_records(self, iterator: str, limit: int) -> ReadResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        shard, index_text = iterator.split("|")
        index = max(int(index_text), self.trim.get(shard, 0))
        records = self.shards[shard][index : index + limit]
        end = index + len(records)
        done = shard in self.closed and end >= len(self.shards[shard])
        return ReadResult(
            records=[(shard, r) for r in records],
            next_iterator=None if done else f"{shard}|{end}",
            millis_behind=0,
        )

    def shape(self, raw: Any, shard_id: str) -> tuple[dict[str, Any], str, float, str]:
        _, (seq, key, data, arrival) = raw
        record = {
            "kinesis": {"sequenceNumber": seq, "partitionKey": key, "data": data},
            "eventID": f"{shard_id}:{seq}",
        }
        return record, seq, arrival, key


class MemoryPoller(KinesisPoller):
    source_instance: MemoryStream

    def make_source(self) -> StreamSource:
        return self.source_instance


class InProcessRuntime:
    """Calls ``handler(event)`` in-process; exceptions are function errors."""

    def __init__(self, handler: Callable[[dict[str, Any]], Any]) -> None:
        self.handler = handler
        self.events: list[dict[str, Any]] = []
        self.scheduler = SlotScheduler(max_concurrency=16, reserved={"f": None})

    def caller(self, name: str, *, function: str, limit: int | None = None) -> CallerSlots:
        return self.scheduler.caller(name, function=function, limit=limit)

    async def invoke(
        self, function: str, event: Any, *, caller: Any = None, slot: Slot | None = None
    ) -> InvocationResult:
        doc = orjson.loads(event)
        self.events.append(doc)
        await asyncio.sleep(0)
        common: dict[str, Any] = {
            "request_id": f"req-{len(self.events)}",
            "duration_ms": 1.0,
            "billed_duration_ms": 1,
            "init_duration_ms": None,
            "max_memory_used_mb": 1,
            "memory_size_mb": 128,
            "cold_start": False,
        }
        try:
            payload = self.handler(doc)
        except Exception as err:
            return InvocationResult(
                outcome=Outcome.FUNCTION_ERROR,
                payload=None,
                error={"errorType": type(err).__name__, "errorMessage": str(err)},
                function_error="Unhandled",
                **common,
            )
        return InvocationResult(
            outcome=Outcome.SUCCESS, payload=payload, error=None, function_error=None, **common
        )


def _mapping_config(tmp_path: Path, **mapping: Any) -> Any:
    text = yaml.safe_dump(
        {
            "Settings": {
                "StateStore": f"sqlite:///{tmp_path}/state.db",
                "LeaseDurationSeconds": 0.6,
                "MetricsAddress": "127.0.0.1:0",
            },
            "Functions": {"f": {"Handler": "app.handler"}},
            "EventSourceMappings": [
                {
                    "FunctionName": "f",
                    "EventSourceArn": ARN,
                    "StartingPosition": "TRIM_HORIZON",
                    **mapping,
                }
            ],
        }
    )
    return parse_config(text, base_dir=tmp_path)


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        stream: MemoryStream,
        handler: Callable[[dict[str, Any]], Any],
        **mapping: Any,
    ) -> None:
        config = _mapping_config(tmp_path, **mapping)
        self.mapping = config.EventSourceMappings[0]
        self.stream = stream
        self.runtime = InProcessRuntime(handler)
        self.state = open_state_store(f"sqlite:///{tmp_path}/state.db")
        self.metrics = Metrics()
        mapping_metrics = MappingMetrics(
            self.metrics, mapping=self.mapping.label, function="f", source="kinesis"
        )
        self.ctx = MappingContext(
            mapping=self.mapping,
            config=config,
            function=config.function_spec("f"),
            runtime=self.runtime,  # type: ignore[arg-type] # an in-process test double
            state=self.state,
            aws=None,  # type: ignore[arg-type] # no destination in these tests
            metrics=mapping_metrics,
            status=MappingStatus(
                uuid=self.mapping.uuid, label=self.mapping.label, function="f", source="kinesis"
            ),
            stopping=asyncio.Event(),
            replica_id="replica-1",
            shutdown_timeout=5.0,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        MemoryPoller.source_instance = self.stream
        poller = MemoryPoller(self.ctx)
        self.task = asyncio.create_task(poller.run())

    async def stop(self) -> None:
        self.ctx.stopping.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        for _ in range(500):
            if self.task is not None and self.task.done():
                self.task.result()
            if predicate():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    def delivered(self) -> list[str]:
        return [r["kinesis"]["sequenceNumber"] for e in self.runtime.events for r in e["Records"]]

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    async def close(self) -> None:
        await self.state.close()


@pytest.fixture
def stream() -> MemoryStream:
    return MemoryStream()


async def test_expired_iterators_throttles_and_errors_lose_nothing(
    tmp_path: Path, stream: MemoryStream
) -> None:
    seqs = [stream.add("s0", f"k{i}", i) for i in range(10)]
    stream.errors = [
        SourceThrottled("slow down"),
        IteratorExpired("expired"),
        SourceError("connection reset"),
    ]
    h = Harness(tmp_path, stream, lambda event: None, BatchSize=3)
    h.start()
    await h.until(lambda: len(h.delivered()) >= 10, "every record")
    await h.stop()
    await h.close()
    assert h.delivered() == seqs
    assert h.metric("pumphouse_source_errors_total", kind="throttled") == 1
    assert h.metric("pumphouse_source_errors_total", kind="expired_iterator") == 1
    assert h.metric("pumphouse_source_errors_total", kind="error") == 1


async def test_an_expired_iterator_resumes_after_the_last_record_read(
    tmp_path: Path, stream: MemoryStream
) -> None:
    seqs = [stream.add("s0", "k", i) for i in range(8)]
    h = Harness(tmp_path, stream, lambda event: None, BatchSize=100)
    h.start()
    await h.until(lambda: len(h.delivered()) == 8, "the first records")
    stream.errors = [IteratorExpired("expired")]
    more = [stream.add("s0", "k", i) for i in range(8, 12)]
    await h.until(lambda: len(h.delivered()) == 12, "the records after the expiry")
    await h.stop()
    await h.close()
    assert h.delivered() == seqs + more, "no record read twice, none skipped"


async def test_trimmed_data_continues_from_the_trim_horizon(
    tmp_path: Path, stream: MemoryStream
) -> None:
    seqs = [stream.add("s0", "k", i) for i in range(6)]
    stream.trim["s0"] = 2
    stream.errors = [DataTrimmed("trimmed")]
    h = Harness(tmp_path, stream, lambda event: None)
    h.start()
    await h.until(lambda: len(h.delivered()) == 4, "the records still in the stream")
    await h.stop()
    await h.close()
    assert h.delivered() == seqs[2:]
    assert h.metric("pumphouse_source_errors_total", kind="trimmed") == 1


async def test_a_child_starts_only_after_its_parent_ended(
    tmp_path: Path, stream: MemoryStream
) -> None:
    parent = [stream.add("s0", "k", i) for i in range(5)]
    stream.closed.add("s0")
    stream.parents["s1"] = ("s0",)
    child = [stream.add("s1", "k", i) for i in range(5, 9)]
    h = Harness(tmp_path, stream, lambda event: None, BatchSize=2)
    h.start()
    await h.until(lambda: len(h.delivered()) == 9, "parent then child")
    checkpoints = await h.state.checkpoints.list(h.mapping.uuid)
    await h.stop()
    await h.close()
    assert h.delivered() == parent + child
    assert checkpoints["s0"].shard_ended and checkpoints["s0"].sequence_number == parent[-1]
    assert not checkpoints["s1"].shard_ended


async def test_a_restart_continues_the_retry_counter(tmp_path: Path, stream: MemoryStream) -> None:
    stream.add("s0", "k", "poison")
    attempts: list[int] = []

    def fail(event: dict[str, Any]) -> None:
        attempts.append(1)
        raise ValueError("always")

    h = Harness(tmp_path, stream, fail, MaximumRetryAttempts=3)
    h.start()
    await h.until(lambda: len(attempts) >= 2, "a retry")
    await h.stop()
    checkpoint = await h.state.checkpoints.get(h.mapping.uuid, "s0")
    await h.close()
    assert checkpoint is not None and list(checkpoint.retries.values()) == [len(attempts)]
    used = len(attempts)

    h2 = Harness(tmp_path, stream, fail, MaximumRetryAttempts=3)
    h2.start()
    await h2.until(lambda: h2.metric("pumphouse_dropped_events_total") == 1, "the give-up")
    await h2.stop()
    await h2.close()
    assert len(attempts) == 4, f"{used} attempts before the restart, 4 in all (1 + 3 retries)"


async def test_a_restart_continues_the_retry_counter_of_a_parallel_lane(
    tmp_path: Path, stream: MemoryStream
) -> None:
    # "p" runs in lane 1, "g" in lane 0 (CRC-32 of the key, modulo 2). After the
    # restart lane 0 takes its batch first: the stored counter belongs to lane 1's.
    stream.add("s0", "p", "poison")
    stream.add("s0", "g", "good")
    attempts: list[int] = []

    def fail(event: dict[str, Any]) -> None:
        if any(r["kinesis"]["data"] == "poison" for r in event["Records"]):
            attempts.append(1)
            raise ValueError("always")

    options: dict[str, Any] = {"MaximumRetryAttempts": 3, "ParallelizationFactor": 2}
    h = Harness(tmp_path, stream, fail, **options)
    h.start()
    await h.until(lambda: len(attempts) >= 2, "a retry")
    await h.stop()
    checkpoint = await h.state.checkpoints.get(h.mapping.uuid, "s0")
    await h.close()
    assert checkpoint is not None and list(checkpoint.retries.values()) == [len(attempts)]
    used = len(attempts)

    h2 = Harness(tmp_path, stream, fail, **options)
    h2.start()
    await h2.until(lambda: h2.metric("pumphouse_dropped_events_total") == 1, "the give-up")
    await h2.stop()
    await h2.close()
    assert len(attempts) == 4, f"{used} attempts before the restart, 4 in all (1 + 3 retries)"


async def test_another_lane_finishing_keeps_the_stored_retry_counter(
    tmp_path: Path, stream: MemoryStream
) -> None:
    good = stream.add("s0", "g", "good")
    poison = stream.add("s0", "p", "poison")
    h = Harness(tmp_path, stream, lambda event: None, ParallelizationFactor=2)
    MemoryPoller.source_instance = stream
    poller = MemoryPoller(h.ctx)
    lease = await h.state.leases.acquire(poller.lease_name("s0"), "replica-1", ttl=30)
    assert lease is not None
    processor = ShardProcessor(
        poller, "s0", lease=lease, checkpoint=None, position=StartPosition("TRIM_HORIZON")
    )
    records = [
        StreamRecord(seq, b"{}", time.time(), key, processor.tracker.register(seq))
        for seq, key in ((good, "g"), (poison, "p"))
    ]
    await processor._on_attempt(records[1:], 2)  # lane 1 retries the poison record
    await processor._finished(records[:1])  # meanwhile lane 0 finishes the record before it
    await processor._pending_checkpoint()
    checkpoint = await h.state.checkpoints.get(h.mapping.uuid, "s0")
    await h.close()
    assert checkpoint is not None and checkpoint.sequence_number == good
    assert checkpoint.retries == {poison: 2}


async def test_two_lanes_retrying_at_once_each_keep_their_count_across_a_restart(
    tmp_path: Path, stream: MemoryStream
) -> None:
    # ParallelizationFactor 2: key "p" runs in lane 1, key "g" in lane 0. Both lanes
    # retry a poison record at the same time; each has its own stored counter, so after
    # a restart each poison record gets exactly 1 + MaximumRetryAttempts attempts in all.
    # Lane 0's poison record arrives after a good record already finished in a batch of
    # its own: after the restart (the checkpoint is held back by lane 1's poison record)
    # that good record is read again and must not swallow the poison record's batch.
    poison_b = stream.add("s0", "p", "poison-b")
    good = stream.add("s0", "g", "good")
    attempts = {"poison-a": 0, "poison-b": 0}

    def fail(event: dict[str, Any]) -> None:
        data = {r["kinesis"]["data"] for r in event["Records"]}
        for name in attempts.keys() & data:
            attempts[name] += 1
        if attempts.keys() & data:
            raise ValueError("poison")

    options: dict[str, Any] = {
        "MaximumRetryAttempts": 3,
        "ParallelizationFactor": 2,
        "BatchSize": 10,
    }
    h = Harness(tmp_path, stream, fail, **options)
    h.start()
    await h.until(lambda: good in h.delivered() and attempts["poison-b"] >= 1, "lane 0 ran")
    poison_a = stream.add("s0", "g", "poison-a")
    await h.until(lambda: min(attempts.values()) >= 2, "a retry in each lane")
    await h.stop()
    stored = await h.state.checkpoints.get(h.mapping.uuid, "s0")
    await h.close()
    before = dict(attempts)

    h2 = Harness(tmp_path, stream, fail, **options)
    h2.start()
    await h2.until(
        lambda: h2.metric("pumphouse_dropped_events_total") == 2 or max(attempts.values()) > 4,
        "both give-ups",
    )
    await h2.stop()
    final = await h2.state.checkpoints.get(h2.mapping.uuid, "s0")
    await h2.close()

    assert attempts == {"poison-a": 4, "poison-b": 4}, f"{before} before the restart"
    assert stored is not None and stored.sequence_number is None
    assert stored.retries == {poison_b: before["poison-b"], poison_a: before["poison-a"]}
    assert [e["Records"][0]["kinesis"]["data"] for e in h2.runtime.events].count("good") == 1
    assert final is not None and final.sequence_number == poison_a and final.retries == {}


async def test_window_state_over_one_megabyte_ends_the_window_early(
    tmp_path: Path, stream: MemoryStream
) -> None:
    start = (int(time.time()) // 600) * 600  # a 10-minute window that is still open
    for i in range(4):
        stream.add("s0", "k", i, arrival=start + 1 + i)
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> Any:
        seen.append(event)
        count = event["state"].get("count", 0) + len(event["Records"])
        state: dict[str, Any] = {"count": count}
        if count == 2 and not event["isFinalInvokeForWindow"]:
            state["blob"] = "x" * (1024 * 1024 + 10)
        return {"state": state}

    h = Harness(tmp_path, stream, handler, BatchSize=2, TumblingWindowInSeconds=600)
    h.start()
    await h.until(lambda: len(seen) >= 3, "the early end and the next batch")
    await h.stop()
    await h.close()
    first, early, restarted = seen[:3]
    assert len(first["Records"]) == 2 and not first["isFinalInvokeForWindow"]
    assert early["Records"] == []
    assert early["isFinalInvokeForWindow"] and early["isWindowTerminatedEarly"]
    assert early["state"]["count"] == 2
    assert restarted["state"] == {}, "the window's remaining records start over"
    assert len(restarted["Records"]) == 2
    assert restarted["window"] == first["window"]


async def test_a_windowed_response_without_state_is_a_failure(
    tmp_path: Path, stream: MemoryStream
) -> None:
    stream.add("s0", "k", 1, arrival=time.time() - 1000)
    responses = iter([None, {"state": {"ok": True}}, {"state": {"ok": True}}])
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> Any:
        events.append(event)
        return next(responses)

    h = Harness(tmp_path, stream, handler, TumblingWindowInSeconds=60)
    h.start()
    await h.until(lambda: any(e["isFinalInvokeForWindow"] for e in events), "the final invoke")
    await h.stop()
    checkpoint = await h.state.checkpoints.get(h.mapping.uuid, "s0")
    await h.close()
    assert [len(e["Records"]) for e in events[:2]] == [1, 1], "retried after no state"
    assert events[1]["state"] == {}
    assert events[-1]["state"] == {"ok": True}
    assert checkpoint is not None and checkpoint.window is None, "the final invoke drops it"


async def test_a_lost_lease_stops_the_shard_without_checkpointing(
    tmp_path: Path, stream: MemoryStream
) -> None:
    for i in range(3):
        stream.add("s0", "k", i)
    calls: list[int] = []

    def handler(event: dict[str, Any]) -> None:
        calls.append(len(event["Records"]))

    h = Harness(tmp_path, stream, handler, BatchSize=1)
    h.start()
    await h.until(lambda: len(calls) == 3, "the first records")
    name = f"{h.mapping.uuid}/s0"
    stolen = await h.state.leases.steal(name, "replica-2", ttl=30)
    assert stolen is not None
    stream.add("s0", "k", 99)
    await h.until(lambda: h.metric("pumphouse_lease_events_total", event="lost") == 1, "loss")
    before = await h.state.checkpoints.get(h.mapping.uuid, "s0")
    await h.stop()
    after = await h.state.checkpoints.get(h.mapping.uuid, "s0")
    infos = await h.state.leases.list(h.mapping.uuid)
    await h.close()
    assert before == after, "nothing written after the lease moved"
    assert [i.owner for i in infos] == ["replica-2"], "a lost lease is not released"


def test_an_enhanced_fan_out_consumer_arn_is_refused(tmp_path: Path) -> None:
    consumer = f"{ARN}/consumer/app:1700000000"
    config = yaml.safe_dump(
        {
            "Settings": {"StateStore": f"sqlite:///{tmp_path}/s.db"},
            "Functions": {"f": {"Handler": "app.handler"}},
            "EventSourceMappings": [
                {"FunctionName": "f", "EventSourceArn": consumer, "StartingPosition": "LATEST"}
            ],
        }
    )
    mapping = parse_config(config, base_dir=tmp_path).EventSourceMappings[0]
    with pytest.raises(SourceError) as refused:
        KinesisPoller(SimpleNamespace(mapping=mapping))  # type: ignore[arg-type] # check() only
    assert refused.value.retryable is False
    assert "consumer" in str(refused.value) and ARN in str(refused.value)


def test_the_memory_stream_is_a_stream_poller_source() -> None:
    assert issubclass(MemoryPoller, StreamPoller)


async def test_the_consumer_states_of_an_ended_shard_and_a_stopped_one(
    tmp_path: Path, stream: MemoryStream
) -> None:
    parent = [stream.add("s0", "k", i) for i in range(3)]
    stream.closed.add("s0")
    stream.parents["s1"] = ("s0",)
    child = [stream.add("s1", "k", i) for i in range(3, 5)]
    consumers: dict[str, ShardProcessor] = {}

    class Recording(MemoryPoller):
        async def _start_shard(self, shard_id: str, lease: Any) -> None:
            await super()._start_shard(shard_id, lease)
            if shard_id in self.owned:
                consumers[shard_id] = self.owned[shard_id].processor

    h = Harness(tmp_path, stream, lambda event: None, BatchSize=2)
    MemoryPoller.source_instance = stream
    h.task = asyncio.create_task(Recording(h.ctx).run())
    await h.until(lambda: h.delivered() == parent + child, "parent then child")
    assert consumers["s1"].state is ConsumerState.PROCESSING  # the open child reads on
    await h.stop()
    await h.close()
    assert consumers["s0"].state is ConsumerState.ENDED  # drained, end recorded
    assert consumers["s1"].state is ConsumerState.SHUTTING_DOWN
