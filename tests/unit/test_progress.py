"""The progress tracker (pure, ``now`` given) and how a mapping's status shows a stall."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pumphouse.pollers.base import MappingState, MappingStatus
from pumphouse.pollers.progress import ProgressTracker, expected_share
from pumphouse.telemetry.metrics import MappingMetrics, Metrics


def tracker(stall_after: float = 30.0) -> ProgressTracker:
    return ProgressTracker(stall_after=stall_after, started=0.0, work_noun="partition")


def test_the_worked_example_of_the_module_docs() -> None:
    t = tracker()
    t.work("t-0", True, 100.0)
    t.finished(101.0)
    t.finished(102.0)
    assert t.evaluate(131.0) is None
    stall = t.evaluate(132.0)
    assert stall is not None
    assert stall.since == 102.0
    assert stall.reason == (
        "no batch finished for 30s while the source has records waiting (partition t-0)"
    )
    t.finished(140.0)
    assert t.evaluate(141.0) is None


def test_an_idle_source_is_never_stalled() -> None:
    t = tracker()
    t.work("t-0", True, 10.0)
    t.work("t-0", False, 11.0)
    assert t.evaluate(10_000.0) is None


def test_work_counts_from_when_it_appeared_not_from_the_last_batch_long_ago() -> None:
    t = tracker()
    t.finished(5.0)
    t.work("t-0", True, 1000.0)
    assert t.evaluate(1029.0) is None
    stall = t.evaluate(1030.0)
    assert stall is not None and stall.since == 1000.0


def test_a_snapshot_forgets_partitions_no_longer_given() -> None:
    t = tracker()
    t.work_snapshot({"t-0": True, "t-1": True}, 0.0)
    t.work_snapshot({"t-1": False}, 1.0)  # t-0 revoked, t-1 caught up
    assert t.evaluate(100.0) is None


def test_many_keys_are_named_up_to_three() -> None:
    t = tracker()
    t.work_snapshot({f"t-{n}": True for n in range(5)}, 0.0)
    stall = t.evaluate(30.0)
    assert stall is not None
    assert stall.reason.endswith("(partition t-0, t-1, t-2 and 2 more)")


def test_fewer_shards_than_the_share_is_a_stall_after_the_grace() -> None:
    t = tracker(stall_after=60.0)
    t.shards(owned=2, expected=2, now=0.0)
    t.shards(owned=0, expected=2, now=5.0)
    assert t.evaluate(14.0) is None
    stall = t.evaluate(15.0)
    assert stall is not None
    assert (stall.reason, stall.since) == (
        "owns 0 of the 2 shards it should (leases lost or not taken back)",
        5.0,
    )
    t.shards(owned=2, expected=2, now=16.0)
    assert t.evaluate(17.0) is None


def test_an_unreachable_state_store_comes_first() -> None:
    t = tracker()
    t.shards(owned=0, expected=1, now=0.0)
    stall = t.evaluate(20.0, store_down_since=3.0)
    assert stall is not None
    assert stall.since == 3.0
    assert stall.reason.startswith("the state store is unreachable")
    earlier = t.evaluate(12.0, store_down_since=3.0)  # the store: not yet; the shards: yes
    assert earlier is not None
    assert earlier.reason.startswith("owns 0")


def test_expected_share_is_the_floor_over_live_replicas() -> None:
    assert expected_share(4, {"A"}, me="A") == 4
    assert expected_share(4, {"A", "B"}, me="B") == 2
    assert expected_share(3, {"A", "B"}, me="C") == 1
    assert expected_share(0, set(), me="A") == 0


def status(metrics: Metrics) -> MappingStatus:
    mapping_metrics = MappingMetrics(metrics, mapping="m", function="f", source="kafka")
    s = MappingStatus(uuid="u", label="m", function="f", source="kafka", metrics=mapping_metrics)
    s.progress = ProgressTracker(stall_after=30.0, started=0.0, work_noun="partition")
    return s


def gauge(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(
        name, {"mapping": "m", "function": "f", "source": "kafka"}
    )


def test_a_stalled_mapping_says_why_and_since_when_in_its_status_and_gauges() -> None:
    metrics = Metrics(CollectorRegistry())
    s = status(metrics)
    s.ready()
    s.processed()
    s.progress.last_finished = 1_000.0
    s.progress.work("t-0", True, 1_000.0)
    assert s.stall(now=1_029.0) is None
    view = s.to_json()  # now: long after
    assert view["Stalled"] is True
    assert view["StalledSince"] == 1_000.0
    assert view["LastProcessingResult"] == (
        "PROBLEM: no batch finished for 30s while the source has records waiting "
        "(partition t-0)"
    )
    assert view["StalledReason"] == view["LastProcessingResult"].removeprefix("PROBLEM: ")
    assert gauge(metrics, "pumphouse_mapping_stalled") == 1.0
    assert gauge(metrics, "pumphouse_mapping_problem") == 1.0

    s.processed()  # a batch finished: progress again
    assert s.to_json()["Stalled"] is False
    assert s.to_json()["LastProcessingResult"] == "OK"
    assert gauge(metrics, "pumphouse_mapping_stalled") == 0.0
    assert gauge(metrics, "pumphouse_mapping_problem") == 0.0


def test_only_an_enabled_mapping_can_be_stalled() -> None:
    metrics = Metrics(CollectorRegistry())
    s = status(metrics)
    s.progress.work("t-0", True, 0.0)
    assert s.stall(now=1_000.0) is None  # Creating
    s.ready()
    assert s.stall(now=1_000.0) is not None
    s.set_state(MappingState.DISABLED, "Service shutdown")
    assert s.stall(now=1_000.0) is None


def test_readyz_is_503_for_a_stalled_mapping_and_healthz_stays_200() -> None:
    """A stalled mapping makes the replica not ready (with the reason), never not alive:
    a restart would reset what shows the stall, and most stalls have their cause
    outside the process (docs/reliability.md)."""
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from pumphouse.config import parse_config
    from pumphouse.service import Service

    metrics = Metrics(CollectorRegistry())
    service = Service(parse_config("{}", environ={}), metrics=metrics)
    s = status(metrics)
    service.statuses["u"] = s
    service.started.set()
    s.ready()
    assert service.readiness() == (True, "all enabled mappings started")
    s.progress.work("t-0", True, 0.0)
    ready, reason = service.readiness()
    assert not ready
    assert reason == (
        "stalled: m: no batch finished for 30s while the source has records waiting "
        "(partition t-0)"
    )

    async def endpoints() -> tuple[int, int]:
        from pumphouse.telemetry.http import StatusServer

        server = StatusServer(
            metrics=metrics, address="127.0.0.1:0", mappings=service.mapping_views,
            ready=service.readiness,
        )  # fmt: skip
        async with TestClient(TestServer(server.app())) as client:
            ready_answer = await client.get("/readyz")
            health_answer = await client.get("/healthz")
            return ready_answer.status, health_answer.status

    assert asyncio.run(endpoints()) == (503, 200)


def test_a_source_that_stops_answering_is_a_stall_after_the_grace() -> None:
    t = tracker(stall_after=60.0)
    t.answered(100.0)
    assert t.evaluate(109.0) is None
    stall = t.evaluate(110.0)
    assert stall is not None
    assert (stall.reason, stall.since) == ("the source does not answer (no read succeeded)", 100.0)
    t.answered(None)  # cannot tell (every partition paused): no verdict from it
    assert t.evaluate(500.0) is None


def test_read_failures_in_a_row_count_from_the_first() -> None:
    t = tracker(stall_after=60.0)
    t.read_failed(100.0)
    t.read_failed(105.0)
    stall = t.evaluate(110.0)
    assert stall is not None and stall.since == 100.0
    t.read_succeeded()
    assert t.evaluate(110.0) is None
