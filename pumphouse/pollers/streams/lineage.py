"""Shard lineage (pure): which shards may be read, given their parents.

Shards and their lifecycle
==========================

A shard goes **discovered → leased → processing → ended → retired**:

* *discovered*: listed by ``ListShards`` / ``DescribeStream`` (re-listed every
  :attr:`StreamPoller.discovery_interval` seconds and at once when a shard this replica
  reads comes to its end);
* *leased*: this replica holds the shard's lease (see below);
* *processing*: its reader and lanes run;
* *ended*: ``GetRecords`` returned no next iterator (the shard was closed by a split or
  a merge) **and** every record read from it is finished; the checkpoint is written with
  ``shard_ended`` and the lease released;
* *retired*: ended, or gone from the listing (trimmed past the retention period).

A child shard is *eligible* (may be leased) only when every parent it names
(``ParentShardId``, ``AdjacentParentShardId``) is ended or retired. Closed shards are
drained to their end, never skipped. Example: shard 0 splits into 1 and 2, then 1 and 2
merge into 3::

    0 ──┬── 1 ──┬── 3          eligible at first: {0}
        └── 2 ──┘              0 ends    → {1, 2}   (both may run at once)
                               1 ends    → {2}      (3 waits: 2 is not ended)
                               2 ends    → {3}

Per-key order across a reshard holds because a key's records in a child are read only
after all of that key's records in the parent are finished.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


# --- shards and lineage ----------------------------------------------------------------


class ShardState(StrEnum):
    """Where a shard is in its life, as this replica sees it."""

    DISCOVERED = "discovered"
    LEASED = "leased"
    PROCESSING = "processing"
    ENDED = "ended"
    RETIRED = "retired"


@dataclass(frozen=True)
class ShardInfo:
    """One shard as listed by the source."""

    shard_id: str
    parent_ids: tuple[str, ...] = ()
    """``ParentShardId`` then ``AdjacentParentShardId``, those present."""
    closed: bool = False
    """The listing gives an ``EndingSequenceNumber``: nothing more will be written."""


class ShardLineage:
    """Known shards, their parents and states; which shards may be processed now.

    Pure bookkeeping: no I/O. See the module docstring for the rules and an example.
    """

    def __init__(self) -> None:
        self.shards: dict[str, ShardInfo] = {}
        self.states: dict[str, ShardState] = {}

    def update(self, listed: Iterable[ShardInfo], *, ended: Collection[str] = ()) -> None:
        """Merge a fresh listing; ``ended`` are shards whose checkpoint says they ended.

        Shards known before but absent now are retired (trimmed from the stream).
        """
        seen: set[str] = set()
        for info in listed:
            seen.add(info.shard_id)
            self.shards[info.shard_id] = info
            self.states.setdefault(info.shard_id, ShardState.DISCOVERED)
        for shard_id in list(self.states):
            if shard_id not in seen:
                self.states[shard_id] = ShardState.RETIRED
        self.mark_ended(ended)

    def mark_ended(self, shard_ids: Iterable[str]) -> None:
        for shard_id in shard_ids:
            if self.states.get(shard_id) is not ShardState.RETIRED:
                self.states[shard_id] = ShardState.ENDED

    def set_state(self, shard_id: str, state: ShardState) -> None:
        current = self.states.get(shard_id)
        if current in (ShardState.ENDED, ShardState.RETIRED) and state not in (
            ShardState.ENDED,
            ShardState.RETIRED,
        ):
            return  # an ended shard never comes back
        self.states[shard_id] = state

    def is_done(self, shard_id: str) -> bool:
        """Ended, retired, or unknown (a parent trimmed before we ever listed it)."""
        state = self.states.get(shard_id)
        return state is None or state in (ShardState.ENDED, ShardState.RETIRED)

    def parents_done(self, shard_id: str) -> bool:
        info = self.shards.get(shard_id)
        return info is None or all(self.is_done(p) for p in info.parent_ids)

    def eligible(self) -> list[str]:
        """Shards that may be leased and processed now, sorted (parents sort first)."""
        return sorted(
            shard_id
            for shard_id, info in self.shards.items()
            if not self.is_done(shard_id) and self.parents_done(info.shard_id)
        )
