"""The configuration model: ``Settings``, ``Functions`` and ``EventSourceMappings``.

Field names are the AWS API's own PascalCase names, so ``mapping.BatchSize`` reads the
same as the YAML (and as ``aws lambda get-event-source-mapping``). A field holds what was
configured (``None`` when it was not); what pumphouse will actually use is a snake_case
property (``mapping.batch_size`` is the per-source default when ``BatchSize`` is None).

Single fields are checked here (types, ranges, formats). Rules that involve several
fields or the whole file (per-source ranges, which parameters a source accepts, function
references, duplicate UUIDs) live in :mod:`pumphouse.config.validation`; a :class:`Config`
is only ever built when all of them pass. Build one with
:func:`pumphouse.config.load_config` / :func:`~pumphouse.config.parse_config`, which report
every problem by its path, rather than by calling the constructors.

All models are frozen. ``model_copy(update=...)`` skips validation: don't use it to change
fields.
"""

from __future__ import annotations

import functools
import os
import re
import time
import uuid as uuid_module
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from pumphouse.config import envvars
from pumphouse.config.sources import (
    Destination,
    DestinationType,
    EventSource,
    SourceType,
    is_valid_topic,
    parse_arn,
    parse_destination,
    parse_event_source_arn,
    parse_host_port,
)

if TYPE_CHECKING:
    from pumphouse.pollers.filtering import FilterSet
    from pumphouse.runtime import FunctionSpec

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "DEFAULT_STATE_STORE",
    "AmazonManagedKafkaEventSourceConfig",
    "Config",
    "DestinationConfig",
    "EventSourceMapping",
    "FilterCriteria",
    "Function",
    "FunctionEnvironment",
    "FunctionResponseType",
    "KafkaConsumerOverrides",
    "KafkaConsumerSettings",
    "KafkaSecurityProtocol",
    "LogFormat",
    "LogLevel",
    "MetricsConfig",
    "ScalingConfig",
    "SelfManagedEventSource",
    "SelfManagedKafkaEventSourceConfig",
    "ServiceEndpoints",
    "Settings",
    "SourceAccessConfiguration",
    "SourceAccessType",
    "StartingPosition",
]

DEFAULT_STATE_STORE: Final = "sqlite:///./.pumphouse/state.db"
DEFAULT_REGION: Final = "us-east-1"
DEFAULT_ACCOUNT_ID: Final = "000000000000"
DEFAULT_ROLE_NAME: Final = "pumphouse"

MAX_BATCH_SIZE: Final = 10000
MAX_FILTERS_QUOTA: Final = 10
MAX_PATTERN_LENGTH: Final = 4096

UUID_NAMESPACE: Final = uuid_module.UUID("5d3c2f0e-8d4b-5a51-9a43-70756d70686f")
"""Namespace of the uuid5 derived for a mapping that has no configured ``UUID``."""


# ---------------------------------------------------------------------------------------
# Field types with their checks


def _reject_bool(value: Any) -> Any:
    # pydantic's lax mode reads true/false as 1/0 for numbers; YAML users mean otherwise.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_reject_bool)]
Float = Annotated[float, BeforeValidator(_reject_bool), Field(allow_inf_nan=False)]


