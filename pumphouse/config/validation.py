"""The rules that involve more than one field: which parameters each source accepts,
per-source ranges, and references across the file (function names, duplicate UUIDs).

Every rule returns problems as ``(loc, message)``: ``loc`` is the path inside the part
being checked (``("BatchSize",)``, ``("FilterCriteria", "Filters", 1, "Pattern")``), so
that the caller can prefix it (``EventSourceMappings[2].``) and render it with
:func:`format_path`. Rules never stop at the first problem: a file with five mistakes
gets five lines. The functions are pure; the clock is passed in as ``now``.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from pumphouse.config.runtimes import runtime_problems
from pumphouse.config.sources import Destination, DestinationType, SourceType
from pumphouse.patterns import FilterPatternError, SourceKind, compile_filter_criteria

if TYPE_CHECKING:
    from pumphouse.config.model import (
        Config,
        EventSourceMapping,
        Function,
        KafkaConsumerSettings,
        Settings,
    )

__all__ = [
    "Loc",
    "Problem",
    "check_filter_pattern",
    "config_problems",
    "cross_problems",
    "format_path",
    "function_problems",
    "mapping_problems",
    "render",
    "settings_problems",
]

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

SOURCE_NAMES: Final = {
    SourceType.SQS: "SQS",
    SourceType.KINESIS: "Kinesis",
    SourceType.DYNAMODB: "DynamoDB Streams",
    SourceType.KAFKA: "Kafka",
}

SQS_BATCH_WINDOW_MESSAGE: Final = (
    "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
    "greater than 10"
)

_AUTH_TYPES: Final = (
    "BASIC_AUTH",
    "SASL_SCRAM_256_AUTH",
    "SASL_SCRAM_512_AUTH",
    "CLIENT_CERTIFICATE_TLS_AUTH",
)


def format_path(loc: Loc) -> str:
    """``("EventSourceMappings", 1, "BatchSize")`` → ``EventSourceMappings[1].BatchSize``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def render(problems: Iterable[Problem], prefix: Loc = ()) -> list[str]:
    """``path: message`` lines (just the message for a problem of the whole file)."""
    lines = []
    for loc, message in problems:
        path = format_path(prefix + loc)
        lines.append(f"{path}: {message}" if path else message)
    return lines


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (ignoring case and ``_``), if any is close."""
    by_key: dict[str, str] = {}
    for choice in choices:
        by_key.setdefault(choice.lower().replace("_", ""), choice)
    key = word.lower().replace("_", "")
    if key in by_key:
        return by_key[key]
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)
    return by_key[close[0]] if close else None


# ---------------------------------------------------------------------------------------
# Settings and functions


def _kafka_problems(
    kafka: KafkaConsumerSettings, *, touched: Collection[str] | None = None
) -> list[Problem]:
    """Rules between consumer settings. With ``touched`` (a mapping's overridden fields),
    only the rules involving one of them (the others are reported for ``Settings``)."""
    problems: list[Problem] = []

    def involves(*fields: str) -> bool:
        return touched is None or any(f in touched for f in fields)

    if (
        involves("HeartbeatIntervalMs", "SessionTimeoutMs")
        and kafka.HeartbeatIntervalMs >= kafka.SessionTimeoutMs
    ):
        problems.append(
            (
                ("HeartbeatIntervalMs",),
                f"{kafka.HeartbeatIntervalMs} must be lower than SessionTimeoutMs "
                f"({kafka.SessionTimeoutMs}); Kafka advises at most a third of it",
            )
        )
    if (
        involves("FetchMaxWaitMs", "RequestTimeoutMs")
        and kafka.FetchMaxWaitMs >= kafka.RequestTimeoutMs
    ):
        problems.append(
            (
                ("FetchMaxWaitMs",),
                f"{kafka.FetchMaxWaitMs} must be lower than RequestTimeoutMs "
                f"({kafka.RequestTimeoutMs}): a fetch waiting that long would time out",
            )
        )
    return problems


def settings_problems(settings: Settings) -> list[Problem]:
    return [(("Kafka", *loc), message) for loc, message in _kafka_problems(settings.Kafka)]


def function_problems(function: Function) -> list[Problem]:
    reserved = function.ReservedConcurrentExecutions
    if reserved is not None and function.ProvisionedConcurrency > reserved:
        return [
            (
                ("ProvisionedConcurrency",),
                f"{function.ProvisionedConcurrency} is above ReservedConcurrentExecutions "
                f"({reserved})",
            ),
            *runtime_problems(function),
        ]
    return runtime_problems(function)


# ---------------------------------------------------------------------------------------
# One mapping


def check_filter_pattern(pattern: str, source: SourceType) -> str | None:
    """Why ``pattern`` is not a valid filter pattern for ``source`` (the pattern
    language's own "Invalid filter pattern definition. ..." message), or None."""
    try:
        compile_filter_criteria([pattern], source=SourceKind(source.value), max_filters=1)
    except FilterPatternError as err:
        return str(err)
    return None


def mapping_problems(
    mapping: EventSourceMapping, *, settings: Settings, now: float
) -> list[Problem]:
    """Every cross-field problem of one mapping: its source first (without one, nothing
    else can be checked), then each family of rules in the order of the AWS API."""
    source_problem = _event_source_problem(mapping)
    if source_problem is not None:
        return [source_problem]
    return [
        *_batching_problems(mapping),
        *_starting_position_problems(mapping, now=now),
        *_retry_problems(mapping),
        *_destination_problems(mapping),
        *_source_only_problems(mapping),
        *_kafka_mapping_problems(mapping, settings=settings),
        *_filter_problems(mapping, settings=settings),
    ]


def _unsupported(mapping: EventSourceMapping, fields: Iterable[str], message: str) -> list[Problem]:
    """``message`` for each of ``fields`` the mapping sets."""
    return [((field,), message) for field in fields if getattr(mapping, field) is not None]


def _event_source_problem(m: EventSourceMapping) -> Problem | None:
    """Exactly one of EventSourceArn and SelfManagedEventSource."""
    if m.EventSourceArn is not None and m.SelfManagedEventSource is not None:
        return (
            ("SelfManagedEventSource",),
            "set either EventSourceArn or SelfManagedEventSource, not both",
        )
    if m.EventSourceArn is None and m.SelfManagedEventSource is None:
        return (
            (),
            "no event source: set EventSourceArn (SQS, Kinesis, DynamoDB Streams, Amazon "
            "MSK) or SelfManagedEventSource (Kafka)",
        )
    return None


def _batching_problems(m: EventSourceMapping) -> list[Problem]:
    """SQS: FIFO queues take at most 10 messages and no window; a standard queue needs a
    window of at least 1 second above 10 messages."""
    window = m.MaximumBatchingWindowInSeconds
    problems: list[Problem] = []
    if m.is_fifo:
        if m.BatchSize is not None and m.BatchSize > 10:
            problems.append(
                (("BatchSize",), f"{m.BatchSize} is above the maximum 10 for an SQS FIFO queue")
            )
        if window:
            problems.append(
                (("MaximumBatchingWindowInSeconds",), "not supported for SQS FIFO queues")
            )
    elif m.source_type is SourceType.SQS and m.batch_size > 10 and (window is None or window < 1):
        message = SQS_BATCH_WINDOW_MESSAGE
        if window:
            message += " (pumphouse requires at least 1 second)"
        problems.append((("MaximumBatchingWindowInSeconds",), message))
    return problems


def _starting_position_problems(m: EventSourceMapping, *, now: float) -> list[Problem]:
    """Streams and Kafka need a StartingPosition; SQS has none."""
    source = m.source_type
    if source is SourceType.SQS:
        return _unsupported(
            m,
            ("StartingPosition", "StartingPositionTimestamp"),
            "not supported for SQS (a queue has no position to start from)",
        )
    problems: list[Problem] = []
    position = m.StartingPosition
    timestamp = m.StartingPositionTimestamp
    if position is None:
        choices = (
            "TRIM_HORIZON or LATEST"
            if source is SourceType.DYNAMODB
            else "TRIM_HORIZON, LATEST or AT_TIMESTAMP"
        )
        problems.append((("StartingPosition",), f"required for {SOURCE_NAMES[source]}: {choices}"))
    elif position == "AT_TIMESTAMP":
        if source is SourceType.DYNAMODB:
            problems.append(
                (
                    ("StartingPosition",),
                    "AT_TIMESTAMP is not supported for DynamoDB Streams (use TRIM_HORIZON or "
                    "LATEST)",
                )
            )
        elif timestamp is None:
            problems.append(
                (
                    ("StartingPositionTimestamp",),
                    "required when StartingPosition is AT_TIMESTAMP",
                )
            )
    if timestamp is not None:
        if position != "AT_TIMESTAMP":
            problems.append(
                (("StartingPositionTimestamp",), "only used with StartingPosition AT_TIMESTAMP")
            )
        elif timestamp > now:
            when = datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
            problems.append((("StartingPositionTimestamp",), f"{when} is in the future"))
    return problems


def _retry_problems(m: EventSourceMapping) -> list[Problem]:
    """Retries, bisection and record age are stream and Kafka settings; an SQS message
    is retried by its queue."""
    if m.source_type is not SourceType.SQS:
        return []
    return _unsupported(
        m,
        ("BisectBatchOnFunctionError", "MaximumRetryAttempts", "MaximumRecordAgeInSeconds"),
        "not supported for SQS: a failed message returns to the queue after its "
        "visibility timeout (limit retries with the queue's RedrivePolicy)",
    )


def _destination_problems(m: EventSourceMapping) -> list[Problem]:
    """On-failure destinations (where the source has them); no on-success destination."""
    problems: list[Problem] = []
    destination = m.on_failure
    if destination is not None:
        problems += _on_failure_problems(m, destination)
    if m.DestinationConfig is not None and m.DestinationConfig.OnSuccess is not None:
        problems.append(
            (
                ("DestinationConfig", "OnSuccess"),
                "not supported: event source mappings have on-failure destinations only",
            )
        )
    return problems


def _on_failure_problems(m: EventSourceMapping, destination: Destination) -> list[Problem]:
    """None for SQS (its queue's own DLQ), ``kafka://`` for Kafka only and never the
    source topic, no FIFO queue for DynamoDB Streams."""
    source = m.source_type
    if source is SourceType.SQS:
        return [
            (
                ("DestinationConfig",),
                "not supported for SQS: failed messages go to the queue's own dead-letter "
                "queue (RedrivePolicy)",
            )
        ]
    problems: list[Problem] = []
    where: Loc = ("DestinationConfig", "OnFailure", "Destination")
    if destination.destination_type is DestinationType.KAFKA:
        if source is not SourceType.KAFKA:
            problems.append((where, "kafka:// destinations are only supported for Kafka sources"))
        elif destination.topic == m.topic:
            problems.append(
                (
                    where,
                    f"must not be the source topic {m.topic!r} (failed records would be "
                    "read again)",
                )
            )
    if source is SourceType.DYNAMODB and destination.is_fifo:
        problems.append((where, "FIFO destinations are not supported for DynamoDB Streams"))
    return problems


def _source_only_problems(m: EventSourceMapping) -> list[Problem]:
    """Parameters of one kind of source set on another."""
    source = m.source_type
    name = SOURCE_NAMES[source]
    problems: list[Problem] = []
    if source not in (SourceType.KINESIS, SourceType.DYNAMODB):
        problems += _unsupported(
            m,
            ("ParallelizationFactor", "TumblingWindowInSeconds"),
            f"only supported for Kinesis and DynamoDB Streams, not {name}",
        )
    if source is not SourceType.SQS and m.ScalingConfig is not None:
        problems.append((("ScalingConfig",), f"only supported for SQS, not {name}"))
    return problems


def _kafka_mapping_problems(m: EventSourceMapping, *, settings: Settings) -> list[Problem]:
    """Kafka: one topic, the event source config that fits the cluster, authentication,
    the consumer settings and the security protocol. Other sources: no Kafka fields."""
    if m.source_type is not SourceType.KAFKA:
        return _unsupported(
            m,
            (
                "Topics",
                "AmazonManagedKafkaEventSourceConfig",
                "SelfManagedKafkaEventSourceConfig",
                "SourceAccessConfigurations",
                "Kafka",
            ),
            f"only supported for Kafka sources, not {SOURCE_NAMES[m.source_type]}",
        )
    problems: list[Problem] = []
    if m.Topics is None:
        problems.append((("Topics",), "required for Kafka: exactly one topic"))
    elif len(m.Topics) != 1:
        problems.append(
            (("Topics",), f"{len(m.Topics)} topics given; a Kafka mapping reads exactly one")
        )
    if m.AmazonManagedKafkaEventSourceConfig is not None and not m.is_msk:
        problems.append(
            (
                ("AmazonManagedKafkaEventSourceConfig",),
                "only for Amazon MSK sources; use SelfManagedKafkaEventSourceConfig",
            )
        )
    if m.SelfManagedKafkaEventSourceConfig is not None and m.is_msk:
        problems.append(
            (
                ("SelfManagedKafkaEventSourceConfig",),
                "only for SelfManagedEventSource; use AmazonManagedKafkaEventSourceConfig "
                "for Amazon MSK",
            )
        )
    problems += _access_problems(m)
    if m.Kafka is not None:
        touched = m.Kafka.model_dump(exclude_none=True).keys()
        merged = m.kafka_consumer_settings(settings)
        problems += [
            (("Kafka", *loc), msg) for loc, msg in _kafka_problems(merged, touched=touched)
        ]
    problems += _protocol_problems(m, settings)
    return problems


def _filter_problems(m: EventSourceMapping, *, settings: Settings) -> list[Problem]:
    """At most ``Settings.MaxFiltersPerMapping`` filters, each a valid pattern."""
    patterns = m.filter_patterns
    most = settings.MaxFiltersPerMapping
    problems: list[Problem] = []
    if len(patterns) > most:
        problems.append(
            (
                ("FilterCriteria", "Filters"),
                f"{len(patterns)} filters is above the maximum {most} "
                "(Settings.MaxFiltersPerMapping)",
            )
        )
    for index, pattern in enumerate(patterns):
        error = check_filter_pattern(pattern, m.source_type)
        if error is not None:
            problems.append((("FilterCriteria", "Filters", index, "Pattern"), error))
    return problems


def _access_problems(mapping: EventSourceMapping) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    auth: list[str] = []
    for index, entry in enumerate(mapping.SourceAccessConfigurations or ()):
        kind = entry.Type.value
        if kind in seen:
            problems.append((("SourceAccessConfigurations", index, "Type"), f"{kind} given twice"))
            continue
        seen.add(kind)
        if kind in _AUTH_TYPES:
            auth.append(kind)
            if len(auth) == 2:
                problems.append(
                    (
                        ("SourceAccessConfigurations", index, "Type"),
                        f"{kind} and {auth[0]} both given: use one authentication method",
                    )
                )
    return problems


_SASL_TYPES: Final = ("BASIC_AUTH", "SASL_SCRAM_256_AUTH", "SASL_SCRAM_512_AUTH")
_TLS_TYPES: Final = ("CLIENT_CERTIFICATE_TLS_AUTH", "SERVER_ROOT_CA_CERTIFICATE")


def _protocol_problems(mapping: EventSourceMapping, settings: Settings) -> list[Problem]:
    """A configured ``SecurityProtocol`` must fit the mapping's
    ``SourceAccessConfigurations``. The mapping's own ``Kafka.SecurityProtocol`` is
    blamed when it set one; an inherited ``Settings.Kafka.SecurityProtocol`` is reported
    at the mapping's entries (or at ``SourceAccessConfigurations`` when one is missing)."""
    own = mapping.Kafka.SecurityProtocol if mapping.Kafka is not None else None
    protocol = own if own is not None else settings.Kafka.SecurityProtocol
    if protocol is None:
        return []
    name = protocol.value
    blame = _ProtocolBlame(protocol=name, own=own is not None)
    entries = [(i, e.Type.value) for i, e in enumerate(mapping.SourceAccessConfigurations or ())]
    problems: list[Problem] = []
    if name in ("SASL_PLAINTEXT", "SASL_SSL"):
        if not any(kind in _SASL_TYPES for _, kind in entries):
            problems.append(blame.missing_sasl())
    else:
        problems += [blame.unused_sasl(i, kind) for i, kind in entries if kind in _SASL_TYPES]
    if name not in ("SSL", "SASL_SSL"):
        problems += [blame.unused_tls(i, kind) for i, kind in entries if kind in _TLS_TYPES]
    if name == "SASL_PLAINTEXT" and mapping.is_msk:
        problems.append(blame.msk_without_tls())
    return problems


@dataclass(frozen=True, kw_only=True)
class _ProtocolBlame:
    """Where a SecurityProtocol mismatch is reported: at the mapping's own
    ``Kafka.SecurityProtocol`` (``own``), or, when it inherits
    ``Settings.Kafka.SecurityProtocol``, at the mapping's part that does not fit it."""

    protocol: str
    own: bool

    @property
    def inherited(self) -> str:
        return f"Settings.Kafka.SecurityProtocol is {self.protocol}"

    def missing_sasl(self) -> Problem:
        wanted = f"a SASL entry in SourceAccessConfigurations ({', '.join(_SASL_TYPES)})"
        if self.own:
            return (_OWN_PROTOCOL, f"{self.protocol} needs {wanted}")
        return (
            ("SourceAccessConfigurations",),
            f"{self.inherited}, which needs {wanted}; or set this mapping's Kafka.SecurityProtocol",
        )

    def unused_sasl(self, index: int, kind: str) -> Problem:
        if self.own:
            return (
                _OWN_PROTOCOL,
                f"{self.protocol} sends no SASL credentials, but SourceAccessConfigurations"
                f"[{index}] is {kind} (use SASL_SSL or SASL_PLAINTEXT)",
            )
        return (
            ("SourceAccessConfigurations", index, "Type"),
            f"{kind} needs SecurityProtocol SASL_SSL or SASL_PLAINTEXT, but {self.inherited}",
        )

    def unused_tls(self, index: int, kind: str) -> Problem:
        if self.own:
            return (
                _OWN_PROTOCOL,
                f"{self.protocol} does not use TLS, but SourceAccessConfigurations[{index}] is "
                f"{kind} (use SSL or SASL_SSL)",
            )
        return (
            ("SourceAccessConfigurations", index, "Type"),
            f"{kind} needs SecurityProtocol SSL or SASL_SSL, but {self.inherited}",
        )

    def msk_without_tls(self) -> Problem:
        message = "Amazon MSK offers SASL only over TLS (use SASL_SSL)"
        if self.own:
            return (_OWN_PROTOCOL, message)
        return (("EventSourceArn",), f"{message}, but {self.inherited}")


_OWN_PROTOCOL: Final[Loc] = ("Kafka", "SecurityProtocol")


# ---------------------------------------------------------------------------------------
# Across the file


def cross_problems(
    *, function_names: Collection[str], mappings: Sequence[tuple[int, EventSourceMapping]]
) -> list[Problem]:
    """Function references and duplicate UUIDs. ``mappings`` are ``(index, mapping)``;
    locs are absolute (``EventSourceMappings[i]...``)."""
    problems: list[Problem] = []
    first_with_uuid: dict[str, int] = {}
    for index, mapping in mappings:
        here: Loc = ("EventSourceMappings", index)
        if mapping.function_name not in function_names:
            message = f"no function {mapping.function_name!r} in Functions"
            hint = did_you_mean(mapping.function_name, function_names)
            if hint is not None:
                message += f" (did you mean {hint!r}?)"
            elif function_names:
                message += f" (configured: {', '.join(sorted(function_names))})"
            problems.append(((*here, "FunctionName"), message))
        if mapping.EventSourceArn is None and mapping.SelfManagedEventSource is None:
            continue  # reported by mapping_problems; its UUID means nothing yet
        uuid = mapping.uuid
        if uuid in first_with_uuid:
            other = format_path(("EventSourceMappings", first_with_uuid[uuid]))
            if mapping.UUID is None:
                message = (
                    f"maps the same source to the same function as {other} (derived UUID "
                    f"{uuid}); remove one, or give each its own UUID"
                )
            else:
                message = f"duplicate UUID {uuid}: {other} has it too"
            problems.append(((*here, "UUID"), message))
        else:
            first_with_uuid[uuid] = index
    return problems


def config_problems(config: Config, *, now: float) -> list[str]:
    """Every cross-field problem of a whole configuration, as ``path: message`` lines."""
    lines = render(settings_problems(config.Settings), ("Settings",))
    for name, function in config.Functions.items():
        lines += render(function_problems(function), ("Functions", name))
    for index, mapping in enumerate(config.EventSourceMappings):
        lines += render(
            mapping_problems(mapping, settings=config.Settings, now=now),
            ("EventSourceMappings", index),
        )
    lines += render(
        cross_problems(
            function_names=list(config.Functions),
            mappings=list(enumerate(config.EventSourceMappings)),
        )
    )
    return lines
