"""The nested objects of an event source mapping, with the AWS API's names: the
self-managed Kafka source, filters, destinations, scaling, consumer group, source access
and metrics configuration, and the enumerations its fields take."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

from pumphouse.config.fields import ConfigModel, HostPort, Int
from pumphouse.config.sources import parse_arn, parse_destination
from pumphouse.patterns import MAX_PATTERN_LENGTH


def _check_destination(value: str) -> str:
    parse_destination(value)
    return value


def _check_access_uri(value: str) -> str:
    if value.startswith("env:"):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value[4:]):
            raise ValueError(f"{value!r}: expected env:NAME with an environment variable name")
        return value
    if value.startswith("file:"):
        if not value[5:]:
            raise ValueError(f"{value!r}: expected file:/path/to/file")
        return value
    if value.startswith("arn:"):
        arn = parse_arn(value)
        if arn.service == "secretsmanager" and arn.resource.startswith("secret:"):
            return value
    raise ValueError(
        f"{value!r}: expected env:NAME, file:/path or a Secrets Manager secret ARN "
        "(arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
    )


class StartingPosition(StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


class FunctionResponseType(StrEnum):
    REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"


class SourceAccessType(StrEnum):
    BASIC_AUTH = "BASIC_AUTH"
    SASL_SCRAM_256_AUTH = "SASL_SCRAM_256_AUTH"
    SASL_SCRAM_512_AUTH = "SASL_SCRAM_512_AUTH"
    CLIENT_CERTIFICATE_TLS_AUTH = "CLIENT_CERTIFICATE_TLS_AUTH"
    SERVER_ROOT_CA_CERTIFICATE = "SERVER_ROOT_CA_CERTIFICATE"


class MetricName(StrEnum):
    EVENT_COUNT = "EventCount"
    ERROR_COUNT = "ErrorCount"
    KAFKA_METRICS = "KafkaMetrics"


class KafkaBootstrapEndpoints(ConfigModel):
    KAFKA_BOOTSTRAP_SERVERS: Annotated[list[HostPort], Field(min_length=1, max_length=10)]
    """1 to 10 brokers as ``host:port``."""


class SelfManagedEventSource(ConfigModel):
    """A Kafka cluster that is not Amazon MSK."""

    Endpoints: KafkaBootstrapEndpoints


class Filter(ConfigModel):
    Pattern: Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_LENGTH)]
    """A filter pattern: a JSON object as a string."""


class FilterCriteria(ConfigModel):
    Filters: list[Filter] = []
    """Records matching any filter are processed; the others are dropped (and
    acknowledged)."""


class OnFailure(ConfigModel):
    Destination: Annotated[str, AfterValidator(_check_destination)] | None = None
    """An SQS queue, SNS topic or S3 bucket ARN, or ``kafka://<topic>`` (Kafka sources)."""


class OnSuccess(ConfigModel):
    Destination: str | None = None


_OnFailure = OnFailure  # DestinationConfig has fields of the same names


_OnSuccess = OnSuccess


class DestinationConfig(ConfigModel):
    OnFailure: _OnFailure | None = None
    OnSuccess: _OnSuccess | None = None
    """Not supported for event source mappings (refused)."""


class ScalingConfig(ConfigModel):
    MaximumConcurrency: Annotated[Int, Field(ge=2, le=1000)] | None = None
    """Most concurrent invocations for this SQS mapping (2-1000)."""


class ConsumerGroupConfig(ConfigModel):
    ConsumerGroupId: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """The Kafka consumer group (default: the mapping's UUID)."""


class AmazonManagedKafkaEventSourceConfig(ConsumerGroupConfig):
    pass


class SelfManagedKafkaEventSourceConfig(ConsumerGroupConfig):
    pass


class SourceAccessConfiguration(ConfigModel):
    Type: SourceAccessType
    URI: Annotated[str, AfterValidator(_check_access_uri)]
    """Where the credential is: ``env:NAME``, ``file:/path`` (a relative path starts at
    the configuration file's directory: ``Config.resolve_path``) or a Secrets Manager
    secret ARN."""


class MetricsConfig(ConfigModel):
    Metrics: list[MetricName] = []
    """Accepted for compatibility; pumphouse always exports its metrics."""
