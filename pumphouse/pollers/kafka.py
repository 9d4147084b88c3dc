"""The Kafka event source: a consumer group member that invokes a function per partition.

One :class:`KafkaPoller` per mapping runs one aiokafka consumer in the mapping's consumer
group (``ConsumerGroupId``, default the mapping's UUID), subscribed to the mapping's one
topic. This module is the only one that talks to aiokafka; its errors become
:class:`~pumphouse.errors.SourceError` here.

How records flow
----------------
::

    getmany ──▶ lane[p] buffer ──▶ filter + encode ──▶ batch ──▶ invoke ──▶ finished
    (fetch loop)           (one task per assigned partition)                  │
                                                                               ▼
              consumer.commit({p: done_offset, ...}) ◀── committer (coalesces) ◀┘

* **Fetch loop.** ``getmany(max_records=...)`` returns records of any assigned
  partitions; they go to their partition's lane as they are, so aiokafka gets its buffer
  back (and sends the next fetch) at once. A lane whose buffer is very full gets its
  partition paused (``consumer.pause``) until it drained to half.
* **Serializing.** Each partition task turns its records into Lambda-shaped fragments
  (:mod:`~pumphouse.pollers.kafka_records`), once per record — the records the filters
  drop become markers without one — and serializes the next run of records while the
  current batch is being invoked.
* **Partition tasks.** Each assigned partition is an ordered lane
  (:mod:`~pumphouse.pollers.kafka_lanes`) with **one batch in flight at a time**, so
  concurrency equals the number of assigned partitions (within the runtime's slots:
  the mapping's caller limit is set to that number on every rebalance). A batch closes
  at ``BatchSize``, the batching window (default 0.5 s) or the 6 MB payload limit; its
  event is assembled from the fragments without serializing anything again. The error
  policy (:func:`~pumphouse.pollers.policy.process_ordered_batch`) retries, bisects,
  honours ``MaximumRetryAttempts`` / ``MaximumRecordAgeInSeconds`` /
  ``ReportBatchItemFailures`` and, when it gives records up, delivers the failure
  record before the records count as finished. Without any of those settings a failing
  batch is retried until it succeeds, blocking only its own partition.
* **Commits.** A lane's commit position is one past its last finished record (filtered
  records are covered by the batch around them, or finished at once when no batch is
  open). A single committer task commits the latest positions of all partitions in one
  ``OffsetCommit`` whenever one moved (at most every 20 ms), so commits never stall the
  partitions and coalesce under load; revokes and shutdown commit at once. Nothing is
  committed past a record that has not finished, and a record given up is only
  finished once its failure record was delivered.
* **Oversized records.** A record whose event alone exceeds 6 MB goes to the on-failure
  destination with condition ``MaximumPayloadSizeExceeded`` and ``responseContext:
  null`` (``approximateInvokeCount`` 0: it was never invoked), or is dropped and counted
  when there is no destination.
* **kafka:// destinations.** :class:`KafkaTopicDestination` produces one message per
  failed record to the destination topic (same cluster, same credentials), keyed with
  the record's key; its value is the metadata with ``KafkaBatchInfo.recordInfo`` and
  ``payload``, the Kafka event holding that one record.

Rebalances
----------
aiokafka calls :meth:`KafkaPoller.on_partitions_revoked` before the group rebalances and
:meth:`KafkaPoller.on_partitions_assigned` after. On revoke the revoked partitions' tasks
stop starting batches, their buffered records are dropped, the running batch may finish
(bounded by ``ShutdownTimeoutSeconds``; a retry loop stops at its next attempt), what
finished is committed, and only then does the callback return and the partitions move.
On assign each partition gets a fresh lane; the consumer resumes from the committed
offset, or — without one — from ``StartingPosition`` (``TRIM_HORIZON`` → earliest,
``LATEST`` → latest, ``AT_TIMESTAMP`` → ``offsets_for_times``, latest when no record is
that recent). Shutdown does the same for every partition and then leaves the group.

Worked example: partitions 0-3, member A alone, then B joins. A's revoke callback runs
for 0-3: partition 2 is in the middle of a batch of offsets 40-49, partition 0 has 5
buffered records. Partition 0's buffer is dropped (nothing of it was finished), partition
2's batch finishes and A commits {0: 12, 1: 30, 2: 50, 3: 7}. The group assigns 0-1 to A
and 2-3 to B; B resumes partition 2 at 50 — no record lost, none delivered twice. Had A
crashed instead, B would resume at the last commit and redeliver at most the batch in
flight per partition.

Offset lag (``pumphouse_kafka_offset_lag_records``) is the partition's high watermark
(``consumer.highwater``: right on tansu, where ``end_offsets`` is not) minus the next
offset to process, sampled once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from pumphouse.aws import error_code
from pumphouse.errors import DestinationError, SourceError
from pumphouse.pollers.batching import (
    BatchLimits,
    KafkaFraming,
    assemble_kafka_event,
    group_fragments,
)
from pumphouse.pollers.destinations import (
    FailureDestination,
    kafka_failure_record_for,
    kafka_topic_failure_record,
    make_destination,
)
from pumphouse.pollers.dispatch import Dispatcher, FailureMessage, retry_policy
from pumphouse.pollers.kafka_commits import COMMIT_RETRY_SECONDS, OffsetCommitter
from pumphouse.pollers.kafka_destination import KafkaTopicDestination, describe_kafka_error
from pumphouse.pollers.kafka_lanes import (
    BatchItem,
    LaneStep,
    OversizedRecord,
    PartitionLane,
    Prepare,
)
from pumphouse.pollers.kafka_positions import KafkaPositionGuard, last_answer
from pumphouse.pollers.kafka_records import (
    FragmentEncoder,
    KafkaMessage,
    partition_key,
    record_dict,
)
from pumphouse.pollers.kafka_security import KafkaSecurity, build_security
from pumphouse.pollers.policy import AttemptResult, FailureCondition, GiveUp
from pumphouse.pollers.responses import kafka_item_id
from pumphouse.retrying import sleep_unless

if TYPE_CHECKING:
    from pumphouse.aws import AwsClients
    from pumphouse.pollers.base import MappingContext
    from pumphouse.runtime.slots import CallerSlots

log = structlog.get_logger("pumphouse.pollers.kafka")

SELF_MANAGED_EVENT_SOURCE: Final = "SelfManagedKafka"
MSK_EVENT_SOURCE: Final = "aws:kafka"

IDLE_POLL_MS: Final = 1_000
"""How long the fetch loop waits for records when none are buffered (a stop or records
arriving end the wait at once): an idle mapping's loop wakes once a second, to sample
the lag."""
FETCHER_TIMEOUT_MS: Final = 1_000
"""aiokafka's ``consumer_timeout_ms``: the longest its fetch task sleeps when nothing
happens. Its default (200 ms) wakes an idle consumer five times a second for nothing:
answers, assignments, seeks, pauses and consumed records wake it anyway."""
MIN_FETCH_RECORDS: Final = 1_000
"""``getmany`` takes up to this many records (more with a larger BatchSize): a whole
fetch response in one call, so aiokafka sends the next fetch at once."""
MAX_FETCH_RECORDS: Final = 10_000
LAG_SAMPLE_SECONDS: Final = 1.0
MEMBERSHIP_RECHECK_SECONDS: Final = 0.1
"""How often a partition waiting for this member's place in the group looks again."""


