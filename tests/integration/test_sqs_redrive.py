"""``pumphouse redrive``: messages moved back from a DLQ, none lost or duplicated."""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from test_sqs_support import (
    create_queue,
    drain,
    queue_arn,
    queue_counts,
    send_bodies,
    sqs_client,
)

from pumphouse.devstack import MotoServer
from pumphouse.tools.redrive import EXIT_OK, EXIT_UNAVAILABLE, redrive


def _args(moto: MotoServer, source: str, target: str, **extra: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "source_arn": queue_arn(source),
        "target_arn": queue_arn(target),
        "max_messages": None,
        "rate": None,
        "dry_run": False,
        "region": None,
        "endpoint_url": moto.url,
    }
    values.update(extra)
    return argparse.Namespace(**values)


async def _run(args: argparse.Namespace) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await redrive(args, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


async def test_redrive_moves_fifty_messages_back_with_their_attributes(
    moto_server: MotoServer, unique_name: str
) -> None:
    dlq, target = f"{unique_name}-dlq", unique_name
    async with sqs_client(moto_server.url) as sqs:
        dlq_url = await create_queue(sqs, dlq)
        target_url = await create_queue(sqs, target)
        bodies = [f'{{"n": {i}}}' for i in range(50)]
        await send_bodies(
            sqs,
            dlq_url,
            bodies,
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "order"},
                "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
            },
        )
        status, out, err = await _run(_args(moto_server, dlq, target, rate=500.0))
        assert status == EXIT_OK, err
        assert f"moved 50 messages from {queue_arn(dlq)} to {queue_arn(target)}" in out
        assert "(0 not sent" in out and "0 sent but not deleted" in out
        moved = await drain(sqs, target_url)
        assert await queue_counts(sqs, dlq_url) == (0, 0)
    counts = Counter(m["Body"] for m in moved)
    assert sorted(counts) == sorted(bodies)  # none lost
    assert set(counts.values()) == {1}  # none duplicated
    assert all(
        m["MessageAttributes"]
        == {
            "kind": {"DataType": "String", "StringValue": "order"},
            "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        }
        for m in moved
    )


async def test_redrive_max_and_fifo_ids(moto_server: MotoServer, unique_name: str) -> None:
    dlq, target = f"{unique_name}-dlq.fifo", f"{unique_name}.fifo"
    async with sqs_client(moto_server.url) as sqs:
        dlq_url = await create_queue(sqs, dlq)
        target_url = await create_queue(sqs, target)
        for i in range(12):
            await sqs.send_message(
                QueueUrl=dlq_url,
                MessageBody=f"m{i}",
                MessageGroupId=f"g{i % 3}",
                MessageDeduplicationId=f"d{i}",
            )
        status, out, _ = await _run(_args(moto_server, dlq, target, max_messages=7))
        assert status == EXIT_OK
        assert "moved 7 messages" in out
        moved = await drain(sqs, target_url)
        assert await queue_counts(sqs, dlq_url) == (5, 0)
    assert len(moved) == 7
    for message in moved:
        n = int(message["Body"][1:])
        assert message["Attributes"]["MessageGroupId"] == f"g{n % 3}"
        assert message["Attributes"]["MessageDeduplicationId"] == f"d{n}"
    # FIFO order within each group survived the move.
    for group in ("g0", "g1", "g2"):
        seq = [int(m["Body"][1:]) for m in moved if m["Attributes"]["MessageGroupId"] == group]
        assert seq == sorted(seq)


async def test_redrive_refuses_a_missing_queue(moto_server: MotoServer, unique_name: str) -> None:
    async with sqs_client(moto_server.url) as sqs:
        await create_queue(sqs, unique_name)
    with pytest.raises(Exception, match="does not exist") as caught:
        await _run(_args(moto_server, f"{unique_name}-nope", unique_name))
    assert getattr(caught.value, "status", None) == EXIT_UNAVAILABLE


async def test_redrive_cli_dry_run_moves_nothing(moto_server: MotoServer, unique_name: str) -> None:
    dlq, target = f"{unique_name}-dlq", unique_name
    async with sqs_client(moto_server.url) as sqs:
        dlq_url = await create_queue(sqs, dlq)
        await create_queue(sqs, target)
        await send_bodies(sqs, dlq_url, ["a", "b", "c"])
        command = [
            sys.executable, "-m", "pumphouse", "redrive",
            "--from", queue_arn(dlq), "--to", queue_arn(target),
            "--endpoint-url", moto_server.url, "--dry-run",
        ]
        result = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "holds about 3 messages; would move 3" in result.stdout
        assert await queue_counts(sqs, dlq_url) == (3, 0)


def test_redrive_cli_refuses_bad_arns() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pumphouse", "redrive", "--from", "not-an-arn",
         "--to", "arn:aws:sqs:us-east-1:123456789012:q"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "--from" in result.stderr and "not an ARN" in result.stderr
