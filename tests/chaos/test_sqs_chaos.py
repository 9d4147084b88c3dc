"""Chaos for an SQS mapping: the SQS endpoint unreachable for 30 s (a TCP proxy in front
of moto) while messages keep arriving — refusing connections, or silent (a blackhole:
connections held open, nothing answered)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from chaos_support import Ledger, TcpProxy, Watch, record_figures
from integration.test_sqs_support import (
    ONE_LOOP,
    create_queue,
    delivered,
    function,
    queue_arn,
    running,
    send_bodies,
    sqs_client,
)

from pumphouse.config import parse_config
from pumphouse.devstack import MotoServer

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

BATCH = 10


@pytest.mark.parametrize("blackhole", [False, True], ids=["refused", "blackhole"])
async def test_sqs_endpoint_unreachable_30s(
    moto_server: MotoServer, tmp_path: Path, unique_name: str, blackhole: bool
) -> None:
    proxy = await TcpProxy(moto_server.port).start()
    out = tmp_path / "out"
    out.mkdir()
    ledger = Ledger()
    document: dict[str, Any] = {
        "Settings": {
            "StateStore": f"sqlite:///{tmp_path / 'state.db'}", "MetricsAddress": "127.0.0.1:0",
            # A blackhole must show as "the source does not answer", not through the
            # records-waiting rule (its SQS sample hangs too): that rule is kept out of
            # reach with a long StallAfterSeconds.
            "ShutdownTimeoutSeconds": 5, "Region": "us-east-1",
            "StallAfterSeconds": 60 if blackhole else 4,
            "Endpoints": {"Sqs": f"http://{proxy.address}"},
        },
        "Functions": {"f": function("sqs_handlers.record", out)},
        "EventSourceMappings": [{"FunctionName": "f", "EventSourceArn": queue_arn(unique_name),
                                 "BatchSize": BATCH}],
    }  # fmt: skip
    config = parse_config(yaml.safe_dump(document), base_dir=tmp_path)

    def bodies() -> list[str]:
        return [r["body"] for r in delivered(out, "f")]

    try:
        async with sqs_client(moto_server.url) as sqs:  # straight to moto, never cut
            url = await create_queue(sqs, unique_name)
            async with running(config, factory=ONE_LOOP) as service:
                watch = Watch(service).start()

                async def send(prefix: str, count: int) -> None:
                    batch = [f"{prefix}-{n}" for n in range(count)]
                    await send_bodies(sqs, url, batch)
                    ledger.produced.extend(batch)

                await send("before", 30)
                await _until(lambda: not ledger.lost(bodies()), "the first messages")
                fault_at = time.monotonic()
                await proxy.cut(blackhole=blackhole)
                # Messages keep arriving while pumphouse is cut off: 30 s, or 40 s of
                # silence (a long poll's 20 s wait and a margin pass before a receive
                # counts as unanswered, then the 10 s grace of an unanswering source).
                for n in range(8 if blackhole else 6):
                    await send(f"during{n}", 5)
                    await asyncio.sleep(5)
                await proxy.restore()
                healed_at = time.monotonic()
                await send("after", 30)
                await _until(lambda: not ledger.lost(bodies()), "every message", within=90)
                await _until(
                    lambda: (o := watch.sample()) and not o.stalled and o.ready, "healthy again"
                )
                await watch.stop()
    finally:
        await proxy.stop()
    during = watch.between(fault_at, healed_at)
    assert any(o.stalled and o.result.startswith("PROBLEM: ") and not o.ready for o in during)
    lost, duplicates = ledger.lost(bodies()), Ledger.duplicates(bodies())
    assert lost == []
    assert duplicates <= BATCH
    record_figures(
        "SQS endpoint silent 40 s (blackhole)" if blackhole else "SQS endpoint unreachable 30 s",
        produced=len(ledger.produced), lost=len(lost),
        duplicates=duplicates,
        stalled_after_s=round(watch.first(lambda o: o.stalled, after=fault_at).at - fault_at, 1),
        recovered_after_s=round(
            watch.first(lambda o: not o.stalled and o.ready, after=healed_at).at - healed_at, 1
        ),
    )  # fmt: skip


async def _until(predicate: Any, what: str, *, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