def _regex_check(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


_LAMBDA_RESERVED_VARIABLES: Final = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
"""Variables the runtime sets itself (Lambda refuses them in ``Environment.Variables``).
Credentials (``AWS_ACCESS_KEY_ID``, ...) are allowed: there is no execution role to take
them from."""


def _check_variable_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError(
            f"{name!r} is not a valid environment variable name (a letter, then letters, "
            "digits or '_')"
        )
    if name in _LAMBDA_RESERVED_VARIABLES:
        raise ValueError(f"{name} is reserved: the runtime sets it")
    return name


def _check_host_port(value: str) -> str:
    parse_host_port(value)
    return value


def _check_listen_address(value: str) -> str:
    parse_host_port(value, allow_port_zero=True)  # port 0: any free port (tests)
    return value


def _check_endpoint_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return value


def _check_state_store(value: str) -> str:
    scheme = value.split(":", 1)[0]
    if scheme in ("redis", "rediss"):
        parts = urlsplit(value)
        if not value.startswith(f"{scheme}://") or not parts.hostname:
            raise ValueError(f"{value!r}: expected {scheme}://host[:port][/db]")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        return value
    if scheme == "sqlite":
        if not value.startswith("sqlite:///") or len(value) == len("sqlite:///"):
            raise ValueError(
                f"{value!r}: expected sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        return value
    raise ValueError(
        f"{value!r} is not a state store URL: use redis://host:port/db, rediss://... or "
        "sqlite:///path/to/state.db"
    )


def _check_account_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            "quote the account id in YAML ('000000000000'): an unquoted number loses its "
            "leading zeros"
        )
    return value


def _check_handler(value: str) -> str:
    identifier = r"[A-Za-z_][A-Za-z0-9_]*"
    if not re.fullmatch(rf"{identifier}([./]{identifier})*\.{identifier}", value):
        raise ValueError(
            f"{value!r} is not a handler: use the Lambda form module.function "
            "(e.g. app.handler or package/module.handler)"
        )
    return value


def check_function_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ValueError(
            f"{value!r} is not a valid function name (1-64 letters, digits, '-' or '_')"
        )
    return value


def _check_function_reference(value: str) -> str:
    if value.startswith("arn:"):
        _lambda_arn_name(value)
    else:
        check_function_name(value)
    return value


def _lambda_arn_name(value: str) -> str:
    match = re.fullmatch(
        r"arn:aws(-[a-z]+)*:lambda:[a-z0-9-]+:\d{12}:function:([A-Za-z0-9_-]{1,64})", value
    )
    if match is None:
        raise ValueError(
            f"{value!r} is not a function name or an unqualified Lambda function ARN "
            "(arn:aws:lambda:<region>:<account>:function:<name>)"
        )
    return match.group(2)


def _check_event_source_arn(value: str) -> str:
    parse_event_source_arn(value)
    return value


def _check_destination(value: str) -> str:
    parse_destination(value)
    return value


def _check_uuid(value: str) -> str:
    try:
        uuid_module.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    return value


def _check_topic(value: str) -> str:
    if not is_valid_topic(value):
        raise ValueError(
            f"{value!r} is not a valid Kafka topic name (1-249 letters, digits, '.', '_' or '-')"
        )
    return value


def _check_record_age(value: int) -> int:
    if value != -1 and not 60 <= value <= 604800:
        raise ValueError(f"{value} is not allowed: use -1 (no limit) or 60 to 604800 seconds")
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


def _epoch_seconds(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected epoch seconds or an ISO-8601 time, got {value}")
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is neither epoch seconds nor an ISO-8601 time "
                "(e.g. 2024-05-01T12:00:00Z)"
            ) from None
        return _epoch_seconds(parsed)
    return value


FunctionNameKey = Annotated[str, AfterValidator(check_function_name)]
VariableName = Annotated[str, AfterValidator(_check_variable_name)]
HostPort = Annotated[str, AfterValidator(_check_host_port)]
EndpointUrl = Annotated[str, AfterValidator(_check_endpoint_url)]
KafkaTopic = Annotated[str, AfterValidator(_check_topic)]
PassedVariable = Annotated[
    str, _regex_check(r"[A-Za-z_][A-Za-z0-9_]*\*?", "a variable name (or PREFIX*)")
]
Milliseconds = Annotated[Int, Field(ge=1)]
ByteCount = Annotated[Int, Field(ge=1)]
PositiveSeconds = Annotated[Float, Field(gt=0)]
EpochSeconds = Annotated[
    Float,
    BeforeValidator(_epoch_seconds),
    Field(ge=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "format": "date-time"},
            ],
            "description": "Epoch seconds or an ISO-8601 time (UTC when no offset is given).",
        }
    ),
]
RecordAge = Annotated[
    Int,
    AfterValidator(_check_record_age),
    WithJsonSchema(
        {"anyOf": [{"const": -1}, {"type": "integer", "minimum": 60, "maximum": 604800}]}
    ),
]


class ConfigModel(BaseModel):
    """Base of every configuration model: frozen, no unknown keys, numbers accepted where
    a string is expected (YAML reads ``Topics: [2024]`` as a number)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        coerce_numbers_to_str=True,
        revalidate_instances="always",
    )


# ---------------------------------------------------------------------------------------
# Settings


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"
    AUTO = "auto"


_LogLevel = LogLevel  # aliases: Settings has fields of the same names
_LogFormat = LogFormat


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class ServiceEndpoints(ConfigModel):
    """Endpoint URLs of AWS-compatible services. A service not set here follows the AWS
    SDK's own resolution (``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL``, ..., then AWS)."""

    Sqs: EndpointUrl | None = None
    """SQS (sources and on-failure destinations)."""
    Kinesis: EndpointUrl | None = None
    DynamoDB: EndpointUrl | None = None
    DynamoDBStreams: EndpointUrl | None = None
    Sns: EndpointUrl | None = None
    """SNS on-failure destinations."""
    S3: EndpointUrl | None = None
    """S3 on-failure destinations."""
    SecretsManager: EndpointUrl | None = None
    """Secrets named in ``SourceAccessConfigurations``."""
    Kafka: EndpointUrl | None = None
    """The Amazon MSK API (finds the bootstrap brokers of an MSK cluster ARN)."""


