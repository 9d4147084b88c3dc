"""Lease coordination (pure): which shard leases this replica acquires or steals.

Leases: spreading shards over replicas
======================================

Every eligible shard has a lease ``<mapping UUID>/<shard id>`` in the state store
(:mod:`pumphouse.state` describes the fencing tokens). Each coordinator cycle (a third of
``Settings.LeaseDurationSeconds``, jittered by up to 20 %) a replica:

1. renews the leases it holds; a lease that cannot be renewed (taken, expired, or no
   successful renewal for a whole lease duration) is *lost*: its shard stops at once and
   writes no checkpoint (a write would be refused anyway: its token is stale);
2. lists the leases and counts, per owner, the live leases of eligible shards. The
   replicas are those owners plus itself. With ``n`` eligible shards and ``r`` replicas
   its fair share is ``ceil(n / r)``;
3. acquires free leases (never taken, released, or expired) up to its fair share;
4. if none is free and it holds fewer than its share, it **steals one** lease from the
   most-loaded replica, but only from a replica holding at least two more than itself
   (so a steal always narrows the gap and two replicas never trade a shard back and
   forth). At most one steal per cycle, and cycles are jittered: no steal storms.

With the SQLite store there is one replica: it takes every eligible shard and never
steals. On graceful shutdown every lease is released after the last checkpoint, so
another replica resumes at once; a killed replica's leases expire after the lease
duration and are then free. Worked example (lease duration 3 s, a 4-shard stream)::

    t=0    A starts alone: n=4, r=1, share 4 → acquires s0 s1 s2 s3
    t=5    B starts: sees owners {A: 4}, r=2, share 2, nothing free
           → steals s3 from A (A has 4 ≥ 0 + 2)             A: 3  B: 1
    t=6    A renews: s3 is gone (LeaseLost) → A stops s3 without checkpointing
    t=6    B: A has 3 ≥ 1 + 2 → steals s2                    A: 2  B: 2  (stable)
    t=20   B is SIGKILLed; s2, s3 expire at t≈23
    t=23   A: s2, s3 free, r=1, share 4 → acquires both, resumes from B's checkpoints

The worst case for duplicates is one batch per shard: the batch B was running when it
died (its checkpoint was not written) is delivered again by A.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pumphouse.state import LeaseInfo

if TYPE_CHECKING:
    pass


# --- lease planning (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class LeasePlan:
    """What a replica does with leases this cycle."""

    acquire: tuple[str, ...] = ()
    """Free shards to acquire, in order."""
    steal: tuple[str, str] | None = None
    """``(shard, current owner)`` to steal, or None."""


def plan_leases(
    *,
    me: str,
    eligible: Sequence[str],
    leases: Mapping[str, LeaseInfo],
    busy: Collection[str] = (),
    allow_steal: bool = True,
    rng: random.Random | None = None,
) -> LeasePlan:
    """Decide which leases to acquire or steal (see "Leases" in the module docstring).

    ``eligible`` are the shard ids that may run; ``leases`` the current leases by shard
    id; ``busy`` shards this replica may not take now (a previous processor still
    winding down). ``allow_steal`` False: take every free shard, steal nothing (SQLite).

    >>> plan_leases(me="A", eligible=["s0", "s1"], leases={}).acquire
    ('s0', 's1')
    """
    pick = rng or random
    counts: dict[str, list[str]] = {}
    free: list[str] = []
    for shard in eligible:
        info = leases.get(shard)
        if info is None or info.expired or not info.owner:
            if shard not in busy:
                free.append(shard)
        else:
            counts.setdefault(info.owner, []).append(shard)
    mine = len(counts.get(me, ()))
    if not allow_steal:
        return LeasePlan(acquire=tuple(free))
    replicas = set(counts) | {me}
    share = math.ceil(len(eligible) / len(replicas)) if eligible else 0
    room = max(0, share - mine)
    if free:
        return LeasePlan(acquire=tuple(free[:room]))
    if room == 0:
        return LeasePlan()
    return LeasePlan(steal=_steal(me=me, counts=counts, busy=busy, pick=pick))


def _steal(
    *,
    me: str,
    counts: Mapping[str, list[str]],
    busy: Collection[str],
    pick: Any,  # a random.Random, or the random module itself
) -> tuple[str, str] | None:
    """``(shard, owner)`` to steal from the most-loaded replica, only when it holds at
    least two more leases than this one; None otherwise."""
    mine = len(counts.get(me, ()))
    others = [(len(shards), owner) for owner, shards in counts.items() if owner != me]
    if not others:
        return None
    most = max(n for n, _ in others)
    if most < mine + 2:
        return None
    victim = pick.choice(sorted(owner for n, owner in others if n == most))
    candidates = [s for s in counts[victim] if s not in busy]
    if not candidates:
        return None
    return (pick.choice(sorted(candidates)), victim)
