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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from pumphouse.config.runtimes import runtime_problems
from pumphouse.config.sources import DestinationType, SourceType
from pumphouse.pollers.filtering import FilterPatternError, SourceKind, compile_filter_criteria

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
    """Why ``pattern`` is not a valid filter pattern for ``source`` (the filtering
    module's own "Invalid filter pattern definition. ..." message), or None."""
    try:
        compile_filter_criteria([pattern], source=SourceKind(source.value), max_filters=1)
    except FilterPatternError as err:
        return str(err)
    return None


def mapping_problems(
    mapping: EventSourceMapping, *, settings: Settings, now: float
) -> list[Problem]:
    """Every cross-field problem of one mapping."""
    m = mapping
    problems: list[Problem] = []

    def problem(loc: str | Loc, message: str) -> None:
        problems.append(((loc,) if isinstance(loc, str) else loc, message))

    if m.EventSourceArn is not None and m.SelfManagedEventSource is not None:
        problem(
            "SelfManagedEventSource",
            "set either EventSourceArn or SelfManagedEventSource, not both",
        )
        return problems
    if m.EventSourceArn is None and m.SelfManagedEventSource is None:
        problem(
            (),
            "no event source: set EventSourceArn (SQS, Kinesis, DynamoDB Streams, Amazon "
            "MSK) or SelfManagedEventSource (Kafka)",
        )
        return problems

    source = m.source_type
    name = SOURCE_NAMES[source]
    sqs = source is SourceType.SQS
    kafka = source is SourceType.KAFKA
    stream = source in (SourceType.KINESIS, SourceType.DYNAMODB)

    # Batching
    window = m.MaximumBatchingWindowInSeconds
    if m.is_fifo:
        if m.BatchSize is not None and m.BatchSize > 10:
            problem("BatchSize", f"{m.BatchSize} is above the maximum 10 for an SQS FIFO queue")
        if window:
            problem("MaximumBatchingWindowInSeconds", "not supported for SQS FIFO queues")
    elif sqs and m.batch_size > 10 and (window is None or window < 1):
        message = SQS_BATCH_WINDOW_MESSAGE
        if window:
            message += " (pumphouse requires at least 1 second)"
        problem("MaximumBatchingWindowInSeconds", message)

    # Where to start
    position = m.StartingPosition
    timestamp = m.StartingPositionTimestamp
    if sqs:
        for field in ("StartingPosition", "StartingPositionTimestamp"):
            if getattr(m, field) is not None:
                problem(field, "not supported for SQS (a queue has no position to start from)")
    else:
        if position is None:
            choices = (
                "TRIM_HORIZON or LATEST"
                if source is SourceType.DYNAMODB
                else "TRIM_HORIZON, LATEST or AT_TIMESTAMP"
            )
            problem("StartingPosition", f"required for {name}: {choices}")
        elif position == "AT_TIMESTAMP":
            if source is SourceType.DYNAMODB:
                problem(
                    "StartingPosition",
                    "AT_TIMESTAMP is not supported for DynamoDB Streams (use TRIM_HORIZON or "
                    "LATEST)",
                )
            elif timestamp is None:
                problem(
                    "StartingPositionTimestamp", "required when StartingPosition is AT_TIMESTAMP"
                )
        if timestamp is not None:
            if position != "AT_TIMESTAMP":
                problem("StartingPositionTimestamp", "only used with StartingPosition AT_TIMESTAMP")
            elif timestamp > now:
                when = datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
                problem("StartingPositionTimestamp", f"{when} is in the future")

    # Error handling: streams and Kafka
    destination = m.on_failure
    if sqs:
        for field in (
            "BisectBatchOnFunctionError",
            "MaximumRetryAttempts",
            "MaximumRecordAgeInSeconds",
        ):
            if getattr(m, field) is not None:
                problem(
                    field,
                    "not supported for SQS: a failed message returns to the queue after its "
                    "visibility timeout (limit retries with the queue's RedrivePolicy)",
                )
        if destination is not None:
            problem(
                "DestinationConfig",
                "not supported for SQS: failed messages go to the queue's own dead-letter "
                "queue (RedrivePolicy)",
            )
    elif destination is not None:
        where: Loc = ("DestinationConfig", "OnFailure", "Destination")
        if destination.destination_type is DestinationType.KAFKA:
            if not kafka:
                problem(where, "kafka:// destinations are only supported for Kafka sources")
            elif destination.topic == m.topic:
                problem(
                    where,
                    f"must not be the source topic {m.topic!r} (failed records would be "
                    "read again)",
                )
        if source is SourceType.DYNAMODB and destination.is_fifo:
            problem(where, "FIFO destinations are not supported for DynamoDB Streams")
    if m.DestinationConfig is not None and m.DestinationConfig.OnSuccess is not None:
        problem(
            ("DestinationConfig", "OnSuccess"),
            "not supported: event source mappings have on-failure destinations only",
        )

    # Stream-only and SQS-only parameters
    if not stream:
        for field in ("ParallelizationFactor", "TumblingWindowInSeconds"):
            if getattr(m, field) is not None:
                problem(field, f"only supported for Kinesis and DynamoDB Streams, not {name}")
    if not sqs and m.ScalingConfig is not None:
        problem("ScalingConfig", f"only supported for SQS, not {name}")

    # Kafka
    if kafka:
        if m.Topics is None:
            problem("Topics", "required for Kafka: exactly one topic")
        elif len(m.Topics) != 1:
            problem("Topics", f"{len(m.Topics)} topics given; a Kafka mapping reads exactly one")
        if m.AmazonManagedKafkaEventSourceConfig is not None and not m.is_msk:
            problem(
                "AmazonManagedKafkaEventSourceConfig",
                "only for Amazon MSK sources; use SelfManagedKafkaEventSourceConfig",
            )
        if m.SelfManagedKafkaEventSourceConfig is not None and m.is_msk:
            problem(
                "SelfManagedKafkaEventSourceConfig",
                "only for SelfManagedEventSource; use AmazonManagedKafkaEventSourceConfig "
                "for Amazon MSK",
            )
        problems.extend(_access_problems(m))
        if m.Kafka is not None:
            touched = m.Kafka.model_dump(exclude_none=True).keys()
            merged = m.kafka_consumer_settings(settings)
            problems.extend(
                (("Kafka", *loc), msg) for loc, msg in _kafka_problems(merged, touched=touched)
            )
        problems.extend(_protocol_problems(m, settings))
    else:
        for field in (
            "Topics",
            "AmazonManagedKafkaEventSourceConfig",
            "SelfManagedKafkaEventSourceConfig",
            "SourceAccessConfigurations",
            "Kafka",
        ):
            if getattr(m, field) is not None:
                problem(field, f"only supported for Kafka sources, not {name}")

    # Filters
    patterns = m.filter_patterns
    most = settings.MaxFiltersPerMapping
    if len(patterns) > most:
        problem(
            ("FilterCriteria", "Filters"),
            f"{len(patterns)} filters is above the maximum {most} (Settings.MaxFiltersPerMapping)",
        )
    for index, pattern in enumerate(patterns):
        error = check_filter_pattern(pattern, source)
        if error is not None:
            problem(("FilterCriteria", "Filters", index, "Pattern"), error)
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
    sasl_protocol = name in ("SASL_PLAINTEXT", "SASL_SSL")
    tls_protocol = name in ("SSL", "SASL_SSL")
    entries = [(i, e.Type.value) for i, e in enumerate(mapping.SourceAccessConfigurations or ())]
    sasl = [(i, kind) for i, kind in entries if kind in _SASL_TYPES]
    tls = [(i, kind) for i, kind in entries if kind in _TLS_TYPES]
    problems: list[Problem] = []
    here: Loc = ("Kafka", "SecurityProtocol")
    inherited = f"Settings.Kafka.SecurityProtocol is {name}"

    if sasl_protocol and not sasl:
        wanted = f"a SASL entry in SourceAccessConfigurations ({', '.join(_SASL_TYPES)})"
        if own is not None:
            problems.append((here, f"{name} needs {wanted}"))
        else:
            problems.append(
                (
                    ("SourceAccessConfigurations",),
                    f"{inherited}, which needs {wanted}; or set this mapping's "
                    "Kafka.SecurityProtocol",
                )
            )
    if not sasl_protocol:
        for index, kind in sasl:
            if own is not None:
                problems.append(
                    (
                        here,
                        f"{name} sends no SASL credentials, but SourceAccessConfigurations"
                        f"[{index}] is {kind} (use SASL_SSL or SASL_PLAINTEXT)",
                    )
                )
            else:
                problems.append(
                    (
                        ("SourceAccessConfigurations", index, "Type"),
                        f"{kind} needs SecurityProtocol SASL_SSL or SASL_PLAINTEXT, but "
                        f"{inherited}",
                    )
                )
    if not tls_protocol:
        for index, kind in tls:
            if own is not None:
                problems.append(
                    (
                        here,
                        f"{name} does not use TLS, but SourceAccessConfigurations[{index}] is "
                        f"{kind} (use SSL or SASL_SSL)",
                    )
                )
            else:
                problems.append(
                    (
                        ("SourceAccessConfigurations", index, "Type"),
                        f"{kind} needs SecurityProtocol SSL or SASL_SSL, but {inherited}",
                    )
                )
    if name == "SASL_PLAINTEXT" and mapping.is_msk:
        message = "Amazon MSK offers SASL only over TLS (use SASL_SSL)"
        if own is not None:
            problems.append((here, message))
        else:
            problems.append((("EventSourceArn",), f"{message}, but {inherited}"))
    return problems


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
