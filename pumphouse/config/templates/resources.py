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


def _attributes(ctx: Context, logical_id: str, kind: str, name: str) -> dict[str, str]:
    """The attributes pumphouse gives for a resource of ``kind`` named ``name``."""
    if kind == "AWS::SQS::Queue":
        url = _queue_url(ctx, name)
        return {"Arn": _arn(ctx, "sqs", name), "QueueName": name, "QueueUrl": url}
    if kind == "AWS::DynamoDB::Table":
        values = {"Arn": _arn(ctx, "dynamodb", f"table/{name}")}
        if "StreamSpecification" in _properties(ctx, logical_id):
            values["StreamArn"] = f"{values['Arn']}/stream/{STREAM_LABEL}"
        return values
    if kind == "AWS::SNS::Topic":
        arn = _arn(ctx, "sns", name)
        return {"Arn": arn, "TopicArn": arn, "TopicName": name}
    if kind == "AWS::S3::Bucket":
        return {
            "Arn": _arn(ctx, "s3", name, regional=False),
            "DomainName": f"{name}.s3.{ctx.url_suffix}",
            "RegionalDomainName": f"{name}.s3.{ctx.region}.{ctx.url_suffix}",
        }
    arn = _plain_arn(ctx, kind, name)
    return {"Arn": arn, "Id": arn} if kind == "AWS::SecretsManager::Secret" else {"Arn": arn}


def _plain_arn(ctx: Context, kind: str, name: str) -> str:
    if kind == "AWS::IAM::Role":
        return f"arn:{ctx.partition}:iam::{ctx.account_id}:role/{name}"
    service, resource = {
        "AWS::Kinesis::Stream": ("kinesis", f"stream/{name}"),
        "AWS::Serverless::Function": ("lambda", f"function:{name}"),
        "AWS::Lambda::Function": ("lambda", f"function:{name}"),
        "AWS::Serverless::LayerVersion": ("lambda", f"layer:{name}:1"),
        "AWS::Lambda::LayerVersion": ("lambda", f"layer:{name}:1"),
        "AWS::SecretsManager::Secret": ("secretsmanager", f"secret:{name}"),
    }[kind]
    return _arn(ctx, service, resource)


def attribute_value(ctx: Context, logical_id: str, attribute: str, loc: Loc) -> Any:
    """What ``!GetAtt <logical_id>.<attribute>`` returns."""
    kind = resource_type(ctx, logical_id)
    if kind not in _NAMED:
        raise TemplateProblem(
            loc,
            f"!GetAtt {logical_id}.{attribute}: {kind or 'a resource without a Type'} is not "
            "used by pumphouse and has no local value",
        )
    values = _attributes(ctx, logical_id, kind, physical_name(ctx, logical_id))
    if attribute in values:
        return values[attribute]
    if kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
        raise TemplateProblem(
            loc, f"!GetAtt {logical_id}.StreamArn: the table has no StreamSpecification"
        )
    known = ", ".join(sorted(values))
    raise TemplateProblem(
        loc,
        f"!GetAtt {logical_id}.{attribute}: {kind} has no attribute {attribute} "
        f"pumphouse can give (it gives {known})",
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


_DEV_SECTIONS: Final = {
    "AWS::SQS::Queue": "Queues",
    "AWS::Kinesis::Stream": "Streams",
    "AWS::DynamoDB::Table": "Tables",
    "AWS::SNS::Topic": "SnsTopics",
    "AWS::S3::Bucket": "Buckets",
    "AWS::SecretsManager::Secret": "Secrets",
}
"""Resource type → the ``Dev:`` section that creates it."""


def dev_resources(ctx: Context, problems: list[TemplateProblem]) -> dict[str, Any]:
    """The ``Dev:`` section creating the template's queues, streams, tables, topics,
    buckets and secrets as declared (sections in that order, empty ones left out)."""
    sections: dict[str, dict[str, Any]] = {section: {} for section in _DEV_SECTIONS.values()}
    for logical_id, resource in ctx.resources.items():
        kind = str(resource.get("Type", "")) if isinstance(resource, dict) else ""
        if kind not in _DEV_SECTIONS:
            continue
        loc: Loc = ("Resources", logical_id, "Properties")
        try:
            if ctx.resource_exists(logical_id):
                name = physical_name(ctx, logical_id)
                props = ctx.resolve(_properties(ctx, logical_id), loc)
                sections[_DEV_SECTIONS[kind]][name] = _dev_entry(ctx, logical_id, kind, name, props)
        except TemplateProblem as problem:
            problems.append(problem)
    dev: dict[str, Any] = {}
    for section, entries in sections.items():
        if entries:
            lists = section in ("SnsTopics", "Buckets")
            dev[section] = list(entries) if lists else entries
    return dev


def _dev_entry(ctx: Context, logical_id: str, kind: str, name: str, props: Any) -> Any:
    """What the ``Dev:`` section holds for one resource (its attributes, shard count ...)."""
    loc: Loc = ("Resources", logical_id, "Properties")
    if kind == "AWS::SQS::Queue":
        attributes = {k: props[k] for k in _QUEUE_ATTRIBUTES if k in props}
        if name.endswith(".fifo"):
            attributes["FifoQueue"] = True
        return attributes
    if kind == "AWS::Kinesis::Stream":
        return _shard_count(props, loc)
    if kind == "AWS::DynamoDB::Table":
        return _table(props)
    if kind == "AWS::SecretsManager::Secret":
        return _secret_string(props, f"{ctx.stack_name}/{logical_id}")
    return None  # topics and buckets: the name is all


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
