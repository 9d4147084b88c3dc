"""The resources of a template that pumphouse reads or creates: their physical names,
what ``!Ref`` and ``!GetAtt`` return for them, and what ``pumphouse dev`` creates.

Physical names: a resource with an explicit name property (``QueueName``, ``Name`` of a
Kinesis stream, ``TableName``, ``TopicName``, ``BucketName``, ``FunctionName``, the
``Name`` of a secret, ``LayerName``, ``RoleName``) keeps it; otherwise its name is
``<StackName>-<LogicalId>`` (CloudFormation adds a random suffix; a stable name is more
useful locally), ``.fifo`` added for a FIFO queue or topic, lower case for a bucket.

ARNs and URLs are built in the configured account and region. A DynamoDB table's
``StreamArn`` carries the fixed label ``1970-01-01T00:00:00.000``: the real label is known
only once the table exists (``pumphouse dev`` reads it back from the table it creates).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any, Final

from pumphouse.config.templates.intrinsics import Context, Loc, TemplateProblem

__all__ = [
    "FUNCTION_TYPES",
    "LAYER_TYPES",
    "STREAM_LABEL",
    "USED_TYPES",
    "attribute_value",
    "dev_resources",
    "physical_name",
    "ref_value",
]

STREAM_LABEL: Final = "1970-01-01T00:00:00.000"

FUNCTION_TYPES: Final = frozenset({"AWS::Serverless::Function", "AWS::Lambda::Function"})
LAYER_TYPES: Final = frozenset({"AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"})

# type -> (name property, longest name)
_NAMED: Final[dict[str, tuple[str, int]]] = {
    "AWS::SQS::Queue": ("QueueName", 80),
    "AWS::Kinesis::Stream": ("Name", 128),
    "AWS::DynamoDB::Table": ("TableName", 255),
    "AWS::SNS::Topic": ("TopicName", 256),
    "AWS::S3::Bucket": ("BucketName", 63),
    "AWS::Serverless::Function": ("FunctionName", 64),
    "AWS::Lambda::Function": ("FunctionName", 64),
    "AWS::Serverless::LayerVersion": ("LayerName", 140),
    "AWS::Lambda::LayerVersion": ("LayerName", 140),
    "AWS::SecretsManager::Secret": ("Name", 512),
    "AWS::IAM::Role": ("RoleName", 64),
}

USED_TYPES: Final = frozenset(_NAMED) | {"AWS::Lambda::EventSourceMapping"}
"""Resource types pumphouse reads; every other type is listed as not used."""


def _resource(ctx: Context, logical_id: str) -> dict[str, Any]:
    resource = ctx.resources.get(logical_id)
    return resource if isinstance(resource, dict) else {}


def _properties(ctx: Context, logical_id: str) -> dict[str, Any]:
    properties = _resource(ctx, logical_id).get("Properties")
    return properties if isinstance(properties, dict) else {}


def resource_type(ctx: Context, logical_id: str) -> str:
    return str(_resource(ctx, logical_id).get("Type", ""))


def physical_name(ctx: Context, logical_id: str) -> str:
    """The resource's name: its name property, else ``<StackName>-<LogicalId>``."""
    kind = resource_type(ctx, logical_id)
    prop, longest = _NAMED.get(kind, ("", 255))
    loc: Loc = ("Resources", logical_id, "Properties", prop)
    given = _properties(ctx, logical_id).get(prop) if prop else None
    if given is not None:
        name = ctx.resolve(given, loc)
        if not isinstance(name, str | int) or isinstance(name, bool) or str(name) == "":
            raise TemplateProblem(loc, f"expected a name, got {name!r}")
        return str(name)
    fifo = kind in ("AWS::SQS::Queue", "AWS::SNS::Topic") and _is_true(
        ctx.resolve(
            _properties(ctx, logical_id).get("FifoQueue" if "SQS" in kind else "FifoTopic"),
            ("Resources", logical_id, "Properties"),
        )
    )
    suffix = ".fifo" if fifo else ""
    name = f"{ctx.stack_name}-{logical_id}"[: longest - len(suffix)] + suffix
    return name.lower() if kind == "AWS::S3::Bucket" else name