class KafkaSecurityProtocol(StrEnum):
    """How a Kafka client talks to the brokers (Kafka's ``security.protocol``)."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


#: FetchMaxWaitMs when not configured: the wait pumphouse always used (aiokafka: 500).
DEFAULT_FETCH_MAX_WAIT_MS: Final = 100


class KafkaConsumerSettings(ConfigModel):
    """Kafka consumer settings; the defaults are aiokafka's unless a field says otherwise."""

    SessionTimeoutMs: Milliseconds = 10000
    RebalanceTimeoutMs: Milliseconds | None = None
    """Default: aiokafka's (the session timeout)."""
    HeartbeatIntervalMs: Milliseconds = 3000
    """Must be lower than SessionTimeoutMs (Kafka advises at most a third of it)."""
    MaxPollIntervalMs: Milliseconds = 300000
    FetchMaxBytes: ByteCount = 52428800
    MaxPartitionFetchBytes: ByteCount = 1048576
    ClientId: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    """Default: aiokafka's (``aiokafka-<version>``)."""
    RequestTimeoutMs: Milliseconds = 40000
    FetchMaxWaitMs: Milliseconds = DEFAULT_FETCH_MAX_WAIT_MS
    """pumphouse extension: how long the broker may hold a fetch that has no data yet.
    Default 100 (aiokafka's is 500): some brokers (tansu, the broker of ``pumphouse dev``)
    answer a waiting fetch only when its wait runs out, so the wait bounds the delivery
    latency there. Must be lower than RequestTimeoutMs (the fetch request would time out)."""
    SecurityProtocol: KafkaSecurityProtocol | None = None
    """pumphouse extension: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
    Default: follows ``SourceAccessConfigurations`` as in Lambda (a SASL entry →
    ``SASL_SSL``, only TLS entries → ``SSL``, none → ``PLAINTEXT``). ``SASL_PLAINTEXT``
    sends SASL over an unencrypted connection (Lambda always uses TLS with SASL): for
    plaintext listeners inside a private network only."""

    def merged(self, overrides: KafkaConsumerOverrides | None) -> KafkaConsumerSettings:
        """These settings with a mapping's overrides applied."""
        if overrides is None:
            return self
        changes = {k: v for k, v in overrides.model_dump().items() if v is not None}
        if not changes:
            return self
        return KafkaConsumerSettings.model_validate({**self.model_dump(), **changes})

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments for ``aiokafka.AIOKafkaConsumer`` (unset ones left out).

        Not here: ``FetchMaxWaitMs`` (consumer only; the poller passes it) and
        ``SecurityProtocol`` (it needs the resolved secrets: ``build_security``)."""
        options: dict[str, Any] = {
            "session_timeout_ms": self.SessionTimeoutMs,
            "rebalance_timeout_ms": self.RebalanceTimeoutMs,
            "heartbeat_interval_ms": self.HeartbeatIntervalMs,
            "max_poll_interval_ms": self.MaxPollIntervalMs,
            "fetch_max_bytes": self.FetchMaxBytes,
            "max_partition_fetch_bytes": self.MaxPartitionFetchBytes,
            "client_id": self.ClientId,
            "request_timeout_ms": self.RequestTimeoutMs,
        }
        return {k: v for k, v in options.items() if v is not None}


class KafkaConsumerOverrides(ConfigModel):
    """Per-mapping overrides of ``Settings.Kafka`` (a pumphouse extension)."""

    SessionTimeoutMs: Milliseconds | None = None
    RebalanceTimeoutMs: Milliseconds | None = None
    HeartbeatIntervalMs: Milliseconds | None = None
    MaxPollIntervalMs: Milliseconds | None = None
    FetchMaxBytes: ByteCount | None = None
    MaxPartitionFetchBytes: ByteCount | None = None
    ClientId: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    RequestTimeoutMs: Milliseconds | None = None
    FetchMaxWaitMs: Milliseconds | None = None
    """How long the broker may hold a fetch that has no data yet (see ``Settings.Kafka``)."""
    SecurityProtocol: KafkaSecurityProtocol | None = None
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL`` (see ``Settings.Kafka``)."""