# ---------------------------------------------------------------------------------------
# The source


@dataclass(frozen=True)
class KafkaSource:
    """Where a mapping reads, resolved: the event's header fields and the group."""

    topic: str
    bootstrap_servers: tuple[str, ...]
    group_id: str
    event_source: str
    event_source_arn: str | None

    @property
    def bootstrap_text(self) -> str:
        """``bootstrapServers`` of the event: the servers, comma-separated."""
        return ",".join(self.bootstrap_servers)

    def framing(self) -> KafkaFraming:
        return KafkaFraming(
            event_source=self.event_source,
            bootstrap_servers=self.bootstrap_text,
            event_source_arn=self.event_source_arn,
        )


async def msk_bootstrap_servers(
    cluster_arn: str, *, aws: AwsClients, security: KafkaSecurity
) -> tuple[tuple[str, ...], KafkaSecurity]:
    """Ask the MSK API (``GetBootstrapBrokers``) for a cluster's brokers; see
    :func:`choose_msk_brokers` for which of its broker strings is used."""
    try:
        client = await aws.client("kafka")
        answer: Mapping[str, Any] = await client.get_bootstrap_brokers(ClusterArn=cluster_arn)
    except Exception as err:
        code = error_code(err) or type(err).__name__
        raise SourceError(
            f"cannot find the brokers of {cluster_arn}: MSK GetBootstrapBrokers failed ({code})"
        ) from None
    return choose_msk_brokers(answer, cluster_arn=cluster_arn, security=security)


