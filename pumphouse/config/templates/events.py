"""A SAM function's ``Events`` of type ``SQS``, ``Kinesis``, ``DynamoDB``, ``MSK`` and
``SelfManagedKafka``, and ``AWS::Lambda::EventSourceMapping`` resources → pumphouse
``EventSourceMappings:`` entries.

Every property SAM and CloudFormation define for these is carried over under its
event-source-mapping name (``Queue``/``Stream`` → ``EventSourceArn``,
``KafkaBootstrapServers`` → ``SelfManagedEventSource``, ``ConsumerGroupId`` → the Kafka
source's config); pumphouse's own validation then says, at the template path, what a
source does not accept. Properties that only matter inside AWS (``KmsKeyArn``,
``SecretsManagerKmsKeyId``, ``ProvisionedPollerConfig``, VPC access entries) are listed as
not used; any other property is an error.

A self-managed Kafka source without ``StartingPosition`` reads from ``TRIM_HORIZON``:
Lambda accepts such a mapping (SAM passes none through, and CloudFormation deploys it)
and starts at the oldest record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from pumphouse.config.templates.intrinsics import Context, Loc, TemplateProblem

__all__ = [
    "MAPPING_EVENT_TYPES",
    "ConvertedMapping",
    "convert_event",
    "convert_event_source_mapping",
]

MAPPING_EVENT_TYPES: Final = frozenset({"SQS", "Kinesis", "DynamoDB", "MSK", "SelfManagedKafka"})
_UNSUPPORTED_MAPPING_EVENTS: Final = {
    "MQ": "Amazon MQ",
    "DocumentDB": "Amazon DocumentDB",
}

_PASSED: Final = frozenset(
    {
        "BatchSize",
        "Enabled",
        "MaximumBatchingWindowInSeconds",
        "ParallelizationFactor",
        "StartingPosition",
        "StartingPositionTimestamp",
        "BisectBatchOnFunctionError",
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "TumblingWindowInSeconds",
        "FunctionResponseTypes",
        "FilterCriteria",
        "DestinationConfig",
        "ScalingConfig",
        "Topics",
        "SourceAccessConfigurations",
        "MetricsConfig",
    }
)
_NOT_USED: Final = frozenset(
    {"KmsKeyArn", "SecretsManagerKmsKeyId", "ProvisionedPollerConfig", "Tags", "LoggingConfig"}
)
_VPC_ACCESS: Final = frozenset({"VPC_SUBNET", "VPC_SECURITY_GROUP"})
_SOURCE_KEY: Final = {
    "SQS": "Queue",
    "Kinesis": "Stream",
    "DynamoDB": "Stream",
    "MSK": "Stream",
    "SelfManagedKafka": "KafkaBootstrapServers",
}


@dataclass(kw_only=True)
class ConvertedMapping:
    data: dict[str, Any]
    loc: Loc
    """The template path of the properties the mapping came from."""
    keys: dict[str, Loc] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def convert_event(
    ctx: Context,
    *,
    function_name: str,
    logical_id: str,
    event_id: str,
    event: Any,
    loc: Loc,
    problems: list[TemplateProblem],
) -> ConvertedMapping | None:
    """One SAM event, or None (with a problem) when it cannot be converted."""
    if not isinstance(event, dict):
        problems.append(TemplateProblem(loc, "expected an event with Type and Properties"))
        return None
    kind = event.get("Type")
    if kind in _UNSUPPORTED_MAPPING_EVENTS:
        problems.append(
            TemplateProblem(
                (*loc, "Type"),
                f"{kind}: pumphouse has no {_UNSUPPORTED_MAPPING_EVENTS[kind]} event source",
            )
        )
        return None
    props_loc: Loc = (*loc, "Properties")
    raw = event.get("Properties")
    raw = raw if isinstance(raw, dict) else {}
    mapping = ConvertedMapping(data={"FunctionName": function_name}, loc=props_loc)
    source_key = _SOURCE_KEY[str(kind)]
    for key in raw:
        if key not in _PASSED | _NOT_USED | {source_key, "ConsumerGroupId"}:
            problems.append(
                TemplateProblem(
                    (*props_loc, key),
                    f"not a property of a SAM {kind} event that pumphouse can honour",
                )
            )
            continue
        try:
            value = ctx.resolve(raw[key], (*props_loc, key))
        except TemplateProblem as problem:
            problems.append(problem)
            continue
        _set(mapping, key, value, (*props_loc, key), kind=str(kind), source_key=source_key)
    if kind == "SelfManagedKafka":
        mapping.data.setdefault("StartingPosition", "TRIM_HORIZON")
    return mapping


def convert_event_source_mapping(
    ctx: Context,
    logical_id: str,
    *,
    function_names: dict[str, str],
    problems: list[TemplateProblem],
) -> ConvertedMapping | None:
    """One ``AWS::Lambda::EventSourceMapping``; ``function_names`` maps the ARNs and
    names the template's functions resolve to onto their pumphouse names."""
    loc: Loc = ("Resources", logical_id, "Properties")
    raw = ctx.resources[logical_id].get("Properties")
    raw = raw if isinstance(raw, dict) else {}
    mapping = ConvertedMapping(data={}, loc=loc)
    for key in raw:
        if key in ("Queues", "DocumentDBEventSourceConfig"):
            problems.append(
                TemplateProblem((*loc, key), "pumphouse has no Amazon MQ or DocumentDB source")
            )
            continue
        if key not in _PASSED | _NOT_USED | {
            "FunctionName",
            "EventSourceArn",
            "SelfManagedEventSource",
            "AmazonManagedKafkaEventSourceConfig",
            "SelfManagedKafkaEventSourceConfig",
        }:
            problems.append(
                TemplateProblem(
                    (*loc, key),
                    "not a property of an AWS::Lambda::EventSourceMapping that pumphouse can "
                    "honour",
                )
            )
            continue
        try:
            value = ctx.resolve(raw[key], (*loc, key))
        except TemplateProblem as problem:
            problems.append(problem)
            continue
        if key == "FunctionName":
            mapping.data["FunctionName"] = function_names.get(str(value), value)
            mapping.keys["FunctionName"] = (*loc, key)
        elif key == "SelfManagedEventSource":
            endpoints = value.get("Endpoints") if isinstance(value, dict) else None
            servers = None
            if isinstance(endpoints, dict):
                servers = endpoints.get("KafkaBootstrapServers")
            if servers is None:
                problems.append(
                    TemplateProblem((*loc, key), "expected {Endpoints: {KafkaBootstrapServers}}")
                )
                continue
            _set(mapping, "KafkaBootstrapServers", servers, (*loc, key), kind="", source_key="")
        elif key.endswith("KafkaEventSourceConfig"):
            if isinstance(value, dict) and set(value) - {"ConsumerGroupId"}:
                extra = sorted(set(value) - {"ConsumerGroupId"})[0]
                problems.append(TemplateProblem((*loc, key, extra), "not supported by pumphouse"))
                continue
            mapping.data[key] = value
            mapping.keys[key] = (*loc, key)
        else:
            _set(mapping, key, value, (*loc, key), kind="", source_key="EventSourceArn")
    if "SelfManagedEventSource" in mapping.data:
        mapping.data.setdefault("StartingPosition", "TRIM_HORIZON")
    return mapping