class Settings(ConfigModel):
    """Service-wide settings. Every one is optional."""

    StateStore: Annotated[str, AfterValidator(_check_state_store)] = DEFAULT_STATE_STORE
    """Checkpoints and leases: ``redis://host:port/db``, ``rediss://...`` (TLS) or
    ``sqlite:///path`` (three slashes and a relative path, four for an absolute one).
    The default is a SQLite file under the working directory."""
    MaxConcurrency: Annotated[Int, Field(ge=1)] | None = None
    """Concurrent invocations over all functions. Default: 4 times the number of CPUs."""
    Region: Annotated[str, _regex_check(r"[a-z0-9]+(-[a-z0-9]+)*", "a region name")] = (
        DEFAULT_REGION
    )
    """The region reported to functions and used for AWS clients."""
    AccountId: Annotated[
        str, BeforeValidator(_check_account_id), _regex_check(r"\d{12}", "a 12-digit account id")
    ] = DEFAULT_ACCOUNT_ID
    """The account in the ARNs pumphouse builds (function ARNs, default role)."""
    MetricsAddress: Annotated[str, AfterValidator(_check_listen_address)] = "0.0.0.0:9400"
    """``host:port`` of the HTTP server for /metrics, /healthz, /readyz and /mappings."""
    ShutdownTimeoutSeconds: PositiveSeconds = 30.0
    """How long in-flight batches may take to finish at shutdown."""
    WorkerIdleSeconds: PositiveSeconds = 300.0
    """An idle worker process is stopped after this long."""
    PassEnvironment: list[PassedVariable] | None = None
    """Variables of pumphouse's own environment passed to workers (``PREFIX*`` matches a
    prefix). Default: the runtime's list (AWS credentials and endpoint variables)."""
    MaxFiltersPerMapping: Annotated[Int, Field(ge=1, le=MAX_FILTERS_QUOTA)] = 5
    """Filters allowed per mapping (Lambda: 5, up to 10 by quota increase)."""
    Endpoints: ServiceEndpoints = ServiceEndpoints()
    Kafka: KafkaConsumerSettings = KafkaConsumerSettings()
    """Kafka consumer settings for every Kafka mapping (a mapping can override them)."""
    LeaseDurationSeconds: PositiveSeconds = 10.0
    """Shard leases (Kinesis, DynamoDB Streams) expire after this long unless renewed."""
    StallAfterSeconds: PositiveSeconds = 60.0
    """A mapping whose source has records waiting and that finished no batch for this
    long is stalled (``PROBLEM: ...``, ``pumphouse_mapping_stalled`` 1, /readyz 503);
    lost shards or an unreachable state store count after ``min(this, 10)`` seconds."""
    LogLevel: Annotated[_LogLevel, BeforeValidator(_upper)] = _LogLevel.INFO
    LogFormat: Annotated[_LogFormat, BeforeValidator(_lower)] = _LogFormat.AUTO
    """``json``, ``console`` or ``auto`` (console on a terminal, JSON otherwise)."""

    @property
    def max_concurrency(self) -> int:
        """``MaxConcurrency``, or 4 times the CPU count."""
        if self.MaxConcurrency is not None:
            return self.MaxConcurrency
        return 4 * (os.cpu_count() or 1)

    @property
    def metrics_host(self) -> str:
        return parse_host_port(self.MetricsAddress, allow_port_zero=True)[0]

    @property
    def metrics_port(self) -> int:
        return parse_host_port(self.MetricsAddress, allow_port_zero=True)[1]

    @property
    def state_store_scheme(self) -> str:
        """``redis``, ``rediss`` or ``sqlite``."""
        return self.StateStore.split(":", 1)[0]

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file of a ``sqlite:///`` store (relative to the working directory
        unless absolute), or None for Redis."""
        if self.state_store_scheme != "sqlite":
            return None
        return Path(self.StateStore.removeprefix("sqlite:///"))

    def endpoint_urls(self) -> dict[str, str]:
        """The configured ``Endpoints``, by key (``Sqs``, ``Kinesis``, ...)."""
        return {k: v for k, v in self.Endpoints.model_dump().items() if v is not None}

    def role_arn(self) -> str:
        """The role used when a function has no ``Role``."""
        return f"arn:aws:iam::{self.AccountId}:role/{DEFAULT_ROLE_NAME}"


_Settings = Settings  # the Config field below is named Settings too


# ---------------------------------------------------------------------------------------
# Functions


class FunctionEnvironment(ConfigModel):
    Variables: dict[VariableName, str] = {}
    """Environment variables of the function's worker processes."""


