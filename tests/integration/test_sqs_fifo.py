"""FIFO queues: order within a group, a failing group blocked while the others flow,
and never two in-flight batches holding the same MessageGroupId."""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations
from pathlib import Path

from test_sqs_support import (
    ONE_LOOP,
    create_queue,
    eventually,
    function,
    handler_log,
    make_config,
    queue_arn,
    queue_counts,
    running,
    sqs_client,
)

from pumphouse.devstack import MotoServer

# B is sent in one run so that the failing B2 shares its batch with B3 and B4.
SEND_ORDER = [
    ("A", 0), ("B", 0), ("C", 0), ("A", 1), ("B", 1), ("B", 2), ("B", 3), ("B", 4),
    ("C", 1), ("A", 2), ("C", 2), ("A", 3), ("C", 3), ("A", 4), ("C", 4),
]


async def test_fifo_failure_blocks_only_its_group_and_order_is_kept(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    name = f"{unique_name}.fifo"
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, name, visibility=3)
        entries = [
            {
                "Id": str(i),
                "MessageBody": json.dumps({"g": g, "seq": n, "fail": (g, n) == ("B", 2)}),
                "MessageGroupId": g,
                "MessageDeduplicationId": f"{g}-{n}",
            }
            for i, (g, n) in enumerate(SEND_ORDER)
        ]
        for start in (0, 10):
            reply = await sqs.send_message_batch(QueueUrl=url, Entries=entries[start:start + 10])
            assert not reply.get("Failed")
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={
                "fifo": function(
                    "sqs_handlers.fifo", tmp_path, timeout=1, variables={"SLEEP": "0.2"}
                )
            },
            mappings=[{
                "FunctionName": "fifo",
                "EventSourceArn": queue_arn(name),
                "BatchSize": 10,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }],
        )
        async with running(config, factory=ONE_LOOP):
            await eventually(lambda: _queue_empty(sqs, url), within=30, what="the queue to empty")
    invocations = handler_log(tmp_path, "fifo")
    deliveries = [
        (index, json.loads(r["body"]), r["count"])
        for index, entry in enumerate(invocations)
        for r in entry["records"]
    ]
    times = Counter((body["g"], body["seq"]) for _, body, _ in deliveries)

    # Inside every batch, each group's messages are in order.
    for entry in invocations:
        for group in "ABC":
            seqs = [json.loads(r["body"])["seq"] for r in entry["records"] if r["group"] == group]
            assert seqs == sorted(seqs), (group, seqs)

    # The other groups flowed: delivered once each, all before B2 came back.
    assert all(times[(g, n)] == 1 for g in "AC" for n in range(5)), times
    retry_of_b2 = next(i for i, body, count in deliveries if (body["g"], body["seq"]) == ("B", 2)
                       and count > 1)
    last_a_c = max(i for i, body, _ in deliveries if body["g"] in "AC")
    assert last_a_c < retry_of_b2

    # B2 failed; B3 and B4 were in its batch, processed by the handler but not reported:
    # pumphouse kept them behind B2, so they came back after it.
    assert times[("B", 0)] == times[("B", 1)] == 1
    assert times[("B", 2)] == times[("B", 3)] == times[("B", 4)] == 2
    first_b2 = next(i for i, body, _ in deliveries if (body["g"], body["seq"]) == ("B", 2))
    assert {
        json.loads(r["body"])["seq"] for r in invocations[first_b2]["records"] if r["group"] == "B"
    } >= {2, 3, 4}

    # Each group's final deliveries are in send order.
    final: dict[tuple[str, int], int] = {}
    for position, (_, body, _) in enumerate(deliveries):
        final[(body["g"], body["seq"])] = position
    for group in "ABC":
        ordered = sorted(range(5), key=lambda n, g=group: final[(g, n)])  # type: ignore[misc]
        assert ordered == [0, 1, 2, 3, 4], (group, ordered)


async def test_fifo_batches_in_flight_never_share_a_group(
    moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    """Five receive loops on four groups: whatever the server hands out, two batches
    being invoked at the same time never hold the same MessageGroupId."""
    name = f"{unique_name}.fifo"
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, name, visibility=2)
        entries = [
            {
                "Id": str(i),
                "MessageBody": json.dumps({"g": f"G{i % 4}", "seq": i // 4}),
                "MessageGroupId": f"G{i % 4}",
                "MessageDeduplicationId": f"m{i}",
            }
            for i in range(24)
        ]
        ids: list[str] = []
        for start in range(0, 24, 3):  # small sends: the loops take small batches
            reply = await sqs.send_message_batch(QueueUrl=url, Entries=entries[start:start + 3])
            ids += [ok["MessageId"] for ok in reply["Successful"]]
        config = make_config(
            tmp_path,
            moto_server.url,
            functions={
                "fifo": function(
                    "sqs_handlers.fifo", tmp_path, timeout=1, variables={"SLEEP": "0.3"}
                )
            },
            mappings=[{
                "FunctionName": "fifo", "EventSourceArn": queue_arn(name), "BatchSize": 2,
            }],
        )
        async with running(config):
            await eventually(
                lambda: {r["id"] for e in handler_log(tmp_path, "fifo") for r in e["records"]}
                >= set(ids),
                within=30,
                what="every message",
            )
    invocations = handler_log(tmp_path, "fifo")
    overlapping = 0
    for one, two in combinations(invocations, 2):
        if one["start"] < two["end"] and two["start"] < one["end"]:
            overlapping += 1
            groups_one = {r["group"] for r in one["records"]}
            groups_two = {r["group"] for r in two["records"]}
            assert not groups_one & groups_two, (groups_one, groups_two)
    assert overlapping > 0  # the loops did run batches side by side
    for entry in invocations:
        for group in ("G0", "G1", "G2", "G3"):
            seqs = [json.loads(r["body"])["seq"] for r in entry["records"] if r["group"] == group]
            assert seqs == sorted(seqs)


async def _queue_empty(sqs: object, url: str) -> bool:
    return await queue_counts(sqs, url) == (0, 0)