def choose_msk_brokers(
    answer: Mapping[str, Any], *, cluster_arn: str, security: KafkaSecurity
) -> tuple[tuple[str, ...], KafkaSecurity]:
    """The broker string of a ``GetBootstrapBrokers`` answer that fits the
    authentication: SASL/SCRAM → ``BootstrapBrokerStringSaslScram``, TLS (client
    certificate or root CA) → ``BootstrapBrokerStringTls``, otherwise the plaintext one —
    or TLS when the cluster offers only TLS, upgrading the security protocol to ``SSL``
    with the system's trust store — unless ``PLAINTEXT`` was configured explicitly."""
    if security.security_protocol == "SASL_PLAINTEXT":
        raise SourceError(
            f"the MSK cluster {cluster_arn}: Amazon MSK offers SASL only over TLS (use "
            "SecurityProtocol SASL_SSL)",
            retryable=False,
        )
    scram = security.sasl_mechanism is not None and security.sasl_mechanism.startswith("SCRAM")
    if scram:
        order = ["BootstrapBrokerStringSaslScram", "BootstrapBrokerStringPublicSaslScram"]
    elif security.security_protocol in ("SSL", "SASL_SSL"):
        order = ["BootstrapBrokerStringTls", "BootstrapBrokerStringPublicTls"]
    elif security.explicit:
        order = ["BootstrapBrokerString"]
    else:
        order = [
            "BootstrapBrokerString",
            "BootstrapBrokerStringTls",
            "BootstrapBrokerStringPublicTls",
        ]
    for key in order:
        text = answer.get(key)
        if isinstance(text, str) and text.strip():
            servers = tuple(s.strip() for s in text.split(",") if s.strip())
            if "Tls" in key and security.security_protocol == "PLAINTEXT":
                security = KafkaSecurity(
                    security_protocol="SSL",
                    ssl_context=ssl.create_default_context(),
                    sources=security.sources,
                )
            return servers, security
    raise SourceError(
        f"the MSK cluster {cluster_arn} offers no bootstrap brokers for "
        f"{security.sasl_mechanism or security.security_protocol}",
        retryable=False,
    )


# ---------------------------------------------------------------------------------------
# The poller


class _Partition:
    """The runtime state of one assigned partition: its lane, task and stop signal."""

    def __init__(self, tp: Any, lane: PartitionLane) -> None:
        self.tp = tp
        self.lane = lane
        self.key = lane.key
        self.wakeup = asyncio.Event()
        self.closing = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.first_offset: int | None = None

    def is_closing(self) -> bool:
        return self.closing.is_set()

    def close(self) -> None:
        self.closing.set()
        self.wakeup.set()

    async def sleep(self, delay: float) -> None:
        """Sleep, but wake up when the partition is closing."""
        await sleep_unless(self.closing, delay)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc] # aiokafka is untyped
    """Forwards aiokafka's rebalance callbacks to the poller."""

    def __init__(self, poller: KafkaPoller) -> None:
        self._poller = poller

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._poller.on_partitions_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._poller.on_partitions_assigned(list(assigned))