class Function(ConfigModel):
    """A Lambda-style function: a handler and its execution limits."""

    Handler: Annotated[str, AfterValidator(_check_handler)]
    """``module.function``, as in Lambda (``app.handler``, ``package/module.handler``)."""
    CodeUri: Annotated[str, Field(min_length=1)] = "."
    """Directory holding the handler's code, relative to the configuration file."""
    Runtime: Annotated[str, _regex_check(r"python3\.\d{1,2}", "a Python runtime (python3.X)")] = (
        "python3.11"
    )
    MemorySize: Annotated[Int, Field(ge=128, le=10240)] = 128
    """Memory limit in MB; a worker that exceeds it is killed (out of memory)."""
    Timeout: Annotated[Int, Field(ge=1, le=900)] = 3
    """Seconds an invocation may run before its worker is killed."""
    Environment: FunctionEnvironment = FunctionEnvironment()
    ReservedConcurrentExecutions: Annotated[Int, Field(ge=0)] | None = None
    """Most concurrent invocations of this function (0 stops it). Default: no limit of
    its own, only Settings.MaxConcurrency."""
    ProvisionedConcurrency: Annotated[Int, Field(ge=0)] = 0
    """Workers started ahead of the first invocation and kept warm."""
    Role: (
        Annotated[
            str,
            _regex_check(r"arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", "a role ARN"),
        ]
        | None
    ) = None
    """The execution role reported to the function. Default:
    ``arn:aws:iam::<AccountId>:role/pumphouse``."""
    Description: Annotated[str, Field(max_length=256)] = ""

    _base_dir: Path | None = PrivateAttr(default=None)

    @property
    def code_path(self) -> Path:
        """``CodeUri`` resolved against the configuration file's directory."""
        base = self._base_dir if self._base_dir is not None else Path.cwd()
        return (base / self.CodeUri).resolve()

    def role_arn(self, settings: Settings) -> str:
        return self.Role if self.Role is not None else settings.role_arn()

    def to_spec(self, name: str, settings: Settings) -> FunctionSpec:
        """The runtime's view of this function."""
        from pumphouse.runtime import FunctionSpec

        return FunctionSpec(
            name=name,
            handler=self.Handler,
            code_uri=self.code_path,
            runtime=self.Runtime,
            memory_size=self.MemorySize,
            timeout=float(self.Timeout),
            environment=dict(self.Environment.Variables),
            reserved_concurrency=self.ReservedConcurrentExecutions,
            provisioned_concurrency=self.ProvisionedConcurrency,
            role=self.role_arn(settings),
            region=settings.Region,
            account_id=settings.AccountId,
        )


# ---------------------------------------------------------------------------------------
# Event source mappings


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


# Aliases: EventSourceMapping and DestinationConfig have fields named like these classes.
_StartingPosition = StartingPosition
_SelfManagedEventSource = SelfManagedEventSource
_FilterCriteria = FilterCriteria
_DestinationConfig = DestinationConfig
_ScalingConfig = ScalingConfig
_AmazonManagedKafkaEventSourceConfig = AmazonManagedKafkaEventSourceConfig
_SelfManagedKafkaEventSourceConfig = SelfManagedKafkaEventSourceConfig
_MetricsConfig = MetricsConfig


def _check_response_types(value: list[FunctionResponseType]) -> list[FunctionResponseType]:
    if len(value) > 1:
        raise ValueError("must be [] or [ReportBatchItemFailures]")
    return value


@dataclass(frozen=True, kw_only=True)
class _MappingContext:
    """What a mapping knows from the configuration around it (set by :class:`Config`)."""

    label: str
    region: str
    account_id: str


@functools.lru_cache(maxsize=256)
def _compile_filters(patterns: tuple[str, ...], source: str) -> FilterSet:
    from pumphouse.pollers.filtering import SourceKind, compile_filter_criteria

    return compile_filter_criteria(
        patterns, source=SourceKind(source), max_filters=max(len(patterns), 1)
    )


