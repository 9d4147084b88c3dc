"""Lease planning: which shard leases a replica acquires or steals this cycle (pure).

Every replica that runs a stream mapping holds a *membership* lease
(``<mapping UUID>#members/<replica id>``) beside its shard leases, renewed each
coordinator cycle. The live members are therefore known to every replica even before
they own a shard, which is what lets a replica that starts alone hand most of its shards
over in one cycle instead of one steal at a time.

Each cycle every replica takes the same snapshot — members, leases, eligible shards — and
computes the same *quota* for every replica: with ``n`` eligible shards and ``r``
replicas, ``n // r`` each, and one more for ``n % r`` of them, chosen first among those
already holding more than ``n // r`` (so a balanced layout is never disturbed). Then:

Then one deterministic pass hands out the *pool* — the free shards (never leased,
released or expired) in listing order, then the *surplus* (the shards each replica holds
beyond its quota, its last ones by shard id, owners by id) — to the replicas below quota,
taken by id, each receiving as many as it lacks. Every replica computes the same pass and
carries out only its own part: it acquires the free shards it was given and steals the
held ones. Acquire and steal are compare-and-set operations on the state store (a free
lease; the expected owner), so two replicas planning from different snapshots can never
both win one shard; the loser simply plans again next cycle.

A steal never takes a replica below its quota, so a shard moves only towards balance and
replicas never trade a shard back and forth. Worked example, 7 shards::

    A holds s0..s6, B and C join (members A, B, C): quotas A 3, B 2, C 2
    surplus of A: s3 s4 s5 s6  (the last 4 by id)    deficits: B 2, C 2
    B steals s3 s4; C steals s5 s6                    → A 3, B 2, C 2 in one cycle

With the SQLite store (one replica) ``allow_steal`` is false: take every free shard and
steal nothing. ``benchmarks/lease_balance.py`` measures convergence at 1,000 shards and
20 replicas.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from pumphouse.state import LeaseInfo

MEMBERS_SEPARATOR = "#members/"
"""Membership lease names are ``<mapping UUID>#members/<replica id>``."""


@dataclass(frozen=True)
class LeasePlan:
    """What a replica does with leases this cycle."""

    acquire: tuple[str, ...] = ()
    """Free shards to acquire, in order."""
    steal: tuple[tuple[str, str], ...] = ()
    """``(shard, current owner)`` pairs to steal, in order."""


def quotas(counts: Mapping[str, int], *, shards: int) -> dict[str, int]:
    """Each replica's share of ``shards``: ``n // r``, plus one for ``n % r`` of them.

    The extra shards go first to the replicas already holding more than ``n // r`` (then
    to the others, by id), so a layout within one of even keeps every shard where it is,
    and the choice does not change while shards move towards it.

    >>> quotas({"A": 3, "B": 0, "C": 0}, shards=7)
    {'A': 3, 'B': 2, 'C': 2}
    """
    if not counts:
        return {}
    base, extra = divmod(shards, len(counts))
    replicas = sorted(counts, key=lambda r: (counts[r] <= base, r))
    return {r: base + (1 if i < extra else 0) for i, r in enumerate(replicas)}


def plan_leases(
    *,
    me: str,
    eligible: Sequence[str],
    leases: Mapping[str, LeaseInfo],
    members: Collection[str] = (),
    busy: Collection[str] = (),
    allow_steal: bool = True,
) -> LeasePlan:
    """Decide which leases ``me`` acquires and steals this cycle (see the module doc).

    ``eligible`` are the shard ids that may run; ``leases`` the current leases by shard
    id; ``members`` the replicas whose membership lease is live (``me`` and every owner
    of a live lease count too); ``busy`` shards this replica may not take now (a previous
    processor still winding down).

    >>> plan_leases(me="A", eligible=["s0", "s1"], leases={}).acquire
    ('s0', 's1')
    """
    held: dict[str, list[str]] = {}
    free: list[str] = []
    for shard in eligible:
        info = leases.get(shard)
        if info is None or info.expired or not info.owner:
            free.append(shard)
        else:
            held.setdefault(info.owner, []).append(shard)
    if not allow_steal:
        return LeasePlan(acquire=tuple(s for s in free if s not in busy))
    counts = {r: len(held.get(r, ())) for r in {*members, *held, me}}
    quota = quotas(counts, shards=len(eligible))
    pool: list[tuple[str, str | None]] = [(shard, None) for shard in free]
    pool += [
        (shard, owner) for owner in sorted(held) for shard in sorted(held[owner])[quota[owner] :]
    ]
    acquire: list[str] = []
    steal: list[tuple[str, str]] = []
    for replica in sorted(counts):
        need = max(0, quota[replica] - counts[replica])
        taken, pool = pool[:need], pool[need:]
        if replica != me:
            continue
        for shard, owner in taken:
            if owner is not None:
                steal.append((shard, owner))
            elif shard not in busy:
                acquire.append(shard)
    return LeasePlan(acquire=tuple(acquire), steal=tuple(steal))