def _is_true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _arn(ctx: Context, service: str, resource: str, *, regional: bool = True) -> str:
    region = ctx.region if regional else ""
    account = ctx.account_id if regional else ""
    return f"arn:{ctx.partition}:{service}:{region}:{account}:{resource}"


def ref_value(ctx: Context, logical_id: str, loc: Loc) -> Any:
    """What ``!Ref`` of a resource returns."""
    kind = resource_type(ctx, logical_id)
    if kind == "AWS::SQS::Queue":
        return _queue_url(ctx, physical_name(ctx, logical_id))
    if kind in ("AWS::SNS::Topic", "AWS::SecretsManager::Secret") or kind in LAYER_TYPES:
        return attribute_value(ctx, logical_id, "Arn", loc)
    if kind in _NAMED:
        return physical_name(ctx, logical_id)
    raise TemplateProblem(
        loc,
        f"!Ref {logical_id!r}: {kind or 'a resource without a Type'} is not used by "
        "pumphouse and has no local value",
    )


def _queue_url(ctx: Context, name: str) -> str:
    return f"https://sqs.{ctx.region}.{ctx.url_suffix}/{ctx.account_id}/{name}"


def attribute_value(ctx: Context, logical_id: str, attribute: str, loc: Loc) -> Any:
    """What ``!GetAtt <logical_id>.<attribute>`` returns."""
    kind = resource_type(ctx, logical_id)
    values: dict[str, Any] = {}
    if kind in _NAMED:
        name = physical_name(ctx, logical_id)
        if kind == "AWS::SQS::Queue":
            values = {
                "Arn": _arn(ctx, "sqs", name),
                "QueueName": name,
                "QueueUrl": _queue_url(ctx, name),
            }
        elif kind == "AWS::Kinesis::Stream":
            values = {"Arn": _arn(ctx, "kinesis", f"stream/{name}")}
        elif kind == "AWS::DynamoDB::Table":
            values = {"Arn": _arn(ctx, "dynamodb", f"table/{name}")}
            if "StreamSpecification" in _properties(ctx, logical_id):
                values["StreamArn"] = _arn(ctx, "dynamodb", f"table/{name}/stream/{STREAM_LABEL}")
            elif attribute == "StreamArn":
                raise TemplateProblem(
                    loc, f"!GetAtt {logical_id}.StreamArn: the table has no StreamSpecification"
                )
        elif kind == "AWS::SNS::Topic":
            values = {"TopicArn": _arn(ctx, "sns", name), "TopicName": name}
            values["Arn"] = values["TopicArn"]
        elif kind == "AWS::S3::Bucket":
            values = {
                "Arn": _arn(ctx, "s3", name, regional=False),
                "DomainName": f"{name}.s3.{ctx.url_suffix}",
                "RegionalDomainName": f"{name}.s3.{ctx.region}.{ctx.url_suffix}",
            }
        elif kind in FUNCTION_TYPES:
            values = {"Arn": _arn(ctx, "lambda", f"function:{name}")}
        elif kind in LAYER_TYPES:
            values = {"Arn": _arn(ctx, "lambda", f"layer:{name}:1")}
        elif kind == "AWS::SecretsManager::Secret":
            values = {"Arn": _arn(ctx, "secretsmanager", f"secret:{name}")}
            values["Id"] = values["Arn"]
        elif kind == "AWS::IAM::Role":
            values = {"Arn": f"arn:{ctx.partition}:iam::{ctx.account_id}:role/{name}"}
    if attribute in values:
        return values[attribute]
    if values:
        known = ", ".join(sorted(values))
        raise TemplateProblem(
            loc,
            f"!GetAtt {logical_id}.{attribute}: {kind} has no attribute {attribute} "
            f"pumphouse can give (it gives {known})",
        )
    raise TemplateProblem(
        loc,
        f"!GetAtt {logical_id}.{attribute}: {kind or 'a resource without a Type'} is not used by "
        "pumphouse and has no local value",
    )


