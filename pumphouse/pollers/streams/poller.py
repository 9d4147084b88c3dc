"""The mapping-level poller of a stream: discovers shards, balances leases, runs one
:class:`~pumphouse.pollers.streams.consumer.ShardProcessor` per leased shard.

Starting position of a shard without a checkpoint: ``TRIM_HORIZON`` when one of its
parents has a checkpoint (this mapping read the parent, so the child continues it);
otherwise the mapping's ``StartingPosition`` (``TRIM_HORIZON``, ``LATEST``, Kinesis
``AT_TIMESTAMP``). With a checkpoint: ``AFTER_SEQUENCE_NUMBER`` it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
import random
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from pumphouse.errors import (
    LeaseLost,
    SourceError,
    SourceNotFound,
    StateStoreError,
)
from pumphouse.pollers.destinations import (
    FailureDestination,
    make_destination,
)
from pumphouse.pollers.dispatch import Dispatcher, retry_policy
from pumphouse.pollers.progress import expected_share
from pumphouse.pollers.stream_positions import (
    checked_checkpoint,
    current_checkpoints,
    report_vanished,
)
from pumphouse.pollers.streams.consumer import ShardExit, ShardProcessor
from pumphouse.pollers.streams.leases import MEMBERS_SEPARATOR, plan_leases
from pumphouse.pollers.streams.lineage import ShardLineage, ShardState
from pumphouse.pollers.streams.records import StreamBinding, StreamRecord
from pumphouse.pollers.streams.source import StartPosition, StreamSource
from pumphouse.retrying import sleep_unless
from pumphouse.state import Checkpoint, Lease, LeaseInfo, retry_state

if TYPE_CHECKING:
    from pumphouse.config import EventSourceMapping
    from pumphouse.pollers.base import MappingContext


log = structlog.get_logger("pumphouse.streams")


def start_position(
    *,
    checkpoint: Checkpoint | None,
    parent_ids: Iterable[str],
    checkpointed: Collection[str],
    mapping: EventSourceMapping,
) -> StartPosition:
    """Where a shard's consumer starts reading (see the module docstring): after its
    checkpoint; at the trim horizon when one of its parents was read by this mapping
    (``checkpointed``: the shards with a checkpoint); else the mapping's
    ``StartingPosition``."""
    if checkpoint is not None and checkpoint.sequence_number:
        return StartPosition("AFTER_SEQUENCE_NUMBER", checkpoint.sequence_number)
    if any(parent in checkpointed for parent in parent_ids):
        return StartPosition("TRIM_HORIZON")
    kind = str(mapping.StartingPosition or "TRIM_HORIZON")
    if kind == "AT_TIMESTAMP":
        stamp = mapping.StartingPositionTimestamp
        return StartPosition(kind, timestamp=float(stamp) if stamp is not None else None)
    return StartPosition(kind)


# --- the poller: discovery, leases, shard processors ---------------------------------------


@dataclass
class _Owned:
    lease: Lease
    processor: ShardProcessor
    task: asyncio.Task[ShardExit]
    renewed_at: float


class StreamPoller(abc.ABC):
    """One stream mapping: discovers shards, balances leases, runs shard processors.

    Subclasses (:class:`~pumphouse.pollers.kinesis.KinesisPoller`,
    :class:`~pumphouse.pollers.dynamodb.DynamoDBStreamsPoller`) provide
    :meth:`make_source` and may refuse configurations in :meth:`check`.
    """

    discovery_interval: float = 10.0
    """Seconds between two shard listings (sooner when a shard ends)."""

    def __init__(self, ctx: MappingContext) -> None:
        self.ctx = ctx
        mapping = ctx.mapping
        self.check()
        self.source = self.make_source()
        self.filters = mapping.compiled_filters()
        self.policy = retry_policy(mapping)
        self.function_arn = ctx.function.invoked_function_arn
        self.destination: FailureDestination | None = None
        if mapping.on_failure_destination:
            self.destination = make_destination(mapping.on_failure_destination, clients=ctx.aws)
        self.lanes = 1 if mapping.tumbling_window > 0 else mapping.parallelization_factor
        self.caller = ctx.runtime.caller(
            mapping.label, function=ctx.function.name, limit=self.lanes
        )
        self.dispatcher: Dispatcher[StreamRecord] = Dispatcher(
            binding=StreamBinding(
                source="kinesis" if self.source.kind == "kinesis" else "dynamodb",
                stream_arn=self.source.stream_arn,
                function_arn=self.function_arn,
            ),
            runtime=ctx.runtime,
            function=ctx.function.name,
            caller=self.caller,
            metrics=ctx.metrics,
            status=ctx.status,
            policy=self.policy,
            destination=self.destination,
            mapping_uuid=mapping.uuid,
            secrets=tuple(ctx.function.environment.values()),
            wall_clock=ctx.wall_clock,
            logger=log.bind(mapping=mapping.label),
        )
        self.lineage = ShardLineage()
        self.checkpoints: dict[str, Checkpoint] = {}
        self.owned: dict[str, _Owned] = {}
        self.lease_ttl = float(ctx.config.Settings.LeaseDurationSeconds)
        single = ctx.state.kind == "sqlite"
        self.allow_steal = not single
        # SQLite commits cost an fsync (~2 ms, one writer thread for every shard): with
        # one replica there is no takeover to protect, so checkpoints are written behind
        # the lanes (coalesced, one write in flight per shard). A crash then repeats the
        # batches finished during the last write as well. With Redis every checkpoint is
        # awaited: a new owner repeats at most the batch that was running.
        self.overlap_checkpoints = single
        self.rediscover = asyncio.Event()
        self._bound = log.bind(mapping=mapping.label)
        self._last_listing = -math.inf
        self._releases: set[asyncio.Task[None]] = set()
        self._membership: Lease | None = None
        self.share = 0
        """Shards this replica should own at least (progress.py): floor(eligible/replicas)."""
        self._vanished: set[str] = set()
        ctx.status.progress.work_noun = "shard"
        ctx.status.store_down_since = lambda: ctx.state.health.down_since

    # -- what a source provides ------------------------------------------------------------

    def check(self) -> None:  # noqa: B027 - an optional hook: most sources accept everything
        """Refuse what this source cannot do (raise SourceError with retryable=False)."""

    @abc.abstractmethod
    def make_source(self) -> StreamSource:
        """The source client wrapper."""

    # -- run ----------------------------------------------------------------------------------

    @property
    def lease_prefix(self) -> str:
        return f"{self.ctx.mapping.uuid}/"

    def lease_name(self, shard_id: str) -> str:
        return self.lease_prefix + shard_id

    @property
    def members_prefix(self) -> str:
        return f"{self.ctx.mapping.uuid}{MEMBERS_SEPARATOR}"

    async def run(self) -> None:
        ctx = self.ctx
        await self.source.describe()
        ctx.status.ready()
        ctx.status.progress.read_succeeded()  # the stream answers again (progress.py)
        renewer = asyncio.create_task(self._renew_loop(), name=f"renew:{ctx.mapping.label}")
        try:
            while not ctx.stopping.is_set():
                await self._cycle()
                delay = self.lease_ttl / 3 * random.uniform(0.8, 1.0)
                await self._wait(delay)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._shutdown()

    async def _renew_loop(self) -> None:
        """Renew the held leases every third of a lease duration, whatever the
        coordinator is doing: taking over many shards can take longer than a lease, and
        must never cost this replica the leases it already holds (the Kinesis Client
        Library keeps its lease renewer apart from its lease taker for the same reason)."""
        stopping = self.ctx.stopping
        while not stopping.is_set():
            await sleep_unless(stopping, self.lease_ttl / 3)
            if not stopping.is_set():
                await self._renew()
                self._update_gauges()  # a lease lost in _renew stops counting at once

    async def _wait(self, delay: float) -> None:
        stopping = asyncio.ensure_future(self.ctx.stopping.wait())
        rediscover = asyncio.ensure_future(self.rediscover.wait())
        try:
            await asyncio.wait(
                [stopping, rediscover], timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
            rediscover.cancel()

    async def _cycle(self) -> None:
        ctx = self.ctx
        now = time.monotonic()
        if self.rediscover.is_set() or now - self._last_listing >= self.discovery_interval:
            self.rediscover.clear()
            try:
                self.lineage.update(await self.source.list_shards())
                self._last_listing = now
                ctx.status.progress.read_succeeded()
            except SourceNotFound:
                raise
            except SourceError as err:
                # Keep the shards we know; list again next cycle.
                ctx.metrics.source_error("list_shards")
                ctx.status.problem(str(err))
                self._bound.warning("listing shards failed", error=str(err))
        self._reap()
        uuid = ctx.mapping.uuid
        stop = ctx.stopping
        try:  # one attempt: the next cycle (a third of the lease) tries again, so an
            # outage loses the leases on time instead of blocking here (progress.py)
            self.checkpoints = await ctx.state.checkpoints.list(uuid)
        except StateStoreError as err:
            ctx.status.problem(f"state store: {err}")
            return
        # An earlier incarnation's checkpoints mean nothing here (positions.py).
        self.checkpoints = current_checkpoints(
            self.checkpoints, stream_created=self.source.created_at
        )
        report_vanished(  # checkpoints of shards the stream no longer lists
            self.checkpoints,
            reported=self._vanished,
            listed={s for s, st in self.lineage.states.items() if st is not ShardState.RETIRED},
            metrics=ctx.metrics,
            logger=self._bound,
        )
        self.lineage.mark_ended(s for s, c in self.checkpoints.items() if c.shard_ended)
        for shard_id in self.owned:
            self.lineage.set_state(shard_id, ShardState.PROCESSING)
        if stop.is_set():
            return
        await self._balance()
        self._update_gauges()

    def _update_gauges(self) -> None:
        owned = sum(1 for item in self.owned.values() if not item.processor.lost.is_set())
        self.ctx.status.progress.shards(owned=owned, expected=self.share, now=time.time())
        self.ctx.metrics.shards_owned.set(owned)
        self.ctx.metrics.pollers_active.set(owned)
        self.caller.set_limit(max(1, owned * self.lanes))

    def _reap(self) -> None:
        """Collect shard processors that returned."""
        for shard_id, owned in list(self.owned.items()):
            task = owned.task
            if not task.done():
                continue
            del self.owned[shard_id]
            self.ctx.metrics.forget_shard(shard_id)
            self.ctx.status.progress.forget(shard_id)
            if task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                # A bug or an unrecoverable source error: fail the mapping (the service
                # restarts it with backoff) after giving the lease back.
                self._spawn_release(owned.lease)
                raise error
            exit_ = task.result()
            if exit_ is ShardExit.ENDED:
                self._bound.info("shard ended", shard=shard_id)
                self.lineage.mark_ended([shard_id])
                self.checkpoints[shard_id] = Checkpoint(shard_ended=True)
                self.rediscover.set()
                self._spawn_release(owned.lease)
            elif exit_ is ShardExit.STOPPED:
                self.lineage.set_state(shard_id, ShardState.DISCOVERED)
                self._spawn_release(owned.lease)
            else:
                self.lineage.set_state(shard_id, ShardState.DISCOVERED)

    def _spawn_release(self, lease: Lease) -> None:
        task = asyncio.create_task(self._release(lease))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, lease: Lease) -> None:
        try:
            await self.ctx.state.leases.release(lease)
            self.ctx.metrics.lease_event("released")
        except StateStoreError as err:
            self._bound.warning("lease release failed", lease=lease.name, error=str(err))

    async def _renew(self) -> None:
        """Renew every lease this replica holds (its membership too), in one round trip."""
        now = time.monotonic()
        held = [owned for owned in self.owned.values() if not owned.processor.lost.is_set()]
        leases = [owned.lease for owned in held]
        membership = self._membership
        if membership is not None:
            leases.append(membership)
        try:
            results = await self.ctx.state.leases.renew_all(leases, ttl=self.lease_ttl)
        except StateStoreError as err:
            for owned in held:
                self.ctx.metrics.lease_event("renew_failed")
                if now - owned.renewed_at > self.lease_ttl:
                    owned.processor.lose(f"no renewal for {self.lease_ttl:g}s: {err}")
            return
        if membership is not None:
            renewed = results.pop()
            self._membership = None if isinstance(renewed, LeaseLost) else renewed
        for owned, result in zip(held, results, strict=True):
            if isinstance(result, LeaseLost):
                owned.processor.lose(str(result))
                continue
            owned.lease = result
            owned.processor.lease = result
            owned.renewed_at = now

    async def _leases(self) -> tuple[list[str], list[LeaseInfo]]:
        """The live members' ids and the shard leases, read in one listing (both names
        start with the mapping's UUID); first takes this replica's membership lease if
        it has none.

        Every replica that runs this mapping holds one (renewed with its shard leases),
        so each knows how many share the shards before they own any (see
        :mod:`pumphouse.pollers.streams.leases`). Without stealing (SQLite, one replica)
        there are no members to know: only the shard leases are read.
        """
        leases, me = self.ctx.state.leases, self.ctx.replica_id
        if not self.allow_steal:
            return [], await leases.list(self.lease_prefix)
        if self._membership is None:
            self._membership = await leases.acquire(
                self.members_prefix + me, me, ttl=self.lease_ttl
            )
        infos = await leases.list(self.ctx.mapping.uuid)
        members = [
            info.owner
            for info in infos
            if info.name.startswith(self.members_prefix) and info.owner and not info.expired
        ]
        return members, [info for info in infos if info.name.startswith(self.lease_prefix)]

    async def _balance(self) -> None:
        ctx = self.ctx
        eligible = self.lineage.eligible()
        try:
            members, infos = await self._leases()
        except StateStoreError as err:
            ctx.status.problem(f"state store: {err}")
            return
        prefix = len(self.lease_prefix)
        leases = {info.name[prefix:]: info for info in infos}
        owners = {i.owner for s, i in leases.items() if i.owner and not i.expired and s in eligible}
        # progress.py: owning fewer than this is a stall.
        self.share = expected_share(len(eligible), owners | set(members), me=ctx.replica_id)
        plan = plan_leases(
            me=ctx.replica_id,
            eligible=eligible,
            leases=leases,
            members=members,
            busy=set(self.owned),
            allow_steal=self.allow_steal,
        )
        # Taken together, so that a replica taking over many shards is done in one
        # state-store round trip's time, not one per shard.
        await asyncio.gather(
            *(self._take(shard_id) for shard_id in plan.acquire),
            *(self._take(shard_id, owner=owner) for shard_id, owner in plan.steal),
        )

    async def _take(self, shard_id: str, *, owner: str | None = None) -> None:
        """Acquire a free shard's lease (``owner`` None) or steal it from ``owner``; start
        the shard if it is ours."""
        ctx = self.ctx
        if ctx.stopping.is_set():
            return
        leases, name, me = ctx.state.leases, self.lease_name(shard_id), ctx.replica_id
        try:
            if owner is None:
                lease = await leases.acquire(name, me, ttl=self.lease_ttl)
            else:
                lease = await leases.steal(name, me, ttl=self.lease_ttl, expected_owner=owner)
        except StateStoreError as err:
            ctx.status.problem(f"state store: {err}")
            return
        if lease is None:
            return
        ctx.metrics.lease_event("acquired" if owner is None else "stolen")
        self.lineage.set_state(shard_id, ShardState.LEASED)
        if owner is not None:
            self._bound.info("lease stolen", shard=shard_id, previous_owner=owner)
        await self._start_shard(shard_id, lease)

    def _start_position(self, shard_id: str, checkpoint: Checkpoint | None) -> StartPosition:
        info = self.lineage.shards.get(shard_id)
        return start_position(
            checkpoint=checkpoint,
            parent_ids=info.parent_ids if info is not None else (),
            checkpointed=self.checkpoints,
            mapping=self.ctx.mapping,
        )

    async def _start_shard(self, shard_id: str, lease: Lease) -> None:
        ctx = self.ctx
        try:
            checkpoint = await retry_state(
                lambda: ctx.state.checkpoints.get(ctx.mapping.uuid, shard_id),
                what=f"read checkpoint {shard_id}",
                stop=ctx.stopping,
            )
        except StateStoreError:
            self.lineage.set_state(shard_id, ShardState.DISCOVERED)
            self._spawn_release(lease)
            return
        checkpoint, stale = checked_checkpoint(  # a position the stream no longer has
            checkpoint,
            shard_id=shard_id,
            stream_created=self.source.created_at,
            metrics=ctx.metrics,
            logger=self._bound,
        )
        if checkpoint is not None and checkpoint.shard_ended:
            self.lineage.mark_ended([shard_id])
            self._spawn_release(lease)
            return
        position = (
            StartPosition("TRIM_HORIZON") if stale else self._start_position(shard_id, checkpoint)
        )
        processor = ShardProcessor(
            self, shard_id, lease=lease, checkpoint=checkpoint, position=position
        )
        task = asyncio.create_task(processor.run(), name=f"shard:{ctx.mapping.label}:{shard_id}")
        task.add_done_callback(lambda _: self.rediscover.set())  # wake the coordinator
        self.owned[shard_id] = _Owned(lease, processor, task, time.monotonic())
        self.lineage.set_state(shard_id, ShardState.PROCESSING)
        self._bound.info(
            "shard started",
            shard=shard_id,
            token=lease.token,
            position=processor.position.kind,
            after=processor.position.sequence_number,
        )
        self._update_gauges()

    async def _shutdown(self) -> None:
        """Stop every shard, wait for in-flight batches (bounded), release the leases."""
        owned = list(self.owned.values())
        for item in owned:
            item.processor.stop()
        tasks = [item.task for item in owned]
        deadline = time.monotonic() + self.ctx.shutdown_timeout
        pending = {task for task in tasks if not task.done()}
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Keep renewing while in-flight batches finish, so that their checkpoints
            # are still ours to write.
            _, pending = await asyncio.wait(pending, timeout=min(remaining, self.lease_ttl / 3))
            if pending:
                with contextlib.suppress(StateStoreError):
                    await self._renew()
        for task in pending:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for item in owned:
            if not item.processor.lost.is_set():
                await self._release(item.lease)
        self.owned.clear()
        if self._membership is not None:
            with contextlib.suppress(StateStoreError):
                await self.ctx.state.leases.release(self._membership)
            self._membership = None
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        self.ctx.metrics.shards_owned.set(0)
        self.ctx.metrics.pollers_active.set(0)
