"""The nested objects of ``Settings``: log level and format, the endpoints of AWS-compatible
services, and the Kafka consumer settings (``Settings.Kafka`` for every Kafka mapping,
and a mapping's own ``Kafka`` overrides of them, a pumphouse extension)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import Field

from pumphouse.config.fields import ByteCount, ConfigModel, EndpointUrl, Milliseconds


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


#: FetchMaxWaitMs when not configured (aiokafka: 500); docs/kafka.md weighs the choice.
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
    Default 100 (aiokafka's is 500). Apache Kafka answers a waiting fetch when data
    arrives, so there the wait only sets how often an idle consumer asks (500 is cheaper);
    tansu, the broker of ``pumphouse dev``, looks for new data only at half the wait, then
    three quarters, ..., so a record can arrive up to half the wait late. Must be lower
    than RequestTimeoutMs (the fetch request would time out)."""
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