class KafkaBinding:
    """The :class:`~pumphouse.pollers.dispatch.SourceBinding` of Kafka records: a record
    is ``(message, fragment)``, identified as ``("<topic>-<partition>", offset)``."""

    def __init__(self, *, source: KafkaSource, function_arn: str) -> None:
        self.source = source
        self.framing = source.framing()
        self.function_arn = function_arn

    def record_id(self, record: BatchItem) -> Hashable:
        message = record[0]
        return (partition_key(message.topic, message.partition), message.offset)

    def item_id(self, identifier: Any) -> Hashable | None:
        return kafka_item_id(identifier)

    def arrival(self, record: BatchItem) -> float:
        return record[0].timestamp / 1000.0

    def oldest_arrival(self, records: Sequence[BatchItem]) -> float:
        return self.arrival(records[0])  # a partition's records, in offset order

    def fragment(self, record: BatchItem) -> bytes:
        return record[1]

    def event(self, records: Sequence[BatchItem]) -> bytes:
        return assemble_kafka_event(
            group_fragments((self.s3_location([r]), r[1]) for r in records),
            framing=self.framing,
        )

    def s3_location(self, records: Sequence[BatchItem]) -> str:
        message = records[0][0]
        return partition_key(message.topic, message.partition)

    def failure_messages(
        self, gave_up: GiveUp[BatchItem], *, destination_type: str, now: float
    ) -> Sequence[FailureMessage]:
        source = self.source
        records = gave_up.records
        if destination_type == "kafka":
            # kafka://: one message per record, keyed like it, holding its own event.
            messages = []
            for item in records:
                single = self.event([item])
                record = kafka_topic_failure_record(
                    request_id=gave_up.request_id,
                    function_arn=self.function_arn,
                    condition=gave_up.condition,
                    approximate_invoke_count=gave_up.approximate_invoke_count,
                    response_context=gave_up.response_context,
                    event_source_arn=source.event_source_arn,
                    bootstrap_servers=source.bootstrap_text,
                    payload_size=len(single),
                    offset=item[0].offset,
                    timestamp_ms=item[0].timestamp,
                    timestamp=now,
                )
                messages.append(
                    FailureMessage(record, payload=single, message_key=item[0].key)
                )
            return messages
        event = self.event(records)
        key = self.s3_location(records)
        record = kafka_failure_record_for(
            gave_up,
            function_arn=self.function_arn,
            event_source_arn=source.event_source_arn,
            bootstrap_servers=source.bootstrap_text,
            payload_size=len(event),
            partition_key=lambda _item: key,
            offset=lambda item: int(item[0].offset),
            timestamp_ms=lambda item: int(item[0].timestamp),
            timestamp=now,
        )
        return [FailureMessage(record, payload=event)]