class EventSourceMapping(ConfigModel):
    """One event source mapping: a source, a function, and how records get from one to
    the other. Which fields a source accepts is checked by the configuration loader."""

    FunctionName: Annotated[str, AfterValidator(_check_function_reference)]
    """A function in ``Functions``, by name or by its Lambda function ARN."""
    EventSourceArn: Annotated[str, AfterValidator(_check_event_source_arn)] | None = None
    """An SQS queue, Kinesis stream (or stream consumer), DynamoDB stream or Amazon MSK
    cluster ARN. Exactly one of EventSourceArn and SelfManagedEventSource."""
    SelfManagedEventSource: _SelfManagedEventSource | None = None
    Topics: Annotated[list[KafkaTopic], Field(min_length=1)] | None = None
    """Kafka: the one topic to read."""
    Enabled: bool = True
    """A disabled mapping is not polled; streams resume from their checkpoint when it is
    enabled again."""
    BatchSize: Annotated[Int, Field(ge=1, le=MAX_BATCH_SIZE)] | None = None
    """Most records per batch. Default: 10 for SQS, 100 for the others."""
    MaximumBatchingWindowInSeconds: Annotated[Float, Field(ge=0, le=300)] | None = None
    """How long to gather records before invoking. Default: 0, Kafka 0.5."""
    ParallelizationFactor: Annotated[Int, Field(ge=1, le=10)] | None = None
    """Kinesis, DynamoDB: concurrent batches per shard (default 1)."""
    StartingPosition: _StartingPosition | None = None
    """Streams and Kafka (required): where to start reading without a checkpoint."""
    StartingPositionTimestamp: EpochSeconds | None = None
    """With AT_TIMESTAMP: epoch seconds or an ISO-8601 time, not in the future."""
    BisectBatchOnFunctionError: bool | None = None
    """Streams and Kafka: split a failing batch in two and retry each half."""
    MaximumRetryAttempts: Annotated[Int, Field(ge=-1, le=10000)] | None = None
    """Streams and Kafka: retries of a failing batch (-1, the default: until success or
    the record expires)."""
    MaximumRecordAgeInSeconds: RecordAge | None = None
    """Streams and Kafka: skip records older than this (-1, the default: no limit)."""
    TumblingWindowInSeconds: Annotated[Int, Field(ge=0, le=900)] | None = None
    """Kinesis, DynamoDB: tumbling window length (0: off)."""
    FunctionResponseTypes: Annotated[
        list[FunctionResponseType], AfterValidator(_check_response_types)
    ] = []
    """``[ReportBatchItemFailures]`` to let the function report partial batch failures."""
    FilterCriteria: _FilterCriteria | None = None
    DestinationConfig: _DestinationConfig | None = None
    """Streams and Kafka: where records go when retries or record age give up."""
    ScalingConfig: _ScalingConfig | None = None
    """SQS only."""
    AmazonManagedKafkaEventSourceConfig: _AmazonManagedKafkaEventSourceConfig | None = None
    SelfManagedKafkaEventSourceConfig: _SelfManagedKafkaEventSourceConfig | None = None
    SourceAccessConfigurations: list[SourceAccessConfiguration] | None = None
    """Kafka authentication and TLS material."""
    MetricsConfig: _MetricsConfig | None = None
    UUID: Annotated[str, AfterValidator(_check_uuid)] | None = None
    """The mapping's identity (checkpoints, default Kafka consumer group). Default: derived
    from the function and the source, so it stays the same across restarts."""
    Kafka: KafkaConsumerOverrides | None = None
    """pumphouse extension: this mapping's overrides of ``Settings.Kafka``."""

    _source: EventSource | None = PrivateAttr(default=None)
    _uuid: str = PrivateAttr(default="")
    _ctx: _MappingContext | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _derive(self) -> EventSourceMapping:
        if self.EventSourceArn is not None:
            self._source = parse_event_source_arn(self.EventSourceArn)
        self._uuid = self.UUID if self.UUID is not None else self._derived_uuid()
        return self

    def _derived_uuid(self) -> str:
        topics = ",".join(self.Topics or ())
        if self.EventSourceArn is not None:
            source = self.EventSourceArn + (f"/{topics}" if topics else "")
        elif self.SelfManagedEventSource is not None:
            # Not the broker list: the default consumer group is this UUID, and adding a
            # broker to the bootstrap list must not start a new group (losing offsets).
            source = f"kafka:///{topics}"
        else:
            source = ""
        return str(uuid_module.uuid5(UUID_NAMESPACE, f"{self.function_name}\n{source}"))

    # -- identity --------------------------------------------------------------------------

    @property
    def function_name(self) -> str:
        """The function's name (``FunctionName`` without the ARN around it)."""
        if self.FunctionName.startswith("arn:"):
            return _lambda_arn_name(self.FunctionName)
        return self.FunctionName

    @property
    def function_arn(self) -> str:
        if self.FunctionName.startswith("arn:"):
            return self.FunctionName
        region = self._ctx.region if self._ctx else DEFAULT_REGION
        account = self._ctx.account_id if self._ctx else DEFAULT_ACCOUNT_ID
        return f"arn:aws:lambda:{region}:{account}:function:{self.FunctionName}"

    @property
    def uuid(self) -> str:
        """``UUID``, or a uuid5 of the function name and the source."""
        return self._uuid

    @property
    def source_type(self) -> SourceType:
        if self._source is not None:
            return self._source.source_type
        if self.SelfManagedEventSource is not None:
            return SourceType.KAFKA
        raise ValueError("the mapping has no event source")

    @property
    def is_msk(self) -> bool:
        """An Amazon MSK source (``eventSource: aws:kafka``)."""
        return self._source is not None and self._source.source_type is SourceType.KAFKA

    @property
    def is_self_managed_kafka(self) -> bool:
        return self.SelfManagedEventSource is not None

    @property
    def is_kinesis_consumer_arn(self) -> bool:
        """An enhanced fan-out consumer ARN: accepted here, refused by the poller."""
        return self._source is not None and self._source.is_kinesis_consumer

    @property
    def resource_name(self) -> str:
        """Queue, stream or table name; the topic for Kafka."""
        if self.source_type is SourceType.KAFKA:
            return self.topic or ""
        assert self._source is not None
        return self._source.resource_name

    @property
    def stream_arn(self) -> str | None:
        """Kinesis (also for a consumer ARN) and DynamoDB: the stream ARN."""
        return self._source.stream_arn if self._source is not None else None

    @property
    def base_label(self) -> str:
        """``<function>/<source>:<resource>`` before de-duplication."""
        return f"{self.function_name}/{self.source_type.value}:{self.resource_name}"

    @property
    def label(self) -> str:
        """Short name for metrics and logs, unique in its configuration."""
        return self._ctx.label if self._ctx is not None else self.base_label

    @property
    def region(self) -> str:
        """The source ARN's region (``Settings.Region`` for self-managed Kafka)."""
        if self._source is not None:
            return self._source.arn.region
        return self._ctx.region if self._ctx is not None else DEFAULT_REGION

    @property
    def account_id(self) -> str:
        if self._source is not None:
            return self._source.arn.account
        return self._ctx.account_id if self._ctx is not None else DEFAULT_ACCOUNT_ID

    @property
    def is_fifo(self) -> bool:
        """An SQS FIFO queue."""
        return self._source is not None and self._source.is_fifo

    # -- batching --------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        if self.BatchSize is not None:
            return self.BatchSize
        return 10 if self.source_type is SourceType.SQS else 100

    @property
    def batching_window(self) -> float:
        """Seconds (default 0; Kafka 0.5)."""
        if self.MaximumBatchingWindowInSeconds is not None:
            return self.MaximumBatchingWindowInSeconds
        return 0.5 if self.source_type is SourceType.KAFKA else 0.0

    @property
    def parallelization_factor(self) -> int:
        return self.ParallelizationFactor if self.ParallelizationFactor is not None else 1

    @property
    def tumbling_window(self) -> int:
        """Seconds; 0 when tumbling windows are off."""
        return self.TumblingWindowInSeconds or 0

    @property
    def starting_position(self) -> _StartingPosition | None:
        return self.StartingPosition

    # -- errors ----------------------------------------------------------------------------

    @property
    def report_batch_item_failures(self) -> bool:
        return FunctionResponseType.REPORT_BATCH_ITEM_FAILURES in self.FunctionResponseTypes

    @property
    def bisect_batch_on_function_error(self) -> bool:
        return bool(self.BisectBatchOnFunctionError)

    @property
    def retry_attempts(self) -> int:
        """-1 means until success. Kafka with an on-failure destination: -1 becomes 10."""
        value = -1 if self.MaximumRetryAttempts is None else self.MaximumRetryAttempts
        if (
            value == -1
            and self.source_type is SourceType.KAFKA
            and self.on_failure_destination is not None
        ):
            return 10
        return value

    @property
    def max_record_age(self) -> int | None:
        """Seconds, or None for no limit."""
        value = self.MaximumRecordAgeInSeconds
        return None if value is None or value == -1 else value

    @property
    def on_failure_destination(self) -> str | None:
        config = self.DestinationConfig
        if config is None or config.OnFailure is None:
            return None
        return config.OnFailure.Destination

    @property
    def on_failure(self) -> Destination | None:
        """The parsed on-failure destination."""
        target = self.on_failure_destination
        return parse_destination(target) if target is not None else None

    @property
    def on_failure_destination_type(self) -> DestinationType | None:
        destination = self.on_failure
        return destination.destination_type if destination is not None else None

    # -- filters ---------------------------------------------------------------------------

    @property
    def filter_patterns(self) -> list[str]:
        if self.FilterCriteria is None:
            return []
        return [f.Pattern for f in self.FilterCriteria.Filters]

    def compiled_filters(self) -> FilterSet:
        """The compiled ``FilterCriteria`` (cached; matches everything without filters)."""
        return _compile_filters(tuple(self.filter_patterns), self.source_type.value)

    # -- Kafka -----------------------------------------------------------------------------

    @property
    def topic(self) -> str | None:
        return self.Topics[0] if self.Topics else None

    @property
    def bootstrap_servers(self) -> list[str]:
        """Self-managed Kafka: the configured brokers. Empty for MSK (the poller asks the
        MSK API) and for other sources."""
        if self.SelfManagedEventSource is None:
            return []
        return list(self.SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS)

    @property
    def consumer_group_id(self) -> str | None:
        """Kafka: the configured consumer group, else the mapping's UUID."""
        if self.source_type is not SourceType.KAFKA:
            return None
        for config in (
            self.SelfManagedKafkaEventSourceConfig,
            self.AmazonManagedKafkaEventSourceConfig,
        ):
            if config is not None and config.ConsumerGroupId is not None:
                return config.ConsumerGroupId
        return self.uuid

    def source_access(self, access_type: SourceAccessType | str) -> str | None:
        """The URI configured for one ``SourceAccessConfigurations`` type."""
        for entry in self.SourceAccessConfigurations or ():
            if entry.Type == access_type:
                return entry.URI
        return None

    def kafka_consumer_settings(self, settings: Settings) -> KafkaConsumerSettings:
        """``Settings.Kafka`` with this mapping's ``Kafka`` overrides applied."""
        return settings.Kafka.merged(self.Kafka)