# ---------------------------------------------------------------------------------------
# What ``pumphouse dev`` creates

_QUEUE_ATTRIBUTES: Final = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "VisibilityTimeout",
)


def dev_resources(ctx: Context, problems: list[TemplateProblem]) -> dict[str, Any]:
    """The ``Dev:`` section creating the template's queues, streams, tables, topics,
    buckets and secrets as declared."""
    queues: dict[str, dict[str, Any]] = {}
    streams: dict[str, int] = {}
    tables: dict[str, dict[str, Any]] = {}
    topics: list[str] = []
    buckets: list[str] = []
    stored: dict[str, str] = {}
    for logical_id, resource in ctx.resources.items():
        if not isinstance(resource, dict):
            continue
        kind = str(resource.get("Type", ""))
        if kind not in (
            "AWS::SQS::Queue",
            "AWS::Kinesis::Stream",
            "AWS::DynamoDB::Table",
            "AWS::SNS::Topic",
            "AWS::S3::Bucket",
            "AWS::SecretsManager::Secret",
        ):
            continue
        loc: Loc = ("Resources", logical_id, "Properties")
        try:
            if not ctx.resource_exists(logical_id):
                continue
            name = physical_name(ctx, logical_id)
            props = ctx.resolve(_properties(ctx, logical_id), loc)
            if kind == "AWS::SQS::Queue":
                queues[name] = {k: props[k] for k in _QUEUE_ATTRIBUTES if k in props}
                if name.endswith(".fifo"):
                    queues[name]["FifoQueue"] = True
            elif kind == "AWS::Kinesis::Stream":
                streams[name] = _shard_count(props, loc)
            elif kind == "AWS::DynamoDB::Table":
                tables[name] = _table(props)
            elif kind == "AWS::SNS::Topic":
                topics.append(name)
            elif kind == "AWS::S3::Bucket":
                buckets.append(name)
            else:
                stored[name] = _secret_string(props, f"{ctx.stack_name}/{logical_id}")
        except TemplateProblem as problem:
            problems.append(problem)
    dev: dict[str, Any] = {}
    for key, value in (
        ("Queues", queues),
        ("Streams", streams),
        ("Tables", tables),
        ("SnsTopics", topics),
        ("Buckets", buckets),
        ("Secrets", stored),
    ):
        if value:
            dev[key] = value
    return dev


def _shard_count(props: Mapping[str, Any], loc: Loc) -> int:
    mode = props.get("StreamModeDetails")
    if isinstance(mode, dict) and mode.get("StreamMode") == "ON_DEMAND":
        return 4  # what an on-demand stream starts with
    count = props.get("ShardCount", 1)
    try:
        return int(count)
    except (TypeError, ValueError):
        raise TemplateProblem((*loc, "ShardCount"), f"{count!r} is not a number") from None


def _table(props: Mapping[str, Any]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key in ("KeySchema", "AttributeDefinitions"):
        if isinstance(props.get(key), list):
            table[key] = props[key]
    stream = props.get("StreamSpecification")
    if isinstance(stream, dict) and stream.get("StreamViewType"):
        table["StreamViewType"] = str(stream["StreamViewType"])
    return table


def _secret_string(props: Mapping[str, Any], seed: str) -> str:
    """``SecretString``, or for ``GenerateSecretString`` a stand-in password that stays the
    same from run to run (derived from the stack and the resource: local use only)."""
    given = props.get("SecretString")
    if isinstance(given, str):
        return given
    generate = props.get("GenerateSecretString")
    generate = generate if isinstance(generate, dict) else {}
    length = int(generate.get("PasswordLength", 32))
    value = base64.urlsafe_b64encode(hashlib.sha256(seed.encode()).digest()).decode()
    value = (value * (length // len(value) + 1))[:length]
    template, key = generate.get("SecretStringTemplate"), generate.get("GenerateStringKey")
    if isinstance(template, str) and isinstance(key, str):
        import json

        document = json.loads(template)
        document[key] = value
        return json.dumps(document)
    return value
