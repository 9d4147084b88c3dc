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

The top-level models are defined here; their parts live beside: the base model and the
shared field types in :mod:`pumphouse.config.fields`, the nested objects of ``Settings``
in :mod:`pumphouse.config.settings_options`, a mapping's nested objects in
:mod:`pumphouse.config.mapping_options`. Every name is also importable from here.
"""

from __future__ import annotations

import functools
import os
import re
import time
import uuid as uuid_module
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    model_validator,
)

from pumphouse.config import envvars
from pumphouse.config.fields import (
    ByteCount,
    ConfigModel,
    EndpointUrl,
    EpochSeconds,
    Float,
    FunctionNameKey,
    HostPort,
    Int,
    KafkaTopic,
    Milliseconds,
    PassedVariable,
    PositiveSeconds,
    RecordAge,
    VariableName,
    check_function_name,
    check_url_port,
    regex_check,
)
from pumphouse.config.mapping_options import (
    AmazonManagedKafkaEventSourceConfig,
    ConsumerGroupConfig,
    DestinationConfig,
    Filter,
    FilterCriteria,
    FunctionResponseType,
    KafkaBootstrapEndpoints,
    MetricName,
    MetricsConfig,
    OnFailure,
    OnSuccess,
    ScalingConfig,
    SelfManagedEventSource,
    SelfManagedKafkaEventSourceConfig,
    SourceAccessConfiguration,
    SourceAccessType,
    StartingPosition,
)
from pumphouse.config.settings_options import (
    DEFAULT_FETCH_MAX_WAIT_MS,
    KafkaConsumerOverrides,
    KafkaConsumerSettings,
    KafkaSecurityProtocol,
    LogFormat,
    LogLevel,
    ServiceEndpoints,
)
from pumphouse.config.sources import (
    Destination,
    DestinationType,
    EventSource,
    SourceType,
    parse_destination,
    parse_event_source_arn,
    parse_host_port,
)
from pumphouse.patterns import (
    MAX_PATTERN_LENGTH,
    FilterSet,
    SourceKind,
    compile_filter_criteria,
)

if TYPE_CHECKING:
    from pumphouse.runtime import FunctionSpec

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "DEFAULT_STATE_STORE",
    "AmazonManagedKafkaEventSourceConfig",
    "ApiCredential",
    "Config",
    "DestinationConfig",
    "EventSourceMapping",
    "FilterCriteria",
    "Function",
    "FunctionEnvironment",
    "FunctionImageConfig",
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
# Defined in config.fields, config.settings_options, config.mapping_options and patterns,
# and still importable from here, where they were defined before model.py was split.
__all__ += [
    "DEFAULT_FETCH_MAX_WAIT_MS",
    "MAX_PATTERN_LENGTH",
    "ByteCount",
    "ConfigModel",
    "ConsumerGroupConfig",
    "EndpointUrl",
    "EpochSeconds",
    "Filter",
    "Float",
    "FunctionNameKey",
    "HostPort",
    "Int",
    "KafkaBootstrapEndpoints",
    "KafkaTopic",
    "MetricName",
    "Milliseconds",
    "OnFailure",
    "OnSuccess",
    "PassedVariable",
    "PositiveSeconds",
    "RecordAge",
    "VariableName",
    "check_function_name",
]

DEFAULT_STATE_STORE: Final = "sqlite:///./.pumphouse/state.db"
DEFAULT_REGION: Final = "us-east-1"
DEFAULT_ACCOUNT_ID: Final = "000000000000"
DEFAULT_ROLE_NAME: Final = "pumphouse"

MAX_BATCH_SIZE: Final = 10000
MAX_FILTERS_QUOTA: Final = 10

UUID_NAMESPACE: Final = uuid_module.UUID("5d3c2f0e-8d4b-5a51-9a43-70756d70686f")
"""Namespace of the uuid5 derived for a mapping that has no configured ``UUID``."""


# ---------------------------------------------------------------------------------------
# Checks of the fields defined here (the shared field types are in config.fields)


def _check_listen_address(value: str) -> str:
    parse_host_port(value, allow_port_zero=True)  # port 0: any free port (tests)
    return value


def _check_api_address(value: str) -> str:
    return value if value == "" else _check_listen_address(value)  # "": API off


def _check_state_store(value: str) -> str:
    scheme = value.split(":", 1)[0]
    if scheme in ("redis", "rediss"):
        parts = urlsplit(value)
        if not value.startswith(f"{scheme}://") or not parts.hostname:
            raise ValueError(f"{value!r}: expected {scheme}://host[:port][/db]")
        check_url_port(value, parts)
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
    # What Lambda's Python runtime accepts: it splits at the last '.', imports the module
    # part by file name ('/' read as '.'; 'kinesis-consumer-fn' is a valid file name) and
    # looks the function up on it.
    module, _, function = value.rpartition(".")
    segment = r"[^\s./][^\s./]*"
    if not re.fullmatch(rf"{segment}([./]{segment})*", module) or not function.isidentifier():
        raise ValueError(
            f"{value!r} is not a handler: use the Lambda form module.function "
            "(e.g. app.handler or package/module.handler)"
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


def _check_uuid(value: str) -> str:
    try:
        uuid_module.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    return value


# ---------------------------------------------------------------------------------------
# Settings


_LogLevel = LogLevel  # aliases: Settings has fields of the same names
_LogFormat = LogFormat


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class ApiCredential(ConfigModel):
    """A key pair allowed to call the event-source-mapping API (SigV4, as AWS clients
    sign). Give the values as ``${VAR}`` references: they never appear in logs, errors
    or ``/mappings``."""

    AccessKeyId: Annotated[str, Field(min_length=1, max_length=128)]
    SecretAccessKey: Annotated[SecretStr, Field(min_length=1)]


class Settings(ConfigModel):
    """Service-wide settings. Every one is optional."""

    StateStore: Annotated[str, AfterValidator(_check_state_store)] = DEFAULT_STATE_STORE
    """Checkpoints and leases: ``redis://host:port/db``, ``rediss://...`` (TLS) or
    ``sqlite:///path`` (three slashes and a relative path, four for an absolute one).
    The default is a SQLite file under the working directory."""
    MaxConcurrency: Annotated[Int, Field(ge=1)] | None = None
    """Concurrent invocations over all functions. Default: 4 times the number of CPUs."""
    Region: Annotated[str, regex_check(r"[a-z0-9]+(-[a-z0-9]+)*", "a region name")] = (
        DEFAULT_REGION
    )
    """The region reported to functions and used for AWS clients."""
    AccountId: Annotated[
        str, BeforeValidator(_check_account_id), regex_check(r"\d{12}", "a 12-digit account id")
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
    NodeModulesPath: str | None = None
    """A ``node_modules`` directory searched for ``aws-lambda-ric`` (AWS's Node.js runtime
    interface client) after a Node.js function's own ``CodeUri/node_modules``."""
    LeaseDurationSeconds: PositiveSeconds = 10.0
    """Shard leases (Kinesis, DynamoDB Streams) expire after this long unless renewed."""
    ApiAddress: Annotated[str, AfterValidator(_check_api_address)] = "127.0.0.1:9401"
    """``host:port`` of Lambda's event-source-mapping API (``aws lambda
    --endpoint-url``); ``""`` turns it off. It starts only with ``ApiCredentials``."""
    ApiCredentials: list[ApiCredential] = []
    """Key pairs that may call the API (``[{AccessKeyId, SecretAccessKey}]``)."""
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