class KafkaPoller:
    """Polls one Kafka mapping (see the module docstring)."""

    def __init__(self, ctx: MappingContext) -> None:
        self.ctx = ctx
        mapping = ctx.mapping
        topic = mapping.topic
        if not topic:
            raise SourceError("a Kafka mapping needs exactly one topic in Topics", retryable=False)
        self.topic = topic
        self.metrics = ctx.metrics
        self.log = log.bind(mapping=mapping.label, topic=topic)
        self.policy = retry_policy(mapping)
        self.limits = BatchLimits(
            max_records=mapping.batch_size, window_seconds=mapping.batching_window
        )
        self.filters = mapping.compiled_filters()
        self.fetch_records = min(MAX_FETCH_RECORDS, max(MIN_FETCH_RECORDS, mapping.batch_size))
        self.pause_records = max(10 * mapping.batch_size, 20_000)
        self.consumer_settings = mapping.kafka_consumer_settings(ctx.config.Settings)
        self.function_name = ctx.function.name
        self.function_arn = ctx.function.invoked_function_arn
        self.partitions: dict[Any, _Partition] = {}
        self.source: KafkaSource | None = None
        self.framing: KafkaFraming | None = None
        self.security = KafkaSecurity()
        self.destination: FailureDestination | None = None
        self.consumer: Any = None
        self.committer: OffsetCommitter | None = None
        self.caller: CallerSlots | None = None
        self.dispatcher: Dispatcher[BatchItem] | None = None
        self._fatal: BaseException | None = None
        self.guard: KafkaPositionGuard | None = None  # positions outside the log
        destination = mapping.on_failure_destination
        if destination is not None and destination == f"kafka://{topic}":
            raise SourceError(
                f"the on-failure destination {destination} is the source topic: failed "
                "records would be read again",
                retryable=False,
            )

    # -- setting up ------------------------------------------------------------------

    async def _resolve_source(self) -> KafkaSource:
        mapping = self.ctx.mapping
        self.security = await build_security(
            mapping.SourceAccessConfigurations,
            aws=self.ctx.aws,
            protocol=self.consumer_settings.SecurityProtocol,
        )
        group = mapping.consumer_group_id or mapping.uuid
        if mapping.is_msk:
            arn = mapping.EventSourceArn
            assert arn is not None
            servers, self.security = await msk_bootstrap_servers(
                arn, aws=self.ctx.aws, security=self.security
            )
            return KafkaSource(
                topic=self.topic,
                bootstrap_servers=servers,
                group_id=group,
                event_source=MSK_EVENT_SOURCE,
                event_source_arn=arn,
            )
        servers = tuple(mapping.bootstrap_servers)
        if not servers:
            raise SourceError("a Kafka mapping needs bootstrap servers", retryable=False)
        return KafkaSource(
            topic=self.topic,
            bootstrap_servers=servers,
            group_id=group,
            event_source=SELF_MANAGED_EVENT_SOURCE,
            event_source_arn=None,
        )

    def _kafka_destination(self, topic: str) -> FailureDestination:
        if topic == self.topic:
            raise SourceError(
                f"the on-failure destination kafka://{topic} is the source topic",
                retryable=False,
            )
        assert self.source is not None
        return KafkaTopicDestination(
            topic,
            bootstrap_servers=self.source.bootstrap_servers,
            security=self.security,
            client_id=self.consumer_settings.ClientId,
            request_timeout_ms=self.consumer_settings.RequestTimeoutMs,
        )

    def _consumer_options(self, source: KafkaSource) -> dict[str, Any]:
        position = self.ctx.mapping.starting_position
        reset = "earliest" if position is None or position.value == "TRIM_HORIZON" else "latest"
        return {
            "bootstrap_servers": list(source.bootstrap_servers),
            "group_id": source.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": reset,
            "max_poll_records": self.fetch_records,
            "fetch_max_wait_ms": self.consumer_settings.FetchMaxWaitMs,
            "consumer_timeout_ms": FETCHER_TIMEOUT_MS,
            **self.consumer_settings.aiokafka_options(),
            **self.security.aiokafka_options(),
        }

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        ctx = self.ctx
        ctx.status.progress.work_noun = "partition"  # progress.py names what has work
        self.source = source = await self._resolve_source()
        self.framing = source.framing()
        self.log = self.log.bind(group=source.group_id)
        target = ctx.mapping.on_failure_destination
        if target is not None:
            self.destination = make_destination(
                target,
                clients=ctx.aws,
                kafka_factory=self._kafka_destination,
            )
        self.caller = ctx.runtime.caller(ctx.mapping.label, function=self.function_name, limit=1)
        self.dispatcher = Dispatcher(
            binding=KafkaBinding(source=source, function_arn=self.function_arn),
            runtime=ctx.runtime,
            function=self.function_name,
            caller=self.caller,
            metrics=self.metrics,
            status=ctx.status,
            policy=self.policy,
            destination=self.destination,
            mapping_uuid=ctx.mapping.uuid,
            secrets=tuple(ctx.function.environment.values()),
            wall_clock=ctx.wall_clock,
            logger=self.log,
        )
        consumer = AIOKafkaConsumer(**self._consumer_options(source))
        self.consumer = consumer
        consumer.subscribe([self.topic], listener=_Listener(self))
        self.guard = guard = KafkaPositionGuard(
            consumer, metrics=self.metrics, logger=self.log, restart=self._reset_partition
        )
        committer = OffsetCommitter(
            consumer,
            metrics=self.metrics,
            logger=self.log,
            generation=guard.generation,
            member=guard.member,
            confirmed=guard.confirmed,
        )
        self.committer = committer
        committer_task: asyncio.Task[None] | None = None
        try:
            try:
                await consumer.start()
            except KafkaError as err:
                self.metrics.source_error("connect")
                detail = describe_kafka_error(err)
                raise SourceError(
                    f"cannot connect to Kafka at {source.bootstrap_text}: {detail}"
                ) from None
            ctx.status.ready()
            self.log.info(
                "kafka consumer started",
                bootstrap_servers=source.bootstrap_text,
                **self.security.describe(),
            )
            await self._check_topic()
            committer_task = asyncio.create_task(committer.run(), name="kafka-committer")
            await self._fetch_loop()
        finally:
            await self._shutdown(committer_task)

    async def _check_topic(self) -> None:
        """Say so when the topic does not exist (the consumer waits for it)."""
        try:
            topics = await self.consumer.topics()
        except KafkaError as err:
            self.metrics.source_error("metadata")
            self.log.warning("cannot list topics", error=describe_kafka_error(err))
            return
        if self.topic not in topics:
            self.ctx.status.problem(f"topic {self.topic} does not exist (waiting for it)")
            self.log.warning("topic does not exist; waiting for it")

    async def _fetch_loop(self) -> None:
        guard, committer = self.guard, self.committer
        assert guard is not None and committer is not None
        membership: asyncio.Task[bool] | None = None  # the running membership check
        stopping = self.ctx.stopping
        stop_waiter = asyncio.ensure_future(stopping.wait())
        next_lag = next_probe = 0.0
        try:
            while not stopping.is_set():
                if self._fatal is not None:
                    raise SourceError(
                        f"a partition task failed: {describe_kafka_error(self._fatal)}"
                    ) from self._fatal
                data = await self._poll(stop_waiter)
                now = time.monotonic()
                idle = membership is None or membership.done()
                if idle and now >= next_probe and guard.unconfirmed():
                    # In the background, so that a stop stays prompt.
                    next_probe = now + COMMIT_RETRY_SECONDS
                    membership = asyncio.create_task(committer.probe(), name="membership")
                if data and not guard.may_dispatch():
                    self._hold(data)
                elif data:
                    self._dispatch(data)
                    # getmany returns at once while aiokafka holds fetched records: let the
                    # partitions run between two chunks instead of after the whole fetch.
                    await asyncio.sleep(0)
                if now >= next_lag:
                    next_lag = now + LAG_SAMPLE_SECONDS
                    self._sample_lag()
                    await guard.check_positions(list(self.partitions))  # log reset under us
        finally:
            stop_waiter.cancel()
            if membership is not None:
                membership.cancel()

    async def _poll(self, stop_waiter: asyncio.Future[Any]) -> Mapping[Any, Sequence[Any]]:
        """Take what aiokafka holds; with nothing held, wait up to ``IDLE_POLL_MS`` for
        records, a stop ending the wait at once."""
        consumer = self.consumer
        try:
            data: Mapping[Any, Sequence[Any]] = await consumer.getmany(
                timeout_ms=0, max_records=self.fetch_records
            )
            if not data:
                poll = asyncio.ensure_future(
                    consumer.getmany(timeout_ms=IDLE_POLL_MS, max_records=self.fetch_records)
                )
                try:
                    await asyncio.wait((poll, stop_waiter), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not poll.done():  # stopping: the records stay with aiokafka
                        poll.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await poll
                if poll.cancelled():
                    return {}
                data = poll.result()
        except KafkaError as err:
            self.metrics.source_error("poll")
            detail = describe_kafka_error(err)
            raise SourceError(f"polling {self.topic} failed: {detail}") from None
        return data

    def _hold(self, data: Mapping[Any, Sequence[Any]]) -> None:
        """Membership unsure (kafka_positions.py): read these records again later — at
        the same offsets if the group still knows us, else from the next assignment."""
        for tp, messages in data.items():
            if messages and tp in self.partitions:
                with contextlib.suppress(Exception):  # not assigned any more: nothing to do
                    self.consumer.seek(tp, messages[0].offset)

    def _dispatch(self, data: Mapping[Any, Sequence[Any]]) -> None:
        """Hand the polled records to their partitions (they serialize them)."""
        polled = 0
        for tp, messages in data.items():
            part = self.partitions.get(tp)
            if part is None or part.closing.is_set() or not messages:
                continue
            polled += len(messages)
            if part.first_offset is None:
                part.first_offset = messages[0].offset
            lane = part.lane
            lane.feed(messages)
            if lane.wants_pause:
                self.consumer.pause(tp)
                lane.paused = True
            part.wakeup.set()
        if polled:
            self.metrics.polled.inc(polled)

    def _preparer(self, encoder: FragmentEncoder) -> Prepare:
        """Serialize a partition's records, applying the filters (None: filtered out)."""
        if self.filters.is_empty:
            return encoder.encode_all
        encode = encoder.encode
        matches = self.filters.matches
        filtered_out = self.metrics.filtered_out

        def encode_matching(messages: Sequence[KafkaMessage]) -> list[bytes | None]:
            fragments = [encode(m) if matches(record_dict(m)) else None for m in messages]
            dropped = fragments.count(None)
            if dropped:
                filtered_out.inc(dropped)
            return fragments

        return encode_matching

    def _sample_lag(self) -> None:
        consumer = self.consumer
        backlog: dict[str, bool] = {}  # what has work, for progress.py
        for tp, part in self.partitions.items():
            try:
                high = consumer.highwater(tp)
            except Exception:  # not assigned any more: skip the sample
                continue
            if high is None:
                continue
            lane = part.lane
            if lane.done_offset is not None:
                position = lane.done_offset
            elif part.first_offset is not None:
                position = part.first_offset
            else:
                continue
            self.metrics.offset_lag(part.key).set(max(0, high - position))
            backlog[part.key] = high > position
        progress = self.ctx.status.progress
        progress.work_snapshot(backlog, time.time())
        progress.answered(last_answer(consumer, self.partitions))  # broker reachable?

    # -- partitions ------------------------------------------------------------------

    async def on_partitions_assigned(self, assigned: list[Any]) -> None:
        try:
            await self._assign(assigned)
        except Exception as err:  # aiokafka would only log it: record it as fatal
            self.log.exception("assigning partitions failed")
            self._fatal = err

    async def _assign(self, assigned: list[Any]) -> None:
        assert self.guard is not None
        self.guard.assigned()
        new = [tp for tp in assigned if tp not in self.partitions]
        for tp in new:
            self._open_partition(tp)
        if new:
            await self._seek_new(new)
            await self.guard.check_committed(new)  # committed offsets behind the log start
        self._partitions_changed()
        self.metrics.rebalance("assigned")
        self.log.info(
            "partitions assigned",
            partitions=sorted(tp.partition for tp in assigned),
        )

    def _open_partition(self, tp: Any) -> _Partition:
        assert self.framing is not None
        encoder = FragmentEncoder(tp.topic, tp.partition)
        lane = PartitionLane(
            tp.topic,
            tp.partition,
            limits=self.limits,
            framing=self.framing,
            prepare=self._preparer(encoder),
            pause_records=self.pause_records,
        )
        part = _Partition(tp, lane)
        self.partitions[tp] = part
        part.task = asyncio.create_task(self._run_partition(part), name=f"kafka:{part.key}")
        part.task.add_done_callback(self._partition_done)
        return part

    # -- positions that no longer exist (decisions: pollers/positions.py) --------------

    async def _reset_partition(self, tp: Any, offset: int) -> None:
        """Start the partition again at ``offset`` with a fresh lane; what was recorded
        at the old positions is never committed."""
        part = self.partitions.get(tp)
        if part is None:
            return
        part.close()
        part.lane.discard()
        if part.task is not None and not part.task.done():
            _, pending = await asyncio.wait([part.task], timeout=self.ctx.shutdown_timeout)
            for task in pending:
                task.cancel()
        if self.committer is not None:
            self.committer.forget([tp])
        self.partitions.pop(tp, None)
        self._open_partition(tp)
        self.consumer.seek(tp, offset)

    async def _seek_new(self, tps: list[Any]) -> None:
        """``AT_TIMESTAMP``: position partitions without a committed offset."""
        mapping = self.ctx.mapping
        position = mapping.starting_position
        if position is None or position.value != "AT_TIMESTAMP":
            return
        stamp = mapping.StartingPositionTimestamp
        if stamp is None:
            return
        consumer = self.consumer
        fresh = [tp for tp in tps if await consumer.committed(tp) is None]
        if not fresh:
            return
        millis = int(float(stamp) * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(fresh, millis))
        for tp in fresh:
            entry = found.get(tp)
            if entry is not None:
                consumer.seek(tp, entry.offset)
            # else: no record that recent; auto_offset_reset="latest" starts at the end.

    async def on_partitions_revoked(self, revoked: list[Any]) -> None:
        if not revoked:  # the first join: nothing was assigned yet
            return
        try:
            await self._release([tp for tp in revoked if tp in self.partitions])
            self.metrics.rebalance("revoked")
            self.log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))
        except Exception as err:
            self.log.exception("releasing partitions failed")
            self._fatal = err

    async def _release(self, tps: list[Any]) -> None:
        """Stop, drain (bounded) and commit the partitions, then forget them."""
        if not tps:
            return
        parts = [self.partitions[tp] for tp in tps]
        for part in parts:
            part.close()
            part.lane.discard()
        tasks = [p.task for p in parts if p.task is not None and not p.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.ctx.shutdown_timeout)
            if pending:
                self.log.warning(
                    "batches still running after the shutdown timeout; abandoning them",
                    partitions=sorted(p.key for p in parts if p.task in pending),
                )
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending)
        for part in parts:
            self._report_progress(part)
        if self.committer is not None:
            await self.committer.commit(tps)
            self.committer.forget(tps)
        consumer = self.consumer
        for part in parts:
            self.partitions.pop(part.tp, None)
            with contextlib.suppress(Exception):
                consumer.resume(part.tp)
            with contextlib.suppress(KeyError):
                self.metrics.metrics.kafka_offset_lag.remove(
                    *self.metrics.labels.values(), part.key
                )
        self._partitions_changed()

    def _partitions_changed(self) -> None:
        count = len(self.partitions)
        self.metrics.pollers_active.set(count)
        if self.caller is not None:
            self.caller.set_limit(max(1, count))

    def _partition_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        err = task.exception()
        if err is not None and self._fatal is None:
            self._fatal = err

    async def _run_partition(self, part: _Partition) -> None:
        lane = part.lane
        consumer = self.consumer
        log_ = self.log.bind(partition=part.tp.partition)
        guard = self.guard
        assert guard is not None
        while not part.closing.is_set():
            part.wakeup.clear()
            if not guard.may_dispatch():  # kafka_positions.py: *membership*
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(part.wakeup.wait(), MEMBERSHIP_RECHECK_SECONDS)
                continue
            step = lane.fill(time.monotonic())
            self._report_progress(part)
            if lane.wants_resume:
                consumer.resume(part.tp)
                lane.paused = False
            if step is None:
                deadline = lane.deadline
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(part.wakeup.wait(), timeout=timeout)
                continue
            try:
                await self._run_step(part, step)
            except DestinationError as err:
                # Only raised when the partition is closing: nothing after it commits.
                log_.warning("on-failure delivery abandoned", error=str(err))
                return
            self._report_progress(part)

    async def _run_step(self, part: _Partition, step: LaneStep) -> None:
        assert self.dispatcher is not None  # built in run()
        if isinstance(step, OversizedRecord):
            gave_up: GiveUp[BatchItem] = GiveUp(
                records=[(step.message, step.fragment)],
                condition=FailureCondition.MAXIMUM_PAYLOAD_SIZE_EXCEEDED,
                approximate_invoke_count=0,
                response_context=None,
                request_id=None,
            )
            await self.dispatcher.give_up(gave_up, stopping=part.is_closing, sleep=part.sleep)
            part.lane.finished(step)
            return
        lane = part.lane
        dispatcher = self.dispatcher

        async def invoke(items: Sequence[BatchItem]) -> AttemptResult:
            fragments = step.fragments if items is step.items else [f for _, f in items]
            # Serialize the lane's next records while this batch runs.
            return await dispatcher.attempt(
                items, event=lane.event(fragments), while_running=lane.prepare_ahead
            )

        async def finished(items: Sequence[BatchItem]) -> None:
            lane.finished(step, items)
            self._report_progress(part)

        await dispatcher.process_ordered(
            step.items,
            invoke=invoke,
            finished=finished,
            stopping=part.is_closing,
            sleep=part.sleep,
        )

    def _report_progress(self, part: _Partition) -> None:
        progress = part.lane.take_progress()
        if progress is not None and self.committer is not None:
            self.committer.advance(part.tp, progress[0], progress[1])

    # -- stopping --------------------------------------------------------------------

    async def _shutdown(self, committer_task: asyncio.Task[None] | None) -> None:
        consumer = self.consumer
        try:
            await self._release(list(self.partitions))
        except Exception as err:
            self.log.warning("draining partitions failed", error=describe_kafka_error(err))
        if committer_task is not None:
            committer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer_task
        if consumer is not None:
            await _leave_generation_zero(consumer)
            try:
                await consumer.stop()  # leaves the group
            except Exception as err:
                self.log.warning("stopping the consumer failed", error=str(err))
        if isinstance(self.destination, KafkaTopicDestination):
            await self.destination.close()
        self.metrics.pollers_active.set(0)
        self.log.info("kafka consumer stopped")


async def _leave_generation_zero(consumer: Any) -> None:
    """Send LeaveGroup for a member of generation 0, which aiokafka skips.

    aiokafka's ``stop()`` leaves the group only when ``generation > 0`` (Kafka numbers
    generations from 1). tansu numbers a new group's first generation 0, so without this
    the member that created the group would not leave, and the next member to join would
    wait a whole session timeout for it. Best effort: a failure changes nothing else.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or getattr(coordinator, "generation", None) != 0:
        return
    member = getattr(coordinator, "member_id", None)
    if not member:
        return
    from aiokafka.protocol.group import LeaveGroupRequest

    with contextlib.suppress(Exception):
        request = LeaveGroupRequest(coordinator.group_id, member)
        await asyncio.wait_for(coordinator._send_req(request), timeout=2.0)


__all__ = [
    "MSK_EVENT_SOURCE",
    "SELF_MANAGED_EVENT_SOURCE",
    "KafkaPoller",
    "KafkaSource",
    "KafkaTopicDestination",
    "choose_msk_brokers",
    "msk_bootstrap_servers",
]
