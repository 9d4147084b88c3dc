"""The HTTP endpoints over a real socket: /metrics, /healthz, /readyz, /mappings."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pumphouse.telemetry.http import StatusServer, parse_address
from pumphouse.telemetry.metrics import MappingMetrics, Metrics


def test_parse_address() -> None:
    assert parse_address("0.0.0.0:9400") == ("0.0.0.0", 9400)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address(":9400") == ("0.0.0.0", 9400)


async def test_metrics_endpoint_serves_the_registry_in_text_format() -> None:
    metrics = Metrics(CollectorRegistry())
    mm = MappingMetrics(metrics, mapping="orders/sqs:orders", function="orders", source="sqs")
    mm.polled.inc(7)
    mm.source_error("receive")
    metrics.invocations.labels(function="orders", outcome="success").inc(3)
    server = StatusServer(
        metrics=metrics, address="127.0.0.1:0", mappings=list, ready=lambda: (True, "ok")
    )
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.port}/metrics") as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    finally:
        await server.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    polled = families["pumphouse_polled_events"].samples
    assert [(s.labels["mapping"], s.value) for s in polled if s.name.endswith("_total")] == [
        ("orders/sqs:orders", 7.0)
    ]
    errors = families["pumphouse_source_errors"].samples
    assert any(s.labels["operation"] == "receive" and s.value == 1.0 for s in errors)
    invocations = families["pumphouse_invocations"].samples
    assert any(s.labels["outcome"] == "success" and s.value == 3.0 for s in invocations)


async def test_readyz_follows_the_service_and_mappings_lists_status() -> None:
    state = {"ready": False}
    views = [{"UUID": "u-1", "State": "Enabled", "LastProcessingResult": "OK"}]
    server = StatusServer(
        metrics=Metrics(CollectorRegistry()),
        address="127.0.0.1:0",
        mappings=lambda: views,
        ready=lambda: (state["ready"], "ready" if state["ready"] else "starting"),
    )
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["reason"] == "starting"
            state["ready"] = True
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 200
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["healthy"] is True
            async with http.get(f"{base}/mappings") as response:
                assert (await response.json()) == {"EventSourceMappings": views}
    finally:
        await server.stop()


async def test_healthz_fails_when_the_event_loop_is_blocked() -> None:
    server = StatusServer(
        metrics=Metrics(CollectorRegistry()),
        address="127.0.0.1:0",
        mappings=list,
        ready=lambda: (True, ""),
    )
    server.watchdog.max_lag = 0.2
    await server.start()
    try:
        await asyncio.sleep(0.1)
        await server.watchdog.stop()  # freeze the ticker, then age its last tick
        server.watchdog.last_tick -= 5  # as if the loop had not ticked for five seconds
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.port}/healthz") as response,
        ):
            assert response.status == 503
    finally:
        await server.stop()


def test_forget_shard_drops_only_that_shards_series() -> None:
    metrics = Metrics(CollectorRegistry())
    mm = MappingMetrics(metrics, mapping="m", function="f", source="kinesis")
    for shard in ("shardId-1", "shardId-2"):
        mm.iterator_age(shard).set(1.5)
        mm.behind_latest(shard).set(2.0)
    mm.forget_shard("shardId-1")
    mm.forget_shard("shardId-9")  # never seen: nothing to do, no error

    def shards(name: str) -> set[str]:
        return {
            s.labels["shard"]
            for family in metrics.registry.collect()
            for s in family.samples
            if s.name == name
        }

    assert shards("pumphouse_iterator_age_seconds") == {"shardId-2"}
    assert shards("pumphouse_behind_latest_seconds") == {"shardId-2"}
