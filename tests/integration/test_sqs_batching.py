"""SQS batching against moto: by count, by window (several receives), by 6 MB."""

from __future__ import annotations

from pathlib import Path

from test_sqs_support import (
    ONE_LOOP,
    create_queue,
    delivered,
    eventually,
    function,
    handler_log,
    make_config,
    mapping_labels,
    metric,
    queue_arn,
    queue_counts,
    running,
    send_bodies,
    sqs_client,
)

from pumphouse.devstack import MotoServer
from pumphouse.pollers.batching import MAX_INVOKE_PAYLOAD_BYTES


async def test_window_zero_one_receive_is_one_batch_of_at_most_batch_size(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        ids = await send_bodies(sqs, url, [f'{{"n": {i}}}' for i in range(12)])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"rec": function("sqs_handlers.record", tmp_path)},
            mappings=[{"FunctionName": "rec", "EventSourceArn": queue_arn(unique_name),
                       "BatchSize": 3}],
        )
        async with running(config, factory=ONE_LOOP) as service:
            await eventually(lambda: len(delivered(tmp_path, "rec")) >= 12, what="12 messages")
            await eventually(
                lambda: metric(service, "pumphouse_deleted_events_total",
                               **mapping_labels(service)) == 12,
                what="12 deletes",
            )
            labels = mapping_labels(service)
            assert metric(service, "pumphouse_polled_events_total", **labels) == 12
            assert metric(service, "pumphouse_invoked_events_total", **labels) == 12
        sizes = [len(entry["records"]) for entry in handler_log(tmp_path, "rec")]
        assert all(1 <= size <= 3 for size in sizes), sizes
        assert sorted(r["id"] for r in delivered(tmp_path, "rec")) == sorted(ids)
        assert await queue_counts(sqs, url) == (0, 0)


async def test_batch_closes_at_batch_size_before_the_window(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        ids = await send_bodies(sqs, url, [f"m{i}" for i in range(40)])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"rec": function("sqs_handlers.record", tmp_path)},
            mappings=[{"FunctionName": "rec", "EventSourceArn": queue_arn(unique_name),
                       "BatchSize": 20, "MaximumBatchingWindowInSeconds": 30}],
        )
        async with running(config, factory=ONE_LOOP):
            # A 30 s window never closes within the test: only the count can close them.
            await eventually(lambda: len(delivered(tmp_path, "rec")) >= 40, what="40 messages")
        sizes = [len(entry["records"]) for entry in handler_log(tmp_path, "rec")]
        assert sorted(sizes) == [20, 20]
        assert sorted(r["id"] for r in delivered(tmp_path, "rec")) == sorted(ids)


async def test_window_collects_one_batch_from_several_receives(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        ids = await send_bodies(sqs, url, [f"m{i}" for i in range(30)])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"rec": function("sqs_handlers.record", tmp_path)},
            mappings=[{"FunctionName": "rec", "EventSourceArn": queue_arn(unique_name),
                       "BatchSize": 50, "MaximumBatchingWindowInSeconds": 1}],
        )
        async with running(config):
            await eventually(lambda: len(delivered(tmp_path, "rec")) >= 30, what="30 messages")
        sizes = [len(entry["records"]) for entry in handler_log(tmp_path, "rec")]
        # A receive returns at most 10 messages: a bigger batch came from several (of the
        # five loops, all adding to the one open batch).
        assert max(sizes) > 10, sizes
        assert all(size <= 50 for size in sizes)
        # A set: five loops receive at once, and moto now and then hands two of them the
        # same message (SQS allows such duplicates).
        assert {r["id"] for r in delivered(tmp_path, "rec")} == set(ids)


async def test_batch_closes_before_six_megabytes(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    body_size = 900_000
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        ids: list[str] = []
        for i in range(8):
            body = str(i) * body_size
            ids += await send_bodies(sqs, url, [body])
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={"rec": function("sqs_handlers.record", tmp_path, MemorySize=512)},
            mappings=[{"FunctionName": "rec", "EventSourceArn": queue_arn(unique_name),
                       "BatchSize": 10, "MaximumBatchingWindowInSeconds": 2}],
        )
        async with running(config, factory=ONE_LOOP) as service:
            await eventually(lambda: len(delivered(tmp_path, "rec")) >= 8, what="8 messages")
            labels = mapping_labels(service)
            batch_bytes = metric(service, "pumphouse_batch_size_bytes_sum", **labels)
        entries = handler_log(tmp_path, "rec")
        assert len(entries) >= 2  # 8 x 900 kB cannot go in one 6 MB event
        assert all(entry["event_bytes"] <= MAX_INVOKE_PAYLOAD_BYTES for entry in entries)
        assert all(len(entry["records"]) <= 6 for entry in entries)
        assert sorted(r["id"] for r in delivered(tmp_path, "rec")) == sorted(ids)
        assert all(len(r["body"]) == body_size for r in delivered(tmp_path, "rec"))
        assert batch_bytes > 8 * body_size