# ---------------------------------------------------------------------------------------
# The whole configuration


class DevResources(ConfigModel):
    """Resources ``pumphouse dev`` creates on the local servers (ignored by ``run``).

    Anything a mapping or destination names is created anyway, with defaults; list it
    here to set its attributes.
    """

    Queues: dict[str, dict[str, Any]] | None = None
    """SQS queue name → CreateQueue ``Attributes`` (``RedrivePolicy`` may be a mapping)."""
    Streams: dict[str, Annotated[int, Field(ge=1, le=64)]] | None = None
    """Kinesis stream name → shard count (default 1)."""
    Topics: dict[str, Annotated[int, Field(ge=1, le=64)]] | None = None
    """Kafka topic name → partition count (default 4)."""


class Config(ConfigModel):
    """A validated configuration file."""

    Settings: _Settings = _Settings()
    Functions: dict[FunctionNameKey, Function] = {}
    EventSourceMappings: list[EventSourceMapping] = []
    Dev: DevResources | None = None
    """Local resources for ``pumphouse dev``."""

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _check_and_resolve(self, info: ValidationInfo) -> Config:
        from pumphouse.config.validation import config_problems

        context: Mapping[str, Any] = info.context if isinstance(info.context, Mapping) else {}
        now = context.get("now")
        problems = config_problems(self, now=time.time() if now is None else float(now))
        if problems:
            raise ValueError("\n".join(problems))
        base_dir = context.get("base_dir")
        self._base_dir = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
        for function in self.Functions.values():
            function._base_dir = self._base_dir
        labels = _unique_labels(self.EventSourceMappings)
        for mapping, label in zip(self.EventSourceMappings, labels, strict=True):
            mapping._ctx = _MappingContext(
                label=label, region=self.Settings.Region, account_id=self.Settings.AccountId
            )
        return self

    @property
    def base_dir(self) -> Path:
        """The directory relative paths (``CodeUri``) are resolved against."""
        return self._base_dir

    def resolve_path(self, path: str | Path) -> Path:
        """A path from the configuration (``file:`` URIs), relative to its directory."""
        return (self._base_dir / path).resolve()

    def function_for(self, mapping: EventSourceMapping) -> Function:
        """The function a mapping invokes."""
        return self.Functions[mapping.function_name]

    def function_spec(self, name: str) -> FunctionSpec:
        return self.Functions[name].to_spec(name, self.Settings)

    def mapping(self, uuid: str) -> EventSourceMapping:
        for mapping in self.EventSourceMappings:
            if mapping.uuid == uuid:
                return mapping
        raise KeyError(uuid)

    def to_yaml(self) -> str:
        """This configuration as YAML (values that differ from the defaults); it parses
        back to an equal Config."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        return yaml.dump(
            _for_yaml(data),
            Dumper=_IndentedDumper,
            sort_keys=False,
            # Escaped, not raw: PyYAML writes U+0085 (NEL) raw and reads it back as a space.
            allow_unicode=False,
            width=100,
        )


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as people write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _unique_labels(mappings: list[EventSourceMapping]) -> list[str]:
    bases = [m.base_label for m in mappings]
    counts: dict[str, int] = {}
    for base in bases:
        counts[base] = counts.get(base, 0) + 1
    labels = [
        base if counts[base] == 1 else f"{base}#{m.uuid[:8]}"
        for base, m in zip(bases, mappings, strict=True)
    ]
    if len(set(labels)) != len(labels):  # same 8-hex prefix: use the whole UUID
        labels = [
            base if counts[base] == 1 else f"{base}#{m.uuid}"
            for base, m in zip(bases, mappings, strict=True)
        ]
    return labels


def _for_yaml(value: Any) -> Any:
    """Escape ``${`` in strings (they were literal) and write whole floats as integers
    (``2`` rather than ``2.0``; they read back as the same float)."""
    if isinstance(value, str):
        return envvars.escape(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _for_yaml(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_for_yaml(v) for v in value]
    return value