def _set(
    mapping: ConvertedMapping, key: str, value: Any, loc: Loc, *, kind: str, source_key: str
) -> None:
    data = mapping.data
    if key in _NOT_USED:
        mapping.ignored.append(key)
        return
    if key == source_key and key != "KafkaBootstrapServers":
        data["EventSourceArn"] = value
        mapping.keys["EventSourceArn"] = loc
    elif key == "KafkaBootstrapServers":
        servers = value if isinstance(value, list) else [value]
        data["SelfManagedEventSource"] = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": servers}}
        mapping.keys["SelfManagedEventSource"] = loc
    elif key == "ConsumerGroupId":
        config = "AmazonManagedKafkaEventSourceConfig"
        if kind == "SelfManagedKafka":
            config = "SelfManagedKafkaEventSourceConfig"
        data[config] = {"ConsumerGroupId": value}
        mapping.keys[config] = loc
    elif key == "DestinationConfig" and isinstance(value, dict):
        on_failure = value.get("OnFailure")
        if isinstance(on_failure, dict):
            # SAM's Type (SQS or SNS) only chooses the IAM policy SAM writes.
            value = {**value, "OnFailure": {k: v for k, v in on_failure.items() if k != "Type"}}
        data[key] = value
        mapping.keys[key] = loc
    elif key == "SourceAccessConfigurations" and isinstance(value, list):
        kept = [
            entry
            for entry in value
            if not (isinstance(entry, dict) and entry.get("Type") in _VPC_ACCESS)
        ]
        if len(kept) != len(value):
            mapping.ignored.append("SourceAccessConfigurations (VPC entries)")
        if kept:
            data[key] = kept
            mapping.keys[key] = loc
    else:
        data[key] = value
        mapping.keys[key] = loc
