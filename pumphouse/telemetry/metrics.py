"""Every Prometheus metric pumphouse exports, defined in one place.

Other modules never touch ``prometheus_client`` directly: they call
:func:`get_metrics` and use the attributes of :class:`Metrics`.

Naming follows ``pumphouse_<what>_<unit>``: counters end in ``_total``, durations are
in seconds. Labels are bounded: ``mapping`` (the mapping's label, see
``EventSourceMapping.label``), ``function``, ``source`` (sqs, kinesis, dynamodb, kafka),
``shard`` / ``partition``, ``outcome``, ``operation``. Never offsets, ids or messages.

Event counters mirror the per-mapping event counts AWS publishes for event source
mappings (Polled, FilteredOut, Invoked, FailedInvoke, Dropped,
OnFailureDestinationDelivered, Deleted, Committed).
"""

from __future__ import annotations

import contextlib
import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)

_MAPPING = ("mapping", "function", "source")

# Invocation durations: Lambda functions range from sub-millisecond to 15 minutes.
_DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)
_AGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Metrics:
    """All of pumphouse's metrics, registered on one registry.

    The service uses the process-wide instance from :func:`get_metrics`; tests may build
    their own with a fresh :class:`CollectorRegistry`.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry

        # --- service ---------------------------------------------------------------
        self.build_info = Info("pumphouse_build", "pumphouse version.", registry=r)
        self.mapping_state = Gauge(
            "pumphouse_mapping_state",
            "1 for the mapping's current State (Creating, Enabling, Enabled, Disabling, Disabled).",
            [*_MAPPING, "state"],
            registry=r,
        )
        self.mapping_problem = Gauge(
            "pumphouse_mapping_problem",
            "1 while the mapping's LastProcessingResult is a PROBLEM, 0 otherwise.",
            list(_MAPPING),
            registry=r,
        )
        self.mapping_restarts = Counter(
            "pumphouse_mapping_restarts_total",
            "Times a mapping's poller was restarted after a failure.",
            list(_MAPPING),
            registry=r,
        )
        self.mapping_stalled = Gauge(
            "pumphouse_mapping_stalled",
            "1 while the mapping makes no progress although it should: its source has work "
            "and nothing finished for the stall threshold, it owns none of the shards it "
            "should, or its state store is unreachable (the reason is in /mappings).",
            list(_MAPPING),
            registry=r,
        )
        self.position_resets = Counter(
            "pumphouse_position_resets_total",
            "Stored positions that no longer existed in the source and were replaced, by "
            "reason (behind_log_start, ahead_of_log_end, shard_not_in_stream, "
            "sequence_rejected, earlier_stream).",
            [*_MAPPING, "reason"],
            registry=r,
        )
        self.position_reset_records = Counter(
            "pumphouse_position_reset_records_total",
            "Records the source removed before they were read, found on a position reset "
            "(Kafka retention: log start minus the committed offset), by reason.",
            [*_MAPPING, "reason"],
            registry=r,
        )
        self.state_store_errors = Counter(
            "pumphouse_state_store_errors_total",
            "Failed checkpoint-store or lease operations, by operation.",
            ["store", "operation"],
            registry=r,
        )
        self.state_store_up = Gauge(
            "pumphouse_state_store_up",
            "1 when the last state-store operation succeeded, 0 after a failure.",
            ["store"],
            registry=r,
        )

        self.api_requests = Counter(
            "pumphouse_api_requests_total",
            "Requests to the event-source-mapping API, by operation (CreateEventSourceMapping, "
            "..., Unknown) and code (OK, or the AWS error code answered, such as "
            "InvalidSignatureException).",
            ["operation", "code"],
            registry=r,
        )

        # --- runtime ---------------------------------------------------------------
        self.invocations = Counter(
            "pumphouse_invocations_total",
            "Function invocations by outcome (success, function_error, timeout, oom, crash, "
            "init_error, marshal_error, response_too_large, service_error).",
            ["function", "outcome"],
            registry=r,
        )
        self.invocation_duration = Histogram(
            "pumphouse_invocation_duration_seconds",
            "Time the handler ran, per invocation.",
            ["function"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.init_duration = Histogram(
            "pumphouse_init_duration_seconds",
            "Time a new worker took to import the handler (cold start init phase).",
            ["function"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.cold_starts = Counter(
            "pumphouse_cold_starts_total",
            "Invocations that started a new worker.",
            ["function"],
            registry=r,
        )
        self.concurrent_executions = Gauge(
            "pumphouse_concurrent_executions",
            "Invocations running now.",
            ["function"],
            registry=r,
        )
        self.workers = Gauge(
            "pumphouse_workers",
            "Worker processes alive (busy or warm).",
            ["function"],
            registry=r,
        )
        self.slots_in_use = Gauge(
            "pumphouse_slots_in_use",
            "Concurrency slots held, by scope (global, function, caller).",
            ["scope", "name"],
            registry=r,
        )
        self.slots_limit = Gauge(
            "pumphouse_slots_limit",
            "Concurrency slot limit, by scope (global, function, caller).",
            ["scope", "name"],
            registry=r,
        )
        self.throttles = Counter(
            "pumphouse_throttles_total",
            "Slot acquisitions that had to wait (back-pressure).",
            ["function", "caller"],
            registry=r,
        )
        self.throttled_seconds = Counter(
            "pumphouse_throttled_seconds_total",
            "Time spent waiting for a concurrency slot.",
            ["function", "caller"],
            registry=r,
        )

        # --- per-mapping event counts ----------------------------------------------
        def events(name: str, doc: str) -> Counter:
            return Counter(f"pumphouse_{name}_events_total", doc, list(_MAPPING), registry=r)

        # What each counts is AWS's definition (Lambda developer guide, "Event source
        # mapping metrics"); pumphouse.pollers.dispatch counts them for every source.
        self.polled_events = events(
            "polled",
            "PolledEventCount: records read successfully from the source (an empty poll "
            "adds nothing).",
        )
        self.filtered_out_events = events(
            "filtered_out",
            "FilteredOutEventCount: records that matched none of the mapping's FilterCriteria "
            "and were acknowledged without an invocation.",
        )
        self.invoked_events = events(
            "invoked",
            "InvokedEventCount: records of every invocation in which the function ran, "
            "retries included (a record retried twice counts three times).",
        )
        self.failed_invoke_events = events(
            "failed_invoke",
            "FailedInvokeEventCount: records of every invocation that failed (the function "
            "raised, timed out, crashed or could not run), plus the records a partial batch "
            "response reported as failed.",
        )
        self.dropped_events = events(
            "dropped",
            "DroppedEventCount: records given up on (MaximumRetryAttempts or "
            "MaximumRecordAgeInSeconds exceeded, or too large for one invocation) that were "
            "not delivered to an on-failure destination: none is configured, or a delivery "
            "attempt failed (pumphouse keeps retrying it).",
        )
        self.on_failure_delivered_events = events(
            "on_failure_delivered",
            "OnFailureDestinationDeliveredEventCount: records described by a failure record "
            "delivered to the on-failure destination.",
        )
        self.deleted_events = events(
            "deleted",
            "DeletedEventCount (SQS): messages deleted from the queue after processing or "
            "filtering.",
        )
        self.committed_events = events(
            "committed",
            "CommittedEventCount (Kafka): records whose offset was committed to the "
            "consumer group (the sum of each partition's committed-offset advance).",
        )
        self.invoke_errors = Counter(
            "pumphouse_invoke_errors_total",
            "InvokeErrorCount: invocations (batches, not records) that failed: the function "
            "raised, timed out, crashed or could not run.",
            list(_MAPPING),
            registry=r,
        )

        self.batch_size = Histogram(
            "pumphouse_batch_size_records",
            "Records per invoked batch.",
            list(_MAPPING),
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_bytes = Histogram(
            "pumphouse_batch_size_bytes",
            "Serialized event size per invoked batch.",
            list(_MAPPING),
            buckets=(1024, 16384, 65536, 262144, 1048576, 4194304, 6291456),
            registry=r,
        )
        self.record_age = Histogram(
            "pumphouse_record_age_seconds",
            "Age of the oldest record of a batch when it was invoked.",
            list(_MAPPING),
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.source_errors = Counter(
            "pumphouse_source_errors_total",
            "Failed calls to the source, by operation and kind (error, throttled). AWS's "
            "PollingErrorCount is operation receive / get_records / poll, CommitErrorCount "
            "is operation commit.",
            [*_MAPPING, "operation", "kind"],
            registry=r,
        )
        self.pollers_active = Gauge(
            "pumphouse_pollers_active",
            "Concurrent poll loops running for the mapping.",
            list(_MAPPING),
            registry=r,
        )
        self.destination_deliveries = Counter(
            "pumphouse_destination_deliveries_total",
            "On-failure records (messages, each describing one or more records) delivered, "
            "by destination type (sqs, sns, s3, kafka).",
            [*_MAPPING, "destination_type"],
            registry=r,
        )
        self.destination_delivery_failures = Counter(
            "pumphouse_destination_delivery_failures_total",
            "OnFailureDestinationDeliveryErrorCount: failed attempts to deliver an on-failure "
            "record, by destination type (each retry counts).",
            [*_MAPPING, "destination_type"],
            registry=r,
        )

        # --- SQS -------------------------------------------------------------------
        self.sqs_backlog = Gauge(
            "pumphouse_sqs_queue_messages",
            "Queue depth sampled from the queue attributes (visible, in_flight, delayed).",
            [*_MAPPING, "state"],
            registry=r,
        )
        self.sqs_visibility_extensions = Counter(
            "pumphouse_sqs_visibility_extensions_total",
            "Messages whose visibility timeout was extended while their batch ran.",
            list(_MAPPING),
            registry=r,
        )

        # --- streams (Kinesis, DynamoDB) ----------------------------------------------
        self.iterator_age = Gauge(
            "pumphouse_iterator_age_seconds",
            "Time between the stream receiving the last record of a batch and its invoke.",
            [*_MAPPING, "shard"],
            registry=r,
        )
        self.behind_latest = Gauge(
            "pumphouse_behind_latest_seconds",
            "MillisBehindLatest reported by the last GetRecords, in seconds.",
            [*_MAPPING, "shard"],
            registry=r,
        )
        self.shards_owned = Gauge(
            "pumphouse_shards_owned",
            "Shards this replica holds a lease on and processes.",
            list(_MAPPING),
            registry=r,
        )
        self.lease_events = Counter(
            "pumphouse_lease_events_total",
            "Lease transitions (acquired, renew_failed, lost, stolen, released).",
            [*_MAPPING, "event"],
            registry=r,
        )

        # --- Kafka -----------------------------------------------------------------
        self.kafka_offset_lag = Gauge(
            "pumphouse_kafka_offset_lag_records",
            "High watermark minus the next offset to process, per partition.",
            [*_MAPPING, "partition"],
            registry=r,
        )
        self.kafka_rebalances = Counter(
            "pumphouse_kafka_rebalances_total",
            "Partition assignments and revocations seen by the mapping's consumer.",
            [*_MAPPING, "kind"],
            registry=r,
        )


    def forget_mapping(self, mapping: str) -> None:
        """Remove every series of a deleted mapping (label ``mapping``), so that
        ``/metrics`` lists only the live set and labels stay bounded."""
        for collector in list(vars(self).values()):
            if not isinstance(collector, Counter | Gauge | Histogram):
                continue
            children: set[tuple[str, ...]] = set()
            for family in collector.collect():
                for sample in family.samples:
                    if sample.labels.get("mapping") == mapping:
                        children.add(
                            tuple(v for k, v in sample.labels.items() if k not in ("le",))
                        )
            for labels in children:
                with contextlib.suppress(KeyError, ValueError):
                    collector.remove(*labels)


_lock = threading.Lock()
_default: Metrics | None = None


def get_metrics() -> Metrics:
    """The process-wide :class:`Metrics`, created on first use."""
    global _default  # noqa: PLW0603 - one registry per process, created lazily
    with _lock:
        if _default is None:
            from pumphouse import __version__

            _default = Metrics()
            _default.build_info.info({"version": __version__})
        return _default


class MappingMetrics:
    """A mapping's metrics with its labels bound once (mapping, function, source)."""

    def __init__(self, metrics: Metrics, *, mapping: str, function: str, source: str) -> None:
        self.metrics = metrics
        self.labels = {"mapping": mapping, "function": function, "source": source}
        lv = (mapping, function, source)
        self.polled = metrics.polled_events.labels(*lv)
        self.filtered_out = metrics.filtered_out_events.labels(*lv)
        self.invoked = metrics.invoked_events.labels(*lv)
        self.failed_invoke = metrics.failed_invoke_events.labels(*lv)
        self.dropped = metrics.dropped_events.labels(*lv)
        self.on_failure_delivered = metrics.on_failure_delivered_events.labels(*lv)
        self.deleted = metrics.deleted_events.labels(*lv)
        self.committed = metrics.committed_events.labels(*lv)
        self.invoke_errors = metrics.invoke_errors.labels(*lv)
        self.batch_size = metrics.batch_size.labels(*lv)
        self.batch_bytes = metrics.batch_bytes.labels(*lv)
        self.record_age = metrics.record_age.labels(*lv)
        self.pollers_active = metrics.pollers_active.labels(*lv)
        self.shards_owned = metrics.shards_owned.labels(*lv)
        self.restarts = metrics.mapping_restarts.labels(*lv)
        self.visibility_extensions = metrics.sqs_visibility_extensions.labels(*lv)
        self.problem = metrics.mapping_problem.labels(*lv)
        self.stalled = metrics.mapping_stalled.labels(*lv)

    def source_error(self, operation: str, *, kind: str = "error") -> None:
        self.metrics.source_errors.labels(**self.labels, operation=operation, kind=kind).inc()

    def destination_delivered(self, destination_type: str) -> None:
        self.metrics.destination_deliveries.labels(
            **self.labels, destination_type=destination_type
        ).inc()

    def destination_failed(self, destination_type: str) -> None:
        self.metrics.destination_delivery_failures.labels(
            **self.labels, destination_type=destination_type
        ).inc()

    def declare_position_resets(self, reasons: tuple[str, ...]) -> None:
        """Export the position-reset counters at 0 for each reason from the start (a
        reset is rare: a series that appears only then cannot show an increase)."""
        for reason in reasons:
            self.metrics.position_resets.labels(**self.labels, reason=reason)
            self.metrics.position_reset_records.labels(**self.labels, reason=reason)

    def position_reset(self, reason: str, *, records_lost: int = 0) -> None:
        self.metrics.position_resets.labels(**self.labels, reason=reason).inc()
        if records_lost > 0:
            self.metrics.position_reset_records.labels(**self.labels, reason=reason).inc(
                records_lost
            )

    def lease_event(self, event: str) -> None:
        self.metrics.lease_events.labels(**self.labels, event=event).inc()

    def set_state(self, state: str, *, all_states: tuple[str, ...]) -> None:
        for candidate in all_states:
            self.metrics.mapping_state.labels(**self.labels, state=candidate).set(
                1 if candidate == state else 0
            )

    def iterator_age(self, shard: str) -> Gauge:
        return self.metrics.iterator_age.labels(**self.labels, shard=shard)

    def behind_latest(self, shard: str) -> Gauge:
        return self.metrics.behind_latest.labels(**self.labels, shard=shard)

    def forget_shard(self, shard: str) -> None:
        """Drop a shard's series once this replica no longer reads it (ended, lost,
        handed over), so that gauges never report a stale value and labels stay bounded
        across resharding."""
        for gauge in (self.metrics.iterator_age, self.metrics.behind_latest):
            with contextlib.suppress(KeyError):
                gauge.remove(*self.labels.values(), shard)

    def offset_lag(self, partition: str) -> Gauge:
        return self.metrics.kafka_offset_lag.labels(**self.labels, partition=partition)

    def sqs_backlog(self, state: str) -> Gauge:
        return self.metrics.sqs_backlog.labels(**self.labels, state=state)

    def rebalance(self, kind: str) -> None:
        self.metrics.kafka_rebalances.labels(**self.labels, kind=kind).inc()
