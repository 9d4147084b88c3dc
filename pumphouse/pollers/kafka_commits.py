"""Kafka offset commits for the Kafka poller: the partitions' finished positions,
coalesced into one commit at a time, fenced by group generation and held while this
member has no place in the group (:mod:`pumphouse.pollers.kafka_positions`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Final

from aiokafka.errors import IllegalStateError

from pumphouse.pollers.kafka_destination import describe_kafka_error
from pumphouse.pollers.positions import CommitFence

if TYPE_CHECKING:
    from pumphouse.telemetry.metrics import MappingMetrics

__all__ = ["COMMIT_RETRY_SECONDS", "OffsetCommitter"]

COMMIT_RETRY_SECONDS: Final = 0.5
COMMIT_ATTEMPT_SECONDS: Final = 10.0
"""One commit attempt at most (aiokafka retries retriable errors inside it forever): a
commit that cannot land is retried by the committer, fenced by generation."""
COMMIT_INTERVAL_SECONDS: Final = 0.02
"""After a commit the committer waits this long, gathering positions for the next one:
at most ~50 commits a second per mapping, however many batches finish."""



class OffsetCommitter:
    """Commits the partitions' latest finished positions, coalescing them.

    ``advance`` only records a position; the ``run`` task commits everything recorded
    since its last commit in one request, so a slow commit never holds up the
    partitions and commits do not pile up. :meth:`commit` commits at once (revoke,
    shutdown). A failed commit keeps the positions for the next round, but only while
    the group stays at the generation they were recorded under (``generation``, see
    :class:`~pumphouse.pollers.positions.CommitFence`); positions of partitions no longer
    assigned are dropped.
    """

    def __init__(
        self,
        consumer: Any,
        *,
        metrics: MappingMetrics,
        logger: Any,
        generation: Callable[[], Hashable] = lambda: None,
        member: Callable[[], bool] = lambda: True,
        confirmed: Callable[[], None] = lambda: None,
    ) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._log = logger
        self._generation = generation
        self._member = member
        self._confirmed = confirmed
        self._fence: CommitFence[Any] = CommitFence()
        self._pending: dict[Any, tuple[int, int]] = {}
        self.committed: dict[Any, int] = {}
        """The last offset committed per partition, by this member."""
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()

    def advance(self, tp: Any, offset: int, count: int) -> None:
        previous = self._pending.get(tp)
        self._pending[tp] = (offset, count + (previous[1] if previous else 0))
        self._fence.record(tp, self._generation())
        self._wakeup.set()

    def forget(self, tps: Sequence[Any]) -> None:
        for tp in tps:
            self._pending.pop(tp, None)
            self.committed.pop(tp, None)
            self._fence.forget(tp)

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            committed = await self.commit()
            await asyncio.sleep(COMMIT_INTERVAL_SECONDS if committed else COMMIT_RETRY_SECONDS)

    async def commit(self, tps: Sequence[Any] | None = None) -> bool:
        """Commit the recorded positions (of ``tps`` only, if given). False on failure."""
        async with self._lock:
            wanted = set(tps) if tps is not None else None
            batch = {
                tp: entry for tp, entry in self._pending.items() if wanted is None or tp in wanted
            }
            for tp in self._fence.admit(batch, self._generation())[1]:  # fenced: drop
                del self._pending[tp], batch[tp]
                self._log.warning(
                    "commit dropped: recorded under an earlier group generation",
                    partition=f"{tp.topic}-{tp.partition}",
                )
            if not batch:
                return True
            if not self._member():  # kafka_positions.py: *membership*
                self._log.warning(
                    "commit held: this member lost its place in the group; the next "
                    "assignment resumes from the broker's committed offsets",
                    partitions=sorted(f"{tp.topic}-{tp.partition}" for tp in batch),
                )
                return False
            for tp in batch:
                del self._pending[tp]
            offsets = {tp: offset for tp, (offset, _) in batch.items()}
            try:
                await asyncio.wait_for(self._consumer.commit(offsets), COMMIT_ATTEMPT_SECONDS)
            except IllegalStateError as err:
                # Not assigned any more (revoked while the commit waited): not ours.
                self._metrics.source_error("commit")
                self._log.warning("commit skipped: partition not assigned", error=str(err))
                return False
            except Exception as err:
                self._metrics.source_error("commit")
                self._log.warning(
                    "offset commit failed; will retry",
                    error=describe_kafka_error(err),
                    partitions=sorted(f"{tp.topic}-{tp.partition}" for tp in batch),
                )
                for tp, (offset, count) in batch.items():
                    newer = self._pending.get(tp)
                    self._pending[tp] = (newer[0], newer[1] + count) if newer else (offset, count)
                return False
            self.committed.update(offsets)
            self._metrics.committed.inc(sum(count for _, count in batch.values()))
            self._confirmed()
            return True

    async def probe(self) -> bool:
        """Show that the group still knows this member: commit what is pending, else the
        last committed offsets again (nothing committed yet: nothing to show)."""
        if self._pending:
            return await self.commit()
        if not self.committed:
            self._confirmed()
            return True
        async with self._lock:
            try:
                await asyncio.wait_for(
                    self._consumer.commit(dict(self.committed)), COMMIT_ATTEMPT_SECONDS
                )
            except Exception as err:
                self._metrics.source_error("commit")
                self._log.warning(
                    "membership check failed; records wait", error=describe_kafka_error(err)
                )
                return False
        self._confirmed()
        return True