class FunctionImageConfig(ConfigModel):
    """A container-image function's process, as Lambda's ``ImageConfig``."""

    EntryPoint: list[str] | None = None
    Command: list[str] | None = None
    WorkingDirectory: str | None = None


class Function(ConfigModel):
    """A Lambda-style function: a handler and its execution limits."""

    Handler: Annotated[str, AfterValidator(_check_handler)] | None = None
    """``module.function``, as in Lambda (``app.handler``, ``package/module.handler``).
    Optional with ``ImageConfig`` (its ``Command[0]`` is the handler)."""
    CodeUri: Annotated[str, Field(min_length=1)] = "."
    """Directory holding the handler's code, relative to the configuration file."""
    Runtime: Annotated[
        str,
        regex_check(
            r"python3\.\d{1,2}|nodejs\d{1,2}\.x|provided(\.al2|\.al2023)?",
            "a supported runtime (python3.X, nodejsNN.x, provided.al2023, "
            "provided.al2, provided)",
        ),
    ] = "python3.11"
    """``python3.X`` runs in pumphouse's own worker; ``nodejs*`` through AWS's Node.js
    runtime interface client (``aws-lambda-ric``); ``provided*`` runs the executable
    ``bootstrap`` in ``CodeUri``, which speaks Lambda's Runtime API."""
    MemorySize: Annotated[Int, Field(ge=128, le=10240)] = 128
    """Memory limit in MB; a worker that exceeds it is killed (out of memory)."""
    Timeout: Annotated[Int, Field(ge=1, le=900)] = 3
    """Seconds an invocation may run before its worker is killed."""
    Environment: FunctionEnvironment = FunctionEnvironment()
    ImageConfig: FunctionImageConfig | None = None
    ReservedConcurrentExecutions: Annotated[Int, Field(ge=0)] | None = None
    """Most concurrent invocations of this function (0 stops it). Default: no limit of
    its own, only Settings.MaxConcurrency."""
    ProvisionedConcurrency: Annotated[Int, Field(ge=0)] = 0
    """Workers started ahead of the first invocation and kept warm."""
    Role: (
        Annotated[
            str,
            regex_check(r"arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", "a role ARN"),
        ]
        | None
    ) = None
    """The execution role reported to the function. Default:
    ``arn:aws:iam::<AccountId>:role/pumphouse``."""
    Description: Annotated[str, Field(max_length=256)] = ""
    Layers: Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=5)] = []
    """Layer directories (relative to the configuration file), in order, laid out as
    Lambda extracts a layer into ``/opt``: ``python/`` and
    ``python/lib/python3.X/site-packages/`` go on ``sys.path`` after the function's code,
    ``nodejs/node_modules`` on ``NODE_PATH``, ``bin/`` on ``PATH``, ``lib/`` on
    ``LD_LIBRARY_PATH``. Up to 5, as in Lambda."""

    _base_dir: Path | None = PrivateAttr(default=None)

    @property
    def code_path(self) -> Path:
        """``CodeUri`` resolved against the configuration file's directory."""
        return self._resolved(self.CodeUri)

    def _resolved(self, path: str) -> Path:
        base = self._base_dir if self._base_dir is not None else Path.cwd()
        return (base / path).resolve()

    @property
    def layer_paths(self) -> list[Path]:
        """``Layers`` resolved against the configuration file's directory."""
        return [self._resolved(layer) for layer in self.Layers]

    def role_arn(self, settings: Settings) -> str:
        return self.Role if self.Role is not None else settings.role_arn()

    def to_spec(self, name: str, settings: Settings) -> FunctionSpec:
        """The runtime's view of this function."""
        from pumphouse.runtime import FunctionSpec

        image = self.ImageConfig or FunctionImageConfig()
        command = tuple(image.Command or ())
        return FunctionSpec(
            name=name,
            handler=self.Handler or (command[0] if command else ""),
            entry_point=tuple(image.EntryPoint or ()),
            command=command,
            working_directory=(
                None if image.WorkingDirectory is None else self._resolved(image.WorkingDirectory)
            ),
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
            layers=tuple(self.layer_paths),
        )


# ---------------------------------------------------------------------------------------
# Event source mappings


# Aliases: EventSourceMapping has fields named like these classes.
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
    Tables: dict[str, dict[str, Any]] | None = None
    """DynamoDB table name → ``KeySchema``, ``AttributeDefinitions`` and
    ``StreamViewType`` (default: a string hash key ``id``, ``NEW_AND_OLD_IMAGES``)."""
    SnsTopics: list[str] | None = None
    """SNS topics to create."""
    Buckets: list[str] | None = None
    """S3 buckets to create."""
    Secrets: dict[str, str] | None = None
    """Secrets Manager secret name → its secret string."""


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
