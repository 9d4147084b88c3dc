"""Is a mapping making progress? A pure tracker: signals in, a verdict out, ``now`` given.

A mapping's task being alive says nothing: a consumer can sit on positions that no
longer exist, a replica can lose every lease, a state store can be down — and the task
keeps running. :class:`ProgressTracker` is fed what the sources know and decides whether
the mapping is **stalled**, why (in words) and since when:

================================  ==========================================================
condition                         stalled when
================================  ==========================================================
the source has work, nothing      some key (Kafka partition with lag > 0, Kinesis/DynamoDB
finished                          shard behind latest or holding unfinished records, SQS
                                  queue with visible messages) has had work continuously and
                                  no batch finished (succeeded, partially succeeded or was
                                  given up to its destination) for ``stall_after`` seconds
fewer shards than it should own   the mapping owns fewer shards than its share for
                                  ``grace`` seconds (leases lost and not taken back)
state store unreachable           the store has failed every operation for ``grace``
                                  seconds (no checkpoint, no lease renewal)
source unreachable                the source has not answered a read for ``grace`` seconds
                                  (sources that report it: Kafka fetch responses, SQS
                                  receives)
================================  ==========================================================

``grace`` is ``min(stall_after, 10 s)``: losing leases or the store is a fact, not a
guess, so it is reported sooner than a quiet source. The first condition that holds wins
in the order store → source → shards → work (the cause before its effect). "Since" is when
progress stopped: the later of the last finished batch and the moment the work appeared
(for the other two: when the shards went missing, when the store went down).

Worked example (``stall_after`` 30): partition t-0 has lag from t=100, batches finish at
t=101 and t=102, then the broker restarts empty and nothing finishes. At t=131 the verdict
is still None (29 s); at t=132 it is *stalled since t=102*: "no batch finished for 30s
while the source has records waiting (partition t-0)". A batch finishing at t=140 clears
it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

__all__ = ["ProgressTracker", "Stall", "expected_share"]

GRACE_SECONDS = 10.0
_NAMES_SHOWN = 3


def expected_share(eligible: int, live_owners: Collection[str], *, me: str) -> int:
    """The fewest shards a replica should own: ``floor(eligible / replicas)``, the
    replicas being the owners of live leases and this one.

    >>> expected_share(4, {"A", "B"}, me="A"), expected_share(2, {"A", "B"}, me="C")
    (2, 0)
    """
    return eligible // len(set(live_owners) | {me})


@dataclass(frozen=True, kw_only=True)
class Stall:
    """Why a mapping is stalled, and since when (epoch seconds, the ``now`` clock)."""

    reason: str
    since: float


@dataclass(kw_only=True)
class ProgressTracker:
    """The signals of one mapping (module docs). Not thread-safe; no clock of its own."""

    stall_after: float
    started: float
    """When tracking began (a mapping that never finished anything counts from here)."""
    work_noun: str = "key"
    """What a work key is, for the reason: ``partition``, ``shard``, ``queue``."""
    last_finished: float | None = None
    _work: dict[str, float] = field(default_factory=dict)
    _owned: int = 0
    _expected: int = 0
    _short_since: float | None = None
    _answered: float | None = None

    @property
    def grace(self) -> float:
        return min(self.stall_after, GRACE_SECONDS)

    # -- signals -----------------------------------------------------------------------

    def finished(self, now: float) -> None:
        """A batch finished (acknowledged, committed, checkpointed or given up)."""
        self.last_finished = now

    def work(self, key: str, has_work: bool, now: float) -> None:
        """Whether ``key`` (a partition, shard or queue) has records waiting now."""
        if not has_work:
            self._work.pop(key, None)
        else:
            self._work.setdefault(key, now)

    def work_snapshot(self, backlog: dict[str, bool], now: float) -> None:
        """Every key's work at once; keys not given are forgotten (revoked, ended)."""
        for key in [k for k in self._work if not backlog.get(k)]:
            del self._work[key]
        for key, has_work in backlog.items():
            self.work(key, has_work, now)

    def forget(self, key: str) -> None:
        """``key`` is not read by this mapping any more."""
        self._work.pop(key, None)

    def answered(self, at: float | None) -> None:
        """The source last answered a read at ``at`` (None: cannot tell now, e.g. every
        partition is paused while the function catches up)."""
        self._answered = at

    def read_failed(self, now: float) -> None:
        """A read of the source failed (the first failure in a row starts the clock)."""
        if self._answered is None:
            self._answered = now

    def read_succeeded(self) -> None:
        """A read of the source succeeded (for sources that report failures only)."""
        self._answered = None

    def shards(self, *, owned: int, expected: int, now: float) -> None:
        """How many shards the mapping owns and how many it should (its share)."""
        self._owned, self._expected = owned, expected
        if owned >= expected:
            self._short_since = None
        elif self._short_since is None:
            self._short_since = now

    # -- the verdict -------------------------------------------------------------------

    def evaluate(self, now: float, *, store_down_since: float | None = None) -> Stall | None:
        """The stall in force at ``now``, or None while the mapping makes progress."""
        if store_down_since is not None and now - store_down_since >= self.grace:
            return Stall(
                reason="the state store is unreachable (no checkpoint is written, no lease "
                "renewed)",
                since=store_down_since,
            )
        answered = self._answered
        if answered is not None and now - answered >= self.grace:
            return Stall(reason="the source does not answer (no read succeeded)", since=answered)
        short = self._short_since
        if short is not None and now - short >= self.grace:
            return Stall(
                reason=f"owns {self._owned} of the {self._expected} shards it should "
                "(leases lost or not taken back)",
                since=short,
            )
        if not self._work:
            return None
        appeared = min(self._work.values())
        finished = self.last_finished if self.last_finished is not None else self.started
        since = max(appeared, finished)
        if now - since < self.stall_after:
            return None
        keys = sorted(self._work)
        shown = ", ".join(keys[:_NAMES_SHOWN]) + (
            f" and {len(keys) - _NAMES_SHOWN} more" if len(keys) > _NAMES_SHOWN else ""
        )
        return Stall(
            reason=f"no batch finished for {self.stall_after:g}s while the source has "
            f"records waiting ({self.work_noun} {shown})",
            since=since,
        )
