"""How fast do stream shard leases settle across replicas? (the pure planner, no servers)

Simulates coordinator cycles of ``plan_leases`` at 1,000 shards and 20 replicas. In each
round every replica, in a random order, plans from the state as it was when the round
began (the worst case: every replica decides on the same stale snapshot), then applies
its plan the way the state store does — an acquire succeeds only on a free lease, a steal
only while the expected owner still holds it.

Scenarios:
* ``cold start``: all replicas start together on a stream nobody holds;
* ``one holds all``: one replica ran alone and holds every shard, 19 join at once;
* ``staggered``: replicas join one per round (each join is a new imbalance);
* ``replica lost``: balanced, then one replica dies and its leases expire.

Printed per scenario: rounds until balanced (max - min <= 1 shard per replica), shards
moved more than once (% of all shards), and total moves against the baseline measured in
the same run — the fewest moves any planner needs from that start (every free shard once,
plus each replica's excess over its final share). Targets: <= 3 rounds, <= 5 % moved more
than once (cold start, one holds all, replica lost).

Run: ``.venv/bin/python benchmarks/lease_balance.py``
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass

from pumphouse.pollers.streams.leases import plan_leases, quotas
from pumphouse.state import LeaseInfo

SHARDS = 1_000
REPLICAS = 20
MAX_ROUNDS = 60
TARGET_ROUNDS = 3
TARGET_MOVED_TWICE = 0.05


@dataclass
class Result:
    rounds: int
    moves: int
    moved_twice: int
    minimal: int
    seconds: float


def _infos(owners: dict[str, str | None]) -> dict[str, LeaseInfo]:
    return {
        shard: LeaseInfo(
            name=f"m/{shard}", owner=owner, token=1, expires_at=0.0, expired=owner is None
        )
        for shard, owner in owners.items()
    }


def _balanced(owners: dict[str, str | None], replicas: list[str]) -> bool:
    if any(owner is None for owner in owners.values()):
        return False
    counts = Counter(owners.values())
    per = [counts.get(r, 0) for r in replicas]
    return max(per) - min(per) <= 1


def _minimal_moves(owners: dict[str, str | None], replicas: list[str]) -> int:
    counts = Counter(o for o in owners.values() if o is not None)
    share = quotas({r: counts.get(r, 0) for r in replicas}, shards=len(owners))
    free = sum(1 for o in owners.values() if o is None)
    return free + sum(max(0, counts.get(r, 0) - share[r]) for r in replicas)


def simulate(
    shards: list[str],
    owners: dict[str, str | None],
    joins: list[list[str]],
    *,
    rng: random.Random,
    fresh: bool,
) -> Result:
    """Run rounds; ``joins[i]`` are the replicas that are up from round ``i`` on."""
    moved: Counter[str] = Counter()
    up: list[str] = []
    minimal = 0
    started = time.perf_counter()
    for round_no in range(MAX_ROUNDS):
        if round_no < len(joins):
            up = sorted({*up, *joins[round_no]})
            minimal += _minimal_moves(owners, up)
        elif _balanced(owners, up):
            return Result(round_no - len(joins) + 1, sum(moved.values()),
                          sum(1 for n in moved.values() if n > 1), minimal,
                          time.perf_counter() - started)
        snapshot = _infos(owners)
        order = up[:]
        rng.shuffle(order)
        for me in order:
            seen = _infos(owners) if fresh else snapshot
            plan = plan_leases(me=me, eligible=shards, leases=seen, members=up)
            for shard in plan.acquire:
                if owners[shard] is None:
                    owners[shard] = me
                    moved[shard] += 1
            for shard, victim in plan.steal:
                if owners[shard] == victim:
                    owners[shard] = me
                    moved[shard] += 1
    raise SystemExit(f"lease planning did not settle in {MAX_ROUNDS} rounds")


def main() -> None:
    rng = random.Random(20261205)
    shards = [f"shardId-{i:012d}" for i in range(SHARDS)]
    replicas = [f"replica-{i:02d}" for i in range(REPLICAS)]
    scenarios: dict[str, tuple[dict[str, str | None], list[list[str]]]] = {
        "cold start": (dict.fromkeys(shards), [replicas]),
        "one holds all": (dict.fromkeys(shards, replicas[0]), [replicas]),
        "staggered": (dict.fromkeys(shards), [[r] for r in replicas]),
    }
    balanced = {s: replicas[i % REPLICAS] for i, s in enumerate(shards)}
    lost = {s: (None if o == replicas[-1] else o) for s, o in balanced.items()}
    scenarios["replica lost"] = (lost, [replicas[:-1]])

    print(f"lease planner: {SHARDS} shards, {REPLICAS} replicas")
    failed = False
    for (scenario, (owners, joins)), fresh in [
        (item, fresh) for fresh in (False, True) for item in scenarios.items()
    ]:
        result = simulate(shards, dict(owners), joins, rng=rng, fresh=fresh)
        name = f"{scenario}, {'fresh snapshot each' if fresh else 'one snapshot a round'}"
        twice = result.moved_twice / SHARDS
        ratio = result.moves / result.minimal if result.minimal else 1.0
        checked = not name.startswith("staggered")
        ok = result.rounds <= TARGET_ROUNDS and twice <= TARGET_MOVED_TWICE
        failed |= checked and not ok
        verdict = ("OK" if ok else "MISSED") if checked else "(reported)"
        print(
            f"  {name:40s} rounds {result.rounds:2d} (target <= {TARGET_ROUNDS})  "
            f"moved twice {twice:6.1%} (target <= {TARGET_MOVED_TWICE:.0%})  "
            f"moves {result.moves} vs minimal {result.minimal}: ratio {ratio:.2f}  "
            f"plan time {result.seconds * 1000:.0f} ms  {verdict}"
        )
    if failed:
        raise SystemExit("lease planner missed its target")


if __name__ == "__main__":
    main()
