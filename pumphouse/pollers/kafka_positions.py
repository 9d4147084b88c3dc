"""Kafka positions outside the partition's log, found and acted on for the Kafka poller.

The decisions are :func:`pumphouse.pollers.positions.check_kafka_position`'s (documented
there); this module asks the consumer for the numbers and carries them out:

* on assignment, a committed offset below the partition's log start (retention removed
  records never read) → seek to the log start, counting the gap;
* while running, a fetch position beyond the high watermark on two samples in a row
  (the broker came back empty, the topic was recreated: tansu then answers every fetch
  with nothing and no error) → the poller restarts the partition at the log's
  beginning (``restart``), dropping whatever was recorded at the old positions;
* :meth:`KafkaPositionGuard.generation` is what fences commits
  (:class:`~pumphouse.pollers.positions.CommitFence`);
* **membership**: records are handed to the function only while this member holds its
  place in the group (:meth:`KafkaPositionGuard.may_dispatch`), and commits are sent only
  then (:meth:`KafkaPositionGuard.member`). A member that lost its place (aiokafka reset
  its generation: the group no longer knows it) still holds the old fetch positions, and
  those may point into a different log: a broker that came back empty and a recreated
  topic take the same offsets again, and an empty group accepts a commit from anyone.
  Committing them would skip the new log's first records; handing them to the function
  only makes duplicates. So both wait for the next assignment, whose positions come from
  the broker. After the group coordinator was lost (the broker went away), a commit
  must first show that the group still knows this member (:meth:`confirmed`), since the
  fetcher reconnects before the heartbeat finds out.

The high watermark comes from fetch responses (``consumer.highwater``), which tansu
reports correctly, unlike ``end_offsets``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError

from pumphouse.pollers.positions import check_kafka_position, report_reset

if TYPE_CHECKING:
    from pumphouse.telemetry.metrics import MappingMetrics

__all__ = ["KafkaPositionGuard"]

POSITION_WAIT_SECONDS = 0.1


class KafkaPositionGuard:
    """Finds positions outside the log (module docs) for one consumer."""

    def __init__(
        self,
        consumer: Any,
        *,
        metrics: MappingMetrics,
        logger: Any,
        restart: Callable[[Any, int], Awaitable[None]],
    ) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._log = logger
        self._restart = restart
        self._assignments = 0
        self._beyond: dict[Any, int] = {}
        self._unconfirmed = False

    def assigned(self) -> None:
        """The group assigned partitions (a new generation for this member)."""
        self._assignments += 1
        self._beyond.clear()
        self._unconfirmed = False

    def member(self) -> bool:
        """Whether this member holds a place in the group: aiokafka's generation is one
        the group gave it (not -1, which it sets when the group no longer knows it)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        generation = getattr(coordinator, "generation", None)
        return isinstance(generation, int) and generation >= 0

    def may_dispatch(self) -> bool:
        """Whether polled records may go to the function (module docs: *membership*)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None and getattr(coordinator, "coordinator_id", 0) is None:
            self._unconfirmed = True  # coordinator lost: the broker may have restarted
        return not self._unconfirmed and self.member()

    def unconfirmed(self) -> bool:
        """The coordinator was lost and no commit has shown the group still knows us."""
        self.may_dispatch()
        return self._unconfirmed and self.member()

    def confirmed(self) -> None:
        """A commit landed: the group knows this member (with its generation)."""
        self._unconfirmed = False

    def generation(self) -> tuple[Any, int]:
        """aiokafka's group generation (-1 while rejoining) and this member's count of
        assignments (tansu numbers a recreated group's generations from 0 again)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        return (getattr(coordinator, "generation", None), self._assignments)

    async def check_committed(self, tps: Sequence[Any]) -> None:
        """Seek partitions whose committed offset is below the log start to the start."""
        consumer = self._consumer
        try:
            committed = {tp: await consumer.committed(tp) for tp in tps}
            known = [tp for tp, offset in committed.items() if offset is not None]
            starts = await consumer.beginning_offsets(known) if known else {}
        except KafkaError as err:
            self._metrics.source_error("list_offsets")
            self._log.warning("cannot check the committed offsets", error=str(err))
            return
        for tp, start in starts.items():
            decision = check_kafka_position(position=committed[tp], log_start=start, log_end=None)
            if decision is not None:
                report_reset(
                    decision, metrics=self._metrics, logger=self._log, partition=tp.partition
                )
                consumer.seek(tp, decision.resume_at)

    async def check_positions(self, tps: Sequence[Any]) -> None:
        """Restart partitions whose fetch position stayed beyond the high watermark."""
        consumer = self._consumer
        for tp in tps:
            high = consumer.highwater(tp)
            try:  # without a valid position aiokafka waits for one: never hold the loop
                position = await asyncio.wait_for(consumer.position(tp), POSITION_WAIT_SECONDS)
            except Exception:  # not assigned any more, or being reset: not now
                self._beyond.pop(tp, None)
                continue
            if high is None or position <= high:
                self._beyond.pop(tp, None)
                continue
            if self._beyond.get(tp) != position:
                self._beyond[tp] = position  # seen once: act when seen again
                continue
            del self._beyond[tp]
            try:
                start = (await consumer.beginning_offsets([tp]))[tp]
            except KafkaError as err:
                self._metrics.source_error("list_offsets")
                self._log.warning("cannot read the log start", error=str(err))
                continue
            decision = check_kafka_position(position=position, log_start=start, log_end=high)
            if decision is not None:
                report_reset(
                    decision, metrics=self._metrics, logger=self._log, partition=tp.partition
                )
                await self._restart(tp, decision.resume_at)


def last_answer(consumer: Any, partitions: Mapping[Any, Any]) -> float | None:
    """When the broker last answered a fetch of a partition being read (epoch seconds);
    now when none is being read (all paused: the function is behind, not the broker)."""
    reading = [tp for tp, part in partitions.items() if not part.lane.paused]
    if not reading:
        return time.time()
    known: list[float] = []
    for tp in reading:
        try:
            stamp = consumer.last_poll_timestamp(tp)
        except AssertionError:  # aiokafka asserts it is assigned: being revoked
            continue
        if stamp is not None:
            known.append(stamp / 1000.0)
    return max(known) if known else None
