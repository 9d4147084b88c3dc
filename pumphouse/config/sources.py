"""Event sources and destinations named in a configuration: ARNs, ``kafka://`` topics and
``host:port`` addresses, parsed into value objects.

Pure functions: each parser returns a frozen value or raises ``ValueError`` with a
message fit to follow ``path:`` in a configuration problem.

>>> parse_event_source_arn("arn:aws:sqs:us-east-1:000000000000:orders.fifo").is_fifo
True
>>> parse_destination("kafka://orders-dlq").topic
'orders-dlq'
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "Arn",
    "Destination",
    "DestinationType",
    "EventSource",
    "SourceType",
    "is_valid_topic",
    "parse_arn",
    "parse_destination",
    "parse_event_source_arn",
    "parse_host_port",
]


class SourceType(StrEnum):
    """The kind of event source a mapping reads. Values match the pattern language's
    ``SourceKind`` and are used as the ``source`` metric label."""

    SQS = "sqs"
    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"
    KAFKA = "kafka"


class DestinationType(StrEnum):
    """Where an on-failure record can be sent."""

    SQS = "sqs"
    SNS = "sns"
    S3 = "s3"
    KAFKA = "kafka"


_PARTITION = re.compile(r"^aws(-[a-z]+)*$")
_REGION = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_ACCOUNT = re.compile(r"^\d{12}$")
_SQS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_SNS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)
FIFO_SUFFIX: Final = ".fifo"

_SUPPORTED = "SQS queues, Kinesis streams, DynamoDB streams and Amazon MSK clusters"


@dataclass(frozen=True, kw_only=True)
class Arn:
    """An Amazon Resource Name split into its six parts."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def parse_arn(text: str) -> Arn:
    """Split ``arn:partition:service:region:account:resource`` (region and account may be
    empty, as in S3 ARNs)."""
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[2] or not parts[5]:
        raise ValueError(
            f"{text!r} is not an ARN (expected arn:aws:<service>:<region>:<account>:<resource>)"
        )
    _, partition, service, region, account, resource = parts
    if not _PARTITION.match(partition):
        raise ValueError(f"{text!r}: unknown ARN partition {partition!r}")
    if region and not _REGION.match(region):
        raise ValueError(f"{text!r}: invalid region {region!r}")
    if account and not _ACCOUNT.match(account):
        raise ValueError(f"{text!r}: the account must be 12 digits, got {account!r}")
    return Arn(
        partition=partition, service=service, region=region, account=account, resource=resource
    )


@dataclass(frozen=True, kw_only=True)
class EventSource:
    """What an ``EventSourceArn`` names."""

    source_type: SourceType
    arn: Arn
    resource_name: str
    """Queue name, stream name, table name, or MSK cluster name."""
    is_kinesis_consumer: bool = False
    """A Kinesis enhanced fan-out consumer ARN (``stream/S/consumer/C:ts``)."""
    stream_arn: str | None = None
    """Kinesis: the stream's ARN (also for a consumer ARN); DynamoDB: the stream ARN."""

    @property
    def is_fifo(self) -> bool:
        return self.source_type is SourceType.SQS and self.resource_name.endswith(FIFO_SUFFIX)


def _require_region_account(arn: Arn, text: str) -> None:
    if not arn.region:
        raise ValueError(f"{text!r}: the ARN has no region")
    if not arn.account:
        raise ValueError(f"{text!r}: the ARN has no account")


def _sqs_queue_name(name: str, text: str) -> str:
    base = name.removesuffix(FIFO_SUFFIX)
    if not _SQS_NAME.match(base) or len(name) > 80:
        raise ValueError(
            f"{text!r}: {name!r} is not a valid SQS queue name (1-80 letters, digits, '-' "
            "or '_', optionally ending in '.fifo')"
        )
    return name


