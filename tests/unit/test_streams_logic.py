"""Pure logic of the stream sources: shard lineage, lease planning, lanes, windows."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from pumphouse.pollers.streams import (
    LeasePlan,
    ShardInfo,
    ShardLineage,
    ShardState,
    WindowState,
    iso_window_time,
    lane_of,
    plan_leases,
    window_start,
    window_suffix,
)
from pumphouse.state import LeaseInfo

# --- lineage ------------------------------------------------------------------------------


def _split_merge_lineage() -> ShardLineage:
    """0 splits into 1 and 2, which merge into 3; 4 is an unrelated open shard."""
    lineage = ShardLineage()
    lineage.update(
        [
            ShardInfo("s0", closed=True),
            ShardInfo("s1", ("s0",), closed=True),
            ShardInfo("s2", ("s0",), closed=True),
            ShardInfo("s3", ("s1", "s2")),
            ShardInfo("s4"),
        ]
    )
    return lineage


def test_children_wait_for_every_parent() -> None:
    lineage = _split_merge_lineage()
    assert lineage.eligible() == ["s0", "s4"]
    lineage.mark_ended(["s0"])
    assert lineage.eligible() == ["s1", "s2", "s4"]
    lineage.mark_ended(["s1"])
    assert lineage.eligible() == ["s2", "s4"], "the merged child waits for its adjacent parent"
    lineage.mark_ended(["s2"])
    assert lineage.eligible() == ["s3", "s4"]


def test_ended_checkpoints_from_a_listing_and_unknown_parents() -> None:
    lineage = ShardLineage()
    # s0 was trimmed from the stream before we ever listed it: its child may start.
    lineage.update([ShardInfo("s1", ("s0",)), ShardInfo("s2", ("s1",))], ended={"s1"})
    assert lineage.eligible() == ["s2"]
    assert lineage.states["s1"] is ShardState.ENDED


def test_shards_gone_from_the_listing_are_retired_and_never_revive() -> None:
    lineage = _split_merge_lineage()
    lineage.update([ShardInfo("s3", ("s1", "s2")), ShardInfo("s4")])
    assert lineage.states["s0"] is ShardState.RETIRED
    assert lineage.eligible() == ["s3", "s4"]
    lineage.set_state("s0", ShardState.PROCESSING)
    assert lineage.states["s0"] is ShardState.RETIRED
    lineage.set_state("s4", ShardState.PROCESSING)
    assert lineage.states["s4"] is ShardState.PROCESSING
    assert "s4" in lineage.eligible()


# --- lease planning -----------------------------------------------------------------------


def _lease(shard: str, owner: str | None, *, expired: bool = False) -> LeaseInfo:
    return LeaseInfo(name=f"m/{shard}", owner=owner, token=1, expires_at=0.0, expired=expired)


def _simulate(shards: list[str], replicas: list[str], owners: dict[str, str]) -> dict[str, str]:
    """Run planning rounds until nothing changes; returns the final owners."""
    rng = random.Random(7)
    for _ in range(50):
        changed = False
        for me in replicas:
            infos = {s: _lease(s, o) for s, o in owners.items()}
            plan = plan_leases(me=me, eligible=shards, leases=infos, rng=rng)
            for shard in plan.acquire:
                owners[shard] = me
                changed = True
            if plan.steal is not None:
                shard, victim = plan.steal
                assert owners[shard] == victim
                owners[shard] = me
                changed = True
        if not changed:
            return owners
    raise AssertionError("lease planning did not settle")


def test_a_lone_replica_takes_every_free_shard() -> None:
    plan = plan_leases(me="A", eligible=["s0", "s1", "s2"], leases={})
    assert plan == LeasePlan(acquire=("s0", "s1", "s2"))


def test_free_shards_are_taken_up_to_the_fair_share_only() -> None:
    leases = {"s0": _lease("s0", "B"), "s1": _lease("s1", "B", expired=True)}
    plan = plan_leases(me="A", eligible=["s0", "s1", "s2", "s3"], leases=leases)
    assert plan.acquire == ("s1", "s2"), "share is 2 of 4 with two replicas"
    assert plan.steal is None


def test_a_new_replica_steals_one_lease_per_cycle_until_even() -> None:
    shards = [f"s{i}" for i in range(4)]
    owners = dict.fromkeys(shards, "A")
    infos = {s: _lease(s, "A") for s in shards}
    plan = plan_leases(me="B", eligible=shards, leases=infos, rng=random.Random(1))
    assert plan.acquire == ()
    assert plan.steal is not None and plan.steal[1] == "A"
    final = _simulate(shards, ["A", "B"], owners)
    assert Counter(final.values()) == {"A": 2, "B": 2}


@pytest.mark.parametrize(
    ("n_shards", "n_replicas"), [(4, 2), (5, 2), (3, 2), (6, 4), (2, 3), (10, 3), (1, 2)]
)
def test_balancing_settles_within_one_shard_of_even(n_shards: int, n_replicas: int) -> None:
    shards = [f"s{i}" for i in range(n_shards)]
    replicas = [chr(ord("A") + i) for i in range(n_replicas)]
    final = _simulate(shards, replicas, dict.fromkeys(shards, "A"))
    counts = [Counter(final.values()).get(r, 0) for r in replicas]
    assert sum(counts) == n_shards
    assert max(counts) - min(counts) <= 1


def test_no_steal_from_a_replica_only_one_ahead() -> None:
    shards = ["s0", "s1", "s2"]
    infos = {"s0": _lease("s0", "A"), "s1": _lease("s1", "A"), "s2": _lease("s2", "B")}
    assert plan_leases(me="B", eligible=shards, leases=infos) == LeasePlan()


def test_sqlite_mode_takes_everything_free_and_never_steals() -> None:
    shards = ["s0", "s1", "s2"]
    infos = {"s0": _lease("s0", "B"), "s1": _lease("s1", "B"), "s2": _lease("s2", "B")}
    assert plan_leases(me="A", eligible=shards, leases=infos, allow_steal=False) == LeasePlan()
    infos["s2"] = _lease("s2", "B", expired=True)
    plan = plan_leases(me="A", eligible=shards, leases=infos, allow_steal=False)
    assert plan == LeasePlan(acquire=("s2",))


def test_busy_shards_are_not_reacquired() -> None:
    plan = plan_leases(me="A", eligible=["s0", "s1"], leases={}, busy={"s0"})
    assert plan.acquire == ("s1",)


def test_ineligible_shards_do_not_count() -> None:
    infos = {"s9": _lease("s9", "B"), "s0": _lease("s0", "B")}
    # s9 is not eligible (say, ended): B holds 1 of 2 eligible shards, A may take 1.
    plan = plan_leases(me="A", eligible=["s0", "s1"], leases=infos)
    assert plan.acquire == ("s1",)


# --- lanes and windows --------------------------------------------------------------------


def test_lanes_are_stable_and_spread() -> None:
    keys = [f"key-{i}" for i in range(1000)]
    lanes = [lane_of(k, 4) for k in keys]
    assert lanes == [lane_of(k, 4) for k in keys]
    spread = Counter(lanes)
    assert set(spread) == {0, 1, 2, 3}
    assert min(spread.values()) > 150
    assert {lane_of(k, 1) for k in keys} == {0}


def test_windows_align_on_the_epoch() -> None:
    assert window_start(1_000_000_007.25, 10) == 1_000_000_000
    assert window_start(1_000_000_010.0, 10) == 1_000_000_010
    assert window_start(59.999, 60) == 0
    assert iso_window_time(1_596_128_400) == "2020-07-30T17:00:00Z"


def test_window_suffix_makes_a_valid_event() -> None:
    window = WindowState(1_596_128_400, 1_596_128_700, {"count": 3})
    suffix = window_suffix(
        window, shard_id="shardId-000000000006", stream_arn="arn:s", final=True,
        terminated_early=False,
    )
    event = orjson.loads(b'{"Records":[{"a":1}' + suffix)
    assert event == {
        "Records": [{"a": 1}],
        "window": {"start": "2020-07-30T17:00:00Z", "end": "2020-07-30T17:05:00Z"},
        "state": {"count": 3},
        "shardId": "shardId-000000000006",
        "eventSourceARN": "arn:s",
        "isFinalInvokeForWindow": True,
        "isWindowTerminatedEarly": False,
    }
    empty = orjson.loads(b'{"Records":[' + suffix)
    assert empty["Records"] == []


def test_window_state_round_trips_through_the_checkpoint() -> None:
    window = WindowState(60.0, 120.0, {"n": 1})
    assert WindowState.from_json(window.to_json()) == window
    assert WindowState.from_json(None) is None
    assert WindowState.from_json({"state": {}}) is None
