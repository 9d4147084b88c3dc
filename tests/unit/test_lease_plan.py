"""The shard lease planner: quotas, the one deterministic hand-out pass, convergence."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumphouse.pollers.streams.leases import LeasePlan, plan_leases, quotas
from pumphouse.state import LeaseInfo


def _lease(shard: str, owner: str | None, *, expired: bool = False) -> LeaseInfo:
    return LeaseInfo(name=f"m/{shard}", owner=owner, token=1, expires_at=0.0, expired=expired)


def _settle(
    shards: list[str], replicas: list[str], owners: dict[str, str | None], *, seed: int = 7
) -> tuple[dict[str, str | None], int, Counter[str]]:
    """Cycles until nothing changes: (final owners, cycles that changed something, moves)."""
    rng = random.Random(seed)
    moves: Counter[str] = Counter()
    for cycle in range(50):
        changed = False
        order = replicas[:]
        rng.shuffle(order)
        for me in order:
            infos = {s: _lease(s, o) for s, o in owners.items() if o is not None}
            plan = plan_leases(me=me, eligible=shards, leases=infos, members=replicas)
            for shard in plan.acquire:
                assert owners.get(shard) is None, "planned to acquire a held shard"
                owners[shard] = me
                moves[shard] += 1
                changed = True
            for shard, victim in plan.steal:
                assert owners[shard] == victim, "planned to steal from a non-owner"
                owners[shard] = me
                moves[shard] += 1
                changed = True
        if not changed:
            return owners, cycle, moves
    raise AssertionError("lease planning did not settle")


def test_quotas_give_the_extra_shards_to_those_holding_most() -> None:
    assert quotas({"A": 3, "B": 0, "C": 0}, shards=7) == {"A": 3, "B": 2, "C": 2}
    assert quotas({"A": 0, "B": 5}, shards=5) == {"B": 3, "A": 2}
    assert quotas({}, shards=4) == {}


def test_a_lone_replica_takes_every_free_shard() -> None:
    plan = plan_leases(me="A", eligible=["s0", "s1", "s2"], leases={})
    assert plan == LeasePlan(acquire=("s0", "s1", "s2"))


def test_a_known_member_that_holds_nothing_yet_counts_for_the_share() -> None:
    # B registered its membership but owns nothing: A takes only its half.
    plan = plan_leases(me="A", eligible=["s0", "s1", "s2", "s3"], leases={}, members=["A", "B"])
    assert plan.acquire == ("s0", "s1")
    plan = plan_leases(me="B", eligible=["s0", "s1", "s2", "s3"], leases={}, members=["A", "B"])
    assert plan.acquire == ("s2", "s3"), "members starting together take disjoint shards"


def test_free_shards_are_taken_up_to_the_quota_only() -> None:
    leases = {"s0": _lease("s0", "B"), "s1": _lease("s1", "B", expired=True)}
    plan = plan_leases(me="A", eligible=["s0", "s1", "s2", "s3"], leases=leases)
    assert len(plan.acquire) == 2
    assert set(plan.acquire) <= {"s1", "s2", "s3"}
    assert plan.steal == ()


def test_joining_replicas_take_their_share_in_one_cycle() -> None:
    shards = [f"s{i}" for i in range(7)]
    infos = {s: _lease(s, "A") for s in shards}
    members = ["A", "B", "C"]
    b = plan_leases(me="B", eligible=shards, leases=infos, members=members)
    c = plan_leases(me="C", eligible=shards, leases=infos, members=members)
    assert b.steal == (("s3", "A"), ("s4", "A"))
    assert c.steal == (("s5", "A"), ("s6", "A"))
    assert plan_leases(me="A", eligible=shards, leases=infos, members=members) == LeasePlan()


@pytest.mark.parametrize(
    ("n_shards", "n_replicas"), [(4, 2), (5, 2), (3, 2), (6, 4), (2, 3), (10, 3), (1, 2), (200, 3)]
)
def test_balancing_settles_within_one_shard_of_even(n_shards: int, n_replicas: int) -> None:
    shards = [f"s{i:03d}" for i in range(n_shards)]
    replicas = [chr(ord("A") + i) for i in range(n_replicas)]
    final, cycles, moves = _settle(shards, replicas, dict.fromkeys(shards, "A"))
    counts = [Counter(final.values()).get(r, 0) for r in replicas]
    assert sum(counts) == n_shards
    assert max(counts) - min(counts) <= 1
    assert cycles <= 1, "one cycle moves everything that must move"
    assert all(n == 1 for n in moves.values()), "no shard moves twice"


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


@settings(max_examples=200, deadline=None)
@given(
    n_shards=st.integers(min_value=0, max_value=60),
    n_replicas=st.integers(min_value=1, max_value=8),
    data=st.data(),
)
def test_any_start_settles_balanced_with_every_shard_held_once(
    n_shards: int, n_replicas: int, data: st.DataObject
) -> None:
    shards = [f"s{i:03d}" for i in range(n_shards)]
    replicas = [f"r{i}" for i in range(n_replicas)]
    owners: dict[str, str | None] = {
        s: data.draw(st.sampled_from([None, *replicas]), label=s) for s in shards
    }
    final, _, _ = _settle(shards, replicas, owners, seed=data.draw(st.integers(0, 99)))
    assert all(final[s] is not None for s in shards)
    counts = [Counter(final.values()).get(r, 0) for r in replicas]
    assert max(counts) - min(counts) <= 1