def parse_event_source_arn(text: str) -> EventSource:
    """Parse an ``EventSourceArn``: an SQS queue, a Kinesis stream (or stream consumer), a
    DynamoDB stream, or an Amazon MSK cluster."""
    arn = parse_arn(text)
    service = arn.service
    if service == "sqs":
        _require_region_account(arn, text)
        name = _sqs_queue_name(arn.resource, text)
        return EventSource(source_type=SourceType.SQS, arn=arn, resource_name=name)
    if service == "kinesis":
        _require_region_account(arn, text)
        parts = arn.resource.split("/")
        if len(parts) == 2 and parts[0] == "stream" and _STREAM_NAME.match(parts[1]):
            return EventSource(
                source_type=SourceType.KINESIS, arn=arn, resource_name=parts[1], stream_arn=text
            )
        if (
            len(parts) == 4
            and parts[0] == "stream"
            and parts[2] == "consumer"
            and _STREAM_NAME.match(parts[1])
            and parts[3]
        ):
            stream_arn = str(
                Arn(
                    partition=arn.partition,
                    service=service,
                    region=arn.region,
                    account=arn.account,
                    resource=f"stream/{parts[1]}",
                )
            )
            return EventSource(
                source_type=SourceType.KINESIS,
                arn=arn,
                resource_name=parts[1],
                is_kinesis_consumer=True,
                stream_arn=stream_arn,
            )
        raise ValueError(
            f"{text!r}: a Kinesis ARN must name a stream (…:stream/<name>) or a stream "
            "consumer (…:stream/<name>/consumer/<consumer>:<timestamp>)"
        )
    if service == "dynamodb":
        _require_region_account(arn, text)
        parts = arn.resource.split("/", 3)
        if parts[0] == "table" and len(parts) == 2:
            raise ValueError(
                f"{text!r} is a DynamoDB table ARN; use the table's stream ARN "
                "(…:table/<name>/stream/<label>)"
            )
        if len(parts) == 4 and parts[0] == "table" and parts[2] == "stream" and parts[3]:
            if not _TABLE_NAME.match(parts[1]):
                raise ValueError(
                    f"{text!r}: {parts[1]!r} is not a valid DynamoDB table name (3-255 letters, "
                    "digits, '_', '-' or '.')"
                )
            return EventSource(
                source_type=SourceType.DYNAMODB, arn=arn, resource_name=parts[1], stream_arn=text
            )
        raise ValueError(
            f"{text!r}: a DynamoDB ARN must name a table's stream (…:table/<name>/stream/<label>)"
        )
    if service == "kafka":
        _require_region_account(arn, text)
        parts = arn.resource.split("/")
        if len(parts) >= 2 and parts[0] == "cluster" and parts[1]:
            return EventSource(source_type=SourceType.KAFKA, arn=arn, resource_name=parts[1])
        raise ValueError(f"{text!r}: an Amazon MSK ARN must name a cluster (…:cluster/<name>/<id>)")
    raise ValueError(
        f"unsupported event source service {service!r}: pumphouse reads {_SUPPORTED} "
        "(use SelfManagedEventSource for other Kafka clusters)"
    )


@dataclass(frozen=True, kw_only=True)
class Destination:
    """An on-failure destination."""

    destination_type: DestinationType
    target: str
    """The ARN, or the ``kafka://topic`` URI, as configured."""
    name: str
    """Queue, topic (SNS or Kafka) or bucket name."""

    @property
    def is_fifo(self) -> bool:
        return self.destination_type in (
            DestinationType.SQS,
            DestinationType.SNS,
        ) and self.name.endswith(FIFO_SUFFIX)

    @property
    def topic(self) -> str | None:
        """The Kafka topic of a ``kafka://`` destination."""
        return self.name if self.destination_type is DestinationType.KAFKA else None


def parse_destination(text: str) -> Destination:
    """Parse ``DestinationConfig.OnFailure.Destination``: an SQS queue, SNS topic or S3
    bucket ARN, or ``kafka://<topic>``."""
    if text.startswith("kafka://"):
        topic = text.removeprefix("kafka://")
        if not _TOPIC.match(topic) or topic in (".", ".."):
            raise ValueError(
                f"{text!r}: {topic!r} is not a valid Kafka topic name (1-249 letters, digits, "
                "'.', '_' or '-')"
            )
        return Destination(destination_type=DestinationType.KAFKA, target=text, name=topic)
    if not text.startswith("arn:"):
        raise ValueError(
            f"{text!r} is not a destination: use an SQS queue, SNS topic or S3 bucket ARN, "
            "or kafka://<topic>"
        )
    arn = parse_arn(text)
    if arn.service == "sqs":
        _require_region_account(arn, text)
        name = _sqs_queue_name(arn.resource, text)
        return Destination(destination_type=DestinationType.SQS, target=text, name=name)
    if arn.service == "sns":
        _require_region_account(arn, text)
        base = arn.resource.removesuffix(FIFO_SUFFIX)
        if not _SNS_NAME.match(base):
            raise ValueError(f"{text!r}: {arn.resource!r} is not a valid SNS topic name")
        return Destination(destination_type=DestinationType.SNS, target=text, name=arn.resource)
    if arn.service == "s3":
        if arn.region or arn.account or not _BUCKET.match(arn.resource):
            raise ValueError(
                f"{text!r}: an S3 destination must be a bucket ARN (arn:aws:s3:::<bucket>)"
            )
        return Destination(destination_type=DestinationType.S3, target=text, name=arn.resource)
    raise ValueError(
        f"{text!r}: unsupported destination service {arn.service!r} (use an SQS queue, SNS "
        "topic or S3 bucket ARN, or kafka://<topic>)"
    )


def is_valid_topic(name: str) -> bool:
    """Whether ``name`` is a legal Kafka topic name."""
    return bool(_TOPIC.match(name)) and name not in (".", "..")


def parse_host_port(text: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6 literals) and check both parts."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write IPv6 addresses in brackets, e.g. [::1]:9092")
    elif not _HOSTNAME.match(host):
        raise ValueError(f"{text!r}: {host!r} is not a valid host name")
    if not port_text.isdigit():
        raise ValueError(f"{text!r}: the port must be a number")
    port = int(port_text)
    lowest = 0 if allow_port_zero else 1
    if not lowest <= port <= 65535:
        raise ValueError(f"{text!r}: the port must be between {lowest} and 65535")
    return host, port
