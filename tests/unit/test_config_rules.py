"""Every configuration rule (docs/behaviour.md §1 and the cross-field rules), valid and invalid,
with the exact path and message of each problem."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from pumphouse.config import Config, parse_config
from pumphouse.errors import ConfigError

ACCOUNT = "000000000000"
SQS = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders"
FIFO = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders.fifo"
KINESIS = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/clicks"
DDB = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/orders/stream/2024-01-01T00:00:00.000"
MSK = f"arn:aws:kafka:us-east-1:{ACCOUNT}:cluster/main/0d3b6ad4-1"
DLQ = f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq"
FIFO_DLQ = f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq.fifo"
SNS = f"arn:aws:sns:us-east-1:{ACCOUNT}:failures"
S3 = "arn:aws:s3:::failures"
P = "EventSourceMappings[0]"


def sqs(**extra: Any) -> dict[str, Any]:
    return {"FunctionName": "f", "EventSourceArn": SQS, **extra}


def fifo(**extra: Any) -> dict[str, Any]:
    return {"FunctionName": "f", "EventSourceArn": FIFO, **extra}


def kinesis(**extra: Any) -> dict[str, Any]:
    return {"FunctionName": "f", "EventSourceArn": KINESIS, "StartingPosition": "LATEST", **extra}


def ddb(**extra: Any) -> dict[str, Any]:
    return {"FunctionName": "f", "EventSourceArn": DDB, "StartingPosition": "LATEST", **extra}


def kafka(**extra: Any) -> dict[str, Any]:
    mapping = {
        "FunctionName": "f",
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k1:9092"]}},
        "Topics": ["orders"],
        "StartingPosition": "TRIM_HORIZON",
    }
    mapping.update(extra)
    return mapping


def msk(**extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": "f",
        "EventSourceArn": MSK,
        "Topics": ["orders"],
        "StartingPosition": "LATEST",
        **extra,
    }


def document(
    *mappings: dict[str, Any],
    settings: dict[str, Any] | None = None,
    functions: dict[str, Any] | None = None,
) -> str:
    data: dict[str, Any] = {}
    if settings is not None:
        data["Settings"] = settings
    data["Functions"] = functions if functions is not None else {"f": {"Handler": "app.handler"}}
    data["EventSourceMappings"] = list(mappings)
    return yaml.safe_dump(data, sort_keys=False)


def load(*mappings: dict[str, Any], **kwargs: Any) -> Config:
    return parse_config(document(*mappings, **kwargs), environ={})


def problems(*mappings: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(*mappings, **kwargs)
    return info.value.problems


def only_problem(*mappings: dict[str, Any], **kwargs: Any) -> str:
    found = problems(*mappings, **kwargs)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------------------------
# BatchSize and the batching window


def test_sqs_batch_over_10_needs_a_window_with_aws_message() -> None:
    assert only_problem(sqs(BatchSize=11)) == (
        f"{P}.MaximumBatchingWindowInSeconds: Maximum batch window in seconds must be "
        "greater than 0 if maximum batch size is greater than 10"
    )
    assert only_problem(sqs(BatchSize=11, MaximumBatchingWindowInSeconds=0)).startswith(
        f"{P}.MaximumBatchingWindowInSeconds: Maximum batch window in seconds must be"
    )


def test_sqs_fractional_window_below_one_second_is_refused_with_reason() -> None:
    assert only_problem(sqs(BatchSize=50, MaximumBatchingWindowInSeconds=0.5)).endswith(
        "(pumphouse requires at least 1 second)"
    )


@pytest.mark.parametrize(
    "mapping",
    [
        sqs(BatchSize=10),
        sqs(BatchSize=11, MaximumBatchingWindowInSeconds=1),
        sqs(BatchSize=10000, MaximumBatchingWindowInSeconds=300),
        fifo(BatchSize=10),
        fifo(MaximumBatchingWindowInSeconds=0),
        kinesis(BatchSize=10000),
        ddb(BatchSize=1),
        kafka(BatchSize=10000),
        kafka(MaximumBatchingWindowInSeconds=0),
    ],
)
def test_valid_batch_settings(mapping: dict[str, Any]) -> None:
    load(mapping)


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            sqs(BatchSize=10001, MaximumBatchingWindowInSeconds=1),
            "BatchSize: 10001 is above the maximum 10000",
        ),
        (sqs(BatchSize=0), "BatchSize: 0 is below the minimum 1"),
        (kinesis(BatchSize=20000), "BatchSize: 20000 is above the maximum 10000"),
        (ddb(BatchSize=10001), "BatchSize: 10001 is above the maximum 10000"),
        (kafka(BatchSize=10001), "BatchSize: 10001 is above the maximum 10000"),
        (fifo(BatchSize=11), "BatchSize: 11 is above the maximum 10 for an SQS FIFO queue"),
        (
            fifo(MaximumBatchingWindowInSeconds=1),
            "MaximumBatchingWindowInSeconds: not supported for SQS FIFO queues",
        ),
        (
            kinesis(MaximumBatchingWindowInSeconds=301),
            "MaximumBatchingWindowInSeconds: 301 is above the maximum 300",
        ),
        (
            kinesis(MaximumBatchingWindowInSeconds=-1),
            "MaximumBatchingWindowInSeconds: -1 is below the minimum 0",
        ),
        (kinesis(BatchSize=True), "BatchSize: expected a number, got true"),
        (kinesis(BatchSize="ten"), "BatchSize: expected a whole number, got 'ten'"),
        (kinesis(BatchSize=1.5), "BatchSize: expected a whole number, got 1.5"),
    ],
)
def test_invalid_batch_settings(mapping: dict[str, Any], expected: str) -> None:
    assert only_problem(mapping) == f"{P}.{expected}"


# ---------------------------------------------------------------------------------------
# Starting position


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            kinesis(StartingPosition=None),
            "StartingPosition: required for Kinesis: TRIM_HORIZON, LATEST or AT_TIMESTAMP",
        ),
        (
            ddb(StartingPosition=None),
            "StartingPosition: required for DynamoDB Streams: TRIM_HORIZON or LATEST",
        ),
        (
            kafka(StartingPosition=None),
            "StartingPosition: required for Kafka: TRIM_HORIZON, LATEST or AT_TIMESTAMP",
        ),
        (
            msk(StartingPosition=None),
            "StartingPosition: required for Kafka: TRIM_HORIZON, LATEST or AT_TIMESTAMP",
        ),
        (
            sqs(StartingPosition="LATEST"),
            "StartingPosition: not supported for SQS (a queue has no position to start from)",
        ),
        (
            sqs(StartingPositionTimestamp=1),
            "StartingPositionTimestamp: not supported for SQS (a queue has no position to "
            "start from)",
        ),
        (
            ddb(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=1),
            "StartingPosition: AT_TIMESTAMP is not supported for DynamoDB Streams (use "
            "TRIM_HORIZON or LATEST)",
        ),
        (
            kinesis(StartingPosition="AT_TIMESTAMP"),
            "StartingPositionTimestamp: required when StartingPosition is AT_TIMESTAMP",
        ),
        (
            kinesis(StartingPositionTimestamp=1),
            "StartingPositionTimestamp: only used with StartingPosition AT_TIMESTAMP",
        ),
        (
            kinesis(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp="yesterday"),
            "StartingPositionTimestamp: 'yesterday' is neither epoch seconds nor an "
            "ISO-8601 time (e.g. 2024-05-01T12:00:00Z)",
        ),
        (
            kinesis(StartingPosition="LAST"),
            "StartingPosition: 'LAST' is not one of 'TRIM_HORIZON', 'LATEST' or "
            "'AT_TIMESTAMP' (did you mean 'LATEST'?)",
        ),
    ],
)
def test_starting_position_rules(mapping: dict[str, Any], expected: str) -> None:
    if mapping.get("StartingPosition", "") is None:
        del mapping["StartingPosition"]
    assert only_problem(mapping) == f"{P}.{expected}"


def test_at_timestamp_in_the_future_is_refused() -> None:
    future = time.time() + 3600
    found = only_problem(kinesis(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=future))
    assert found.startswith(f"{P}.StartingPositionTimestamp: ")
    assert found.endswith(" is in the future")


@pytest.mark.parametrize(
    "stamp", [1700000000, 1700000000.25, "2023-11-14T22:13:20Z", "2023-11-14T22:13:20"]
)
@pytest.mark.parametrize("make", [kinesis, kafka, msk])
def test_at_timestamp_accepted_for_kinesis_and_kafka(make: Any, stamp: Any) -> None:
    mapping = load(
        make(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=stamp)
    ).EventSourceMappings[0]
    assert mapping.StartingPositionTimestamp == pytest.approx(1700000000, abs=1)


def test_unquoted_yaml_timestamp_is_read_as_utc() -> None:
    text = document(kinesis(StartingPosition="AT_TIMESTAMP")).replace(
        "StartingPosition: AT_TIMESTAMP",
        "StartingPosition: AT_TIMESTAMP\n  StartingPositionTimestamp: 2023-11-14 22:13:20",
    )
    mapping = parse_config(text, environ={}).EventSourceMappings[0]
    assert mapping.StartingPositionTimestamp == 1700000000.0


# ---------------------------------------------------------------------------------------
# Retries, record age, bisect, destinations


@pytest.mark.parametrize("age", [-1, 60, 3600, 604800])
def test_record_age_valid(age: int) -> None:
    assert (
        load(kinesis(MaximumRecordAgeInSeconds=age))
        .EventSourceMappings[0]
        .MaximumRecordAgeInSeconds
        == age
    )


@pytest.mark.parametrize("age", [0, 1, 59, 604801, -2])
def test_record_age_invalid(age: int) -> None:
    assert only_problem(kinesis(MaximumRecordAgeInSeconds=age)) == (
        f"{P}.MaximumRecordAgeInSeconds: {age} is not allowed: use -1 (no limit) or 60 to "
        "604800 seconds"
    )


@pytest.mark.parametrize("retries", [-1, 0, 10, 10000])
def test_retries_valid(retries: int) -> None:
    load(ddb(MaximumRetryAttempts=retries))


@pytest.mark.parametrize(
    ("retries", "expected"),
    [(-2, "-2 is below the minimum -1"), (10001, "10001 is above the maximum 10000")],
)
def test_retries_invalid(retries: int, expected: str) -> None:
    assert (
        only_problem(ddb(MaximumRetryAttempts=retries)) == f"{P}.MaximumRetryAttempts: {expected}"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("BisectBatchOnFunctionError", True),
        ("BisectBatchOnFunctionError", False),
        ("MaximumRetryAttempts", 2),
        ("MaximumRecordAgeInSeconds", 60),
    ],
)
def test_stream_error_parameters_refused_for_sqs(field: str, value: Any) -> None:
    assert only_problem(sqs(**{field: value})) == (
        f"{P}.{field}: not supported for SQS: a failed message returns to the queue after its "
        "visibility timeout (limit retries with the queue's RedrivePolicy)"
    )


def test_destination_refused_for_sqs() -> None:
    assert only_problem(sqs(DestinationConfig={"OnFailure": {"Destination": DLQ}})) == (
        f"{P}.DestinationConfig: not supported for SQS: failed messages go to the queue's own "
        "dead-letter queue (RedrivePolicy)"
    )


def test_on_success_refused() -> None:
    assert only_problem(kinesis(DestinationConfig={"OnSuccess": {"Destination": DLQ}})) == (
        f"{P}.DestinationConfig.OnSuccess: not supported: event source mappings have "
        "on-failure destinations only"
    )


@pytest.mark.parametrize(
    "mapping",
    [
        kinesis(DestinationConfig={"OnFailure": {"Destination": DLQ}}),
        kinesis(DestinationConfig={"OnFailure": {"Destination": FIFO_DLQ}}),
        ddb(DestinationConfig={"OnFailure": {"Destination": SNS}}),
        ddb(DestinationConfig={"OnFailure": {"Destination": S3}}),
        kafka(DestinationConfig={"OnFailure": {"Destination": "kafka://orders-dlq"}}),
        msk(DestinationConfig={"OnFailure": {"Destination": S3}}),
        kinesis(DestinationConfig={"OnFailure": {}}),
    ],
)
def test_valid_destinations(mapping: dict[str, Any]) -> None:
    load(mapping)


DEST = f"{P}.DestinationConfig.OnFailure.Destination"


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            kinesis(DestinationConfig={"OnFailure": {"Destination": "kafka://dlq"}}),
            f"{DEST}: kafka:// destinations are only supported for Kafka sources",
        ),
        (
            kafka(DestinationConfig={"OnFailure": {"Destination": "kafka://orders"}}),
            f"{DEST}: must not be the source topic 'orders' (failed records would be read again)",
        ),
        (
            ddb(DestinationConfig={"OnFailure": {"Destination": FIFO_DLQ}}),
            f"{DEST}: FIFO destinations are not supported for DynamoDB Streams",
        ),
        (
            ddb(DestinationConfig={"OnFailure": {"Destination": SNS + ".fifo"}}),
            f"{DEST}: FIFO destinations are not supported for DynamoDB Streams",
        ),
        (
            kinesis(
                DestinationConfig={
                    "OnFailure": {"Destination": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:x"}
                }
            ),
            f"{DEST}: 'arn:aws:lambda:us-east-1:{ACCOUNT}:function:x': unsupported destination "
            "service 'lambda' (use an SQS queue, SNS topic or S3 bucket ARN, or kafka://<topic>)",
        ),
        (
            kinesis(DestinationConfig={"OnFailure": {"Destination": "https://example.com"}}),
            f"{DEST}: 'https://example.com' is not a destination: use an SQS queue, SNS topic or "
            "S3 bucket ARN, or kafka://<topic>",
        ),
        (
            kafka(DestinationConfig={"OnFailure": {"Destination": "kafka://bad topic"}}),
            f"{DEST}: 'kafka://bad topic': 'bad topic' is not a valid Kafka topic name (1-249 "
            "letters, digits, '.', '_' or '-')",
        ),
    ],
)
def test_invalid_destinations(mapping: dict[str, Any], expected: str) -> None:
    assert only_problem(mapping) == expected


def test_kafka_infinite_retries_with_destination_capped_at_10() -> None:
    dest = {"OnFailure": {"Destination": "kafka://dlq"}}
    mappings = load(
        kafka(DestinationConfig=dest, UUID="00000000-0000-0000-0000-000000000001"),
        kafka(UUID="00000000-0000-0000-0000-000000000002"),
        kafka(
            DestinationConfig=dest,
            MaximumRetryAttempts=5,
            UUID="00000000-0000-0000-0000-000000000003",
        ),
        kinesis(DestinationConfig={"OnFailure": {"Destination": DLQ}}),
    ).EventSourceMappings
    assert [m.retry_attempts for m in mappings] == [10, -1, 5, -1]
    assert mappings[0].MaximumRetryAttempts is None  # the configured value is kept as is


# ---------------------------------------------------------------------------------------
# Parameters that belong to one kind of source


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            sqs(ParallelizationFactor=2),
            "ParallelizationFactor: only supported for Kinesis and DynamoDB Streams, not SQS",
        ),
        (
            kafka(ParallelizationFactor=2),
            "ParallelizationFactor: only supported for Kinesis and DynamoDB Streams, not Kafka",
        ),
        (
            sqs(TumblingWindowInSeconds=60),
            "TumblingWindowInSeconds: only supported for Kinesis and DynamoDB Streams, not SQS",
        ),
        (
            kafka(TumblingWindowInSeconds=60),
            "TumblingWindowInSeconds: only supported for Kinesis and DynamoDB Streams, not Kafka",
        ),
        (kinesis(ParallelizationFactor=11), "ParallelizationFactor: 11 is above the maximum 10"),
        (kinesis(ParallelizationFactor=0), "ParallelizationFactor: 0 is below the minimum 1"),
        (ddb(TumblingWindowInSeconds=901), "TumblingWindowInSeconds: 901 is above the maximum 900"),
        (
            kinesis(ScalingConfig={"MaximumConcurrency": 5}),
            "ScalingConfig: only supported for SQS, not Kinesis",
        ),
        (
            kafka(ScalingConfig={"MaximumConcurrency": 5}),
            "ScalingConfig: only supported for SQS, not Kafka",
        ),
        (
            sqs(ScalingConfig={"MaximumConcurrency": 1}),
            "ScalingConfig.MaximumConcurrency: 1 is below the minimum 2",
        ),
        (
            sqs(ScalingConfig={"MaximumConcurrency": 1001}),
            "ScalingConfig.MaximumConcurrency: 1001 is above the maximum 1000",
        ),
        (sqs(Topics=["orders"]), "Topics: only supported for Kafka sources, not SQS"),
        (
            kinesis(Kafka={"SessionTimeoutMs": 2000}),
            "Kafka: only supported for Kafka sources, not Kinesis",
        ),
        (
            ddb(SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "g"}),
            "SelfManagedKafkaEventSourceConfig: only supported for Kafka sources, not "
            "DynamoDB Streams",
        ),
        (
            sqs(SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": "env:X"}]),
            "SourceAccessConfigurations: only supported for Kafka sources, not SQS",
        ),
    ],
)
def test_source_specific_parameters(mapping: dict[str, Any], expected: str) -> None:
    assert only_problem(mapping) == f"{P}.{expected}"


@pytest.mark.parametrize(
    "mapping",
    [
        kinesis(ParallelizationFactor=10, TumblingWindowInSeconds=900),
        ddb(ParallelizationFactor=1, TumblingWindowInSeconds=0),
        sqs(ScalingConfig={"MaximumConcurrency": 2}),
        sqs(ScalingConfig={"MaximumConcurrency": 1000}),
        sqs(ScalingConfig={}),
    ],
)
def test_source_specific_parameters_valid(mapping: dict[str, Any]) -> None:
    load(mapping)


# ---------------------------------------------------------------------------------------
# Kafka


def servers(n: int) -> dict[str, Any]:
    return {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [f"k{i}:9092" for i in range(n)]}}


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (kafka(Topics=None), "Topics: required for Kafka: exactly one topic"),
        (msk(Topics=None), "Topics: required for Kafka: exactly one topic"),
        (kafka(Topics=["a", "b"]), "Topics: 2 topics given; a Kafka mapping reads exactly one"),
        (kafka(Topics=[]), "Topics: needs at least 1 item(s), got 0"),
        (
            kafka(Topics=["no spaces"]),
            "Topics[0]: 'no spaces' is not a valid Kafka topic name (1-249 letters, digits, "
            "'.', '_' or '-')",
        ),
        (
            kafka(SelfManagedEventSource=servers(0)),
            "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS: needs at least 1 "
            "item(s), got 0",
        ),
        (
            kafka(SelfManagedEventSource=servers(11)),
            "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS: has 11 items, above "
            "the maximum 10",
        ),
        (
            kafka(SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["kafka"]}}),
            "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS[0]: 'kafka' is not host:port",
        ),
        (
            kafka(
                SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["kafka:99999"]}}
            ),
            "SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS[0]: 'kafka:99999': "
            "the port must be between 1 and 65535",
        ),
        (
            kafka(SelfManagedEventSource={"Endpoints": {"BOOTSTRAP": ["k:1"]}}),
            "SelfManagedEventSource.Endpoints.BOOTSTRAP: unknown key (did you mean "
            "'KAFKA_BOOTSTRAP_SERVERS'?)",
        ),
        (
            kafka(SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": ""}),
            "SelfManagedKafkaEventSourceConfig.ConsumerGroupId: must not be empty",
        ),
        (
            kafka(SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "g" * 201}),
            "SelfManagedKafkaEventSourceConfig.ConsumerGroupId: is 201 characters long, "
            "above the maximum 200",
        ),
        (
            kafka(AmazonManagedKafkaEventSourceConfig={"ConsumerGroupId": "g"}),
            "AmazonManagedKafkaEventSourceConfig: only for Amazon MSK sources; use "
            "SelfManagedKafkaEventSourceConfig",
        ),
        (
            msk(SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "g"}),
            "SelfManagedKafkaEventSourceConfig: only for SelfManagedEventSource; use "
            "AmazonManagedKafkaEventSourceConfig for Amazon MSK",
        ),
        (
            kafka(Kafka={"HeartbeatIntervalMs": 20000}),
            "Kafka.HeartbeatIntervalMs: 20000 must be lower than SessionTimeoutMs (10000); "
            "Kafka advises at most a third of it",
        ),
    ],
)
def test_kafka_rules(mapping: dict[str, Any], expected: str) -> None:
    mapping = {k: v for k, v in mapping.items() if v is not None}
    assert only_problem(mapping) == f"{P}.{expected}"


@pytest.mark.parametrize(
    "mapping",
    [
        kafka(SelfManagedEventSource=servers(10)),
        kafka(
            SelfManagedEventSource={
                "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["[::1]:9092", "10.0.0.1:9093"]}
            }
        ),
        kafka(SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "g" * 200}),
        msk(AmazonManagedKafkaEventSourceConfig={"ConsumerGroupId": "g"}),
        kafka(
            Kafka={"SessionTimeoutMs": 2000, "HeartbeatIntervalMs": 300, "RebalanceTimeoutMs": 2000}
        ),
    ],
)
def test_kafka_valid(mapping: dict[str, Any]) -> None:
    load(mapping)


def test_settings_kafka_heartbeat_must_be_below_session() -> None:
    assert only_problem(kafka(), settings={"Kafka": {"SessionTimeoutMs": 2000}}) == (
        "Settings.Kafka.HeartbeatIntervalMs: 3000 must be lower than SessionTimeoutMs (2000); "
        "Kafka advises at most a third of it"
    )
    # A mapping that fixes it for itself is fine; the settings problem stays.
    load(kafka(), settings={"Kafka": {"SessionTimeoutMs": 2000, "HeartbeatIntervalMs": 500}})


@pytest.mark.parametrize(
    "access",
    [
        [{"Type": "BASIC_AUTH", "URI": "env:KAFKA_USER"}],
        [{"Type": "SASL_SCRAM_256_AUTH", "URI": "file:/etc/kafka/scram"}],
        [
            {
                "Type": "SASL_SCRAM_512_AUTH",
                "URI": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:kafka",
            }
        ],
        [
            {"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": "file:certs/client.pem"},
            {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": "file:/etc/ca.pem"},
        ],
    ],
)
def test_source_access_valid(access: list[dict[str, str]]) -> None:
    mapping = load(kafka(SourceAccessConfigurations=access)).EventSourceMappings[0]
    assert mapping.source_access(access[0]["Type"]) == access[0]["URI"]


SAC = f"{P}.SourceAccessConfigurations"


@pytest.mark.parametrize(
    ("access", "expected"),
    [
        (
            [{"Type": "VPC_SUBNET", "URI": "env:X"}],
            f"{SAC}[0].Type: 'VPC_SUBNET' is not one of 'BASIC_AUTH', 'SASL_SCRAM_256_AUTH', "
            "'SASL_SCRAM_512_AUTH', 'CLIENT_CERTIFICATE_TLS_AUTH' or 'SERVER_ROOT_CA_CERTIFICATE'",
        ),
        (
            [{"Type": "BASIC_AUTH", "URI": "https://vault/x"}],
            f"{SAC}[0].URI: 'https://vault/x': expected env:NAME, file:/path or a Secrets Manager "
            "secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)",
        ),
        (
            [{"Type": "BASIC_AUTH", "URI": "env:1X"}],
            f"{SAC}[0].URI: 'env:1X': expected env:NAME with an environment variable name",
        ),
        (
            [{"Type": "BASIC_AUTH", "URI": "env:A"}, {"Type": "BASIC_AUTH", "URI": "env:B"}],
            f"{SAC}[1].Type: BASIC_AUTH given twice",
        ),
        (
            [
                {"Type": "BASIC_AUTH", "URI": "env:A"},
                {"Type": "SASL_SCRAM_512_AUTH", "URI": "env:B"},
            ],
            f"{SAC}[1].Type: SASL_SCRAM_512_AUTH and BASIC_AUTH both given: use one "
            "authentication method",
        ),
        ([{"Type": "BASIC_AUTH"}], f"{SAC}[0].URI: required but missing"),
    ],
)
def test_source_access_invalid(access: list[dict[str, str]], expected: str) -> None:
    assert only_problem(kafka(SourceAccessConfigurations=access)) == expected


# SecurityProtocol and FetchMaxWaitMs (pumphouse extensions)

BASIC = {"Type": "BASIC_AUTH", "URI": "env:KAFKA_USER"}
SCRAM = {"Type": "SASL_SCRAM_512_AUTH", "URI": "env:KAFKA_USER"}
CLIENT_CERT = {"Type": "CLIENT_CERTIFICATE_TLS_AUTH", "URI": "file:/etc/client.pem"}
ROOT_CA = {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": "file:/etc/ca.pem"}
SASL_NAMES = "BASIC_AUTH, SASL_SCRAM_256_AUTH, SASL_SCRAM_512_AUTH"


@pytest.mark.parametrize(
    ("protocol", "access"),
    [
        ("PLAINTEXT", []),
        ("SSL", []),
        ("SSL", [CLIENT_CERT, ROOT_CA]),
        ("SSL", [ROOT_CA]),
        ("SASL_PLAINTEXT", [BASIC]),
        ("SASL_PLAINTEXT", [SCRAM]),
        ("SASL_SSL", [SCRAM]),
        ("SASL_SSL", [BASIC, ROOT_CA]),
    ],
)
def test_security_protocol_valid(protocol: str, access: list[dict[str, str]]) -> None:
    mapping = kafka(Kafka={"SecurityProtocol": protocol})
    if access:
        mapping["SourceAccessConfigurations"] = access
    config = load(mapping)
    merged = config.EventSourceMappings[0].kafka_consumer_settings(config.Settings)
    assert merged.SecurityProtocol == protocol
    # The same from Settings.Kafka.
    del mapping["Kafka"]
    load(mapping, settings={"Kafka": {"SecurityProtocol": protocol}})


def test_security_protocol_defaults_to_derived_and_fetch_wait_to_100() -> None:
    config = load(kafka(SourceAccessConfigurations=[BASIC]))
    merged = config.EventSourceMappings[0].kafka_consumer_settings(config.Settings)
    assert merged.SecurityProtocol is None  # derived at connect time: SASL_SSL here
    assert merged.FetchMaxWaitMs == 100


KSP = f"{P}.Kafka.SecurityProtocol"


@pytest.mark.parametrize(
    ("protocol", "access", "expected"),
    [
        (
            "SASL_PLAINTEXT",
            None,
            f"{KSP}: SASL_PLAINTEXT needs a SASL entry in SourceAccessConfigurations "
            f"({SASL_NAMES})",
        ),
        (
            "SASL_SSL",
            [ROOT_CA],
            f"{KSP}: SASL_SSL needs a SASL entry in SourceAccessConfigurations ({SASL_NAMES})",
        ),
        (
            "PLAINTEXT",
            [BASIC],
            f"{KSP}: PLAINTEXT sends no SASL credentials, but SourceAccessConfigurations[0] is "
            "BASIC_AUTH (use SASL_SSL or SASL_PLAINTEXT)",
        ),
        (
            "SSL",
            [ROOT_CA, SCRAM],
            f"{KSP}: SSL sends no SASL credentials, but SourceAccessConfigurations[1] is "
            "SASL_SCRAM_512_AUTH (use SASL_SSL or SASL_PLAINTEXT)",
        ),
        (
            "PLAINTEXT",
            [CLIENT_CERT],
            f"{KSP}: PLAINTEXT does not use TLS, but SourceAccessConfigurations[0] is "
            "CLIENT_CERTIFICATE_TLS_AUTH (use SSL or SASL_SSL)",
        ),
        (
            "SASL_PLAINTEXT",
            [SCRAM, ROOT_CA],
            f"{KSP}: SASL_PLAINTEXT does not use TLS, but SourceAccessConfigurations[1] is "
            "SERVER_ROOT_CA_CERTIFICATE (use SSL or SASL_SSL)",
        ),
        (
            "TLS",
            None,
            f"{KSP}: 'TLS' is not one of 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'",
        ),
    ],
)
def test_mapping_security_protocol_must_fit_the_access_configurations(
    protocol: str, access: list[dict[str, str]] | None, expected: str
) -> None:
    mapping = kafka(Kafka={"SecurityProtocol": protocol})
    if access is not None:
        mapping["SourceAccessConfigurations"] = access
    assert only_problem(mapping) == expected


@pytest.mark.parametrize(
    ("protocol", "access", "expected"),
    [
        (
            "SASL_PLAINTEXT",
            None,
            f"{SAC}: Settings.Kafka.SecurityProtocol is SASL_PLAINTEXT, which needs a SASL "
            f"entry in SourceAccessConfigurations ({SASL_NAMES}); or set this mapping's "
            "Kafka.SecurityProtocol",
        ),
        (
            "PLAINTEXT",
            [BASIC],
            f"{SAC}[0].Type: BASIC_AUTH needs SecurityProtocol SASL_SSL or SASL_PLAINTEXT, but "
            "Settings.Kafka.SecurityProtocol is PLAINTEXT",
        ),
        (
            "SASL_PLAINTEXT",
            [BASIC, ROOT_CA],
            f"{SAC}[1].Type: SERVER_ROOT_CA_CERTIFICATE needs SecurityProtocol SSL or SASL_SSL, "
            "but Settings.Kafka.SecurityProtocol is SASL_PLAINTEXT",
        ),
    ],
)
def test_settings_security_protocol_is_checked_against_each_mapping(
    protocol: str, access: list[dict[str, str]] | None, expected: str
) -> None:
    mapping = kafka() if access is None else kafka(SourceAccessConfigurations=access)
    assert only_problem(mapping, settings={"Kafka": {"SecurityProtocol": protocol}}) == expected
    # The mapping's own protocol overrides the settings' one.
    fixed = "SASL_SSL" if access else "PLAINTEXT"
    load(
        {**mapping, "Kafka": {"SecurityProtocol": fixed}},
        settings={"Kafka": {"SecurityProtocol": protocol}},
    )


def test_sasl_plaintext_is_refused_for_amazon_msk() -> None:
    assert (
        only_problem(
            msk(SourceAccessConfigurations=[SCRAM], Kafka={"SecurityProtocol": "SASL_PLAINTEXT"})
        )
        == f"{KSP}: Amazon MSK offers SASL only over TLS (use SASL_SSL)"
    )
    assert only_problem(
        msk(SourceAccessConfigurations=[SCRAM]),
        settings={"Kafka": {"SecurityProtocol": "SASL_PLAINTEXT"}},
    ) == (
        f"{P}.EventSourceArn: Amazon MSK offers SASL only over TLS (use SASL_SSL), but "
        "Settings.Kafka.SecurityProtocol is SASL_PLAINTEXT"
    )


@pytest.mark.parametrize(
    ("where", "kafka_settings", "expected"),
    [
        (
            "settings",
            {"FetchMaxWaitMs": 0},
            "Settings.Kafka.FetchMaxWaitMs: 0 is below the minimum 1",
        ),
        ("mapping", {"FetchMaxWaitMs": 0}, f"{P}.Kafka.FetchMaxWaitMs: 0 is below the minimum 1"),
        (
            "settings",
            {"FetchMaxWaitMs": 40000},
            "Settings.Kafka.FetchMaxWaitMs: 40000 must be lower than RequestTimeoutMs (40000): "
            "a fetch waiting that long would time out",
        ),
        (
            "mapping",
            {"FetchMaxWaitMs": 5000, "RequestTimeoutMs": 5000},
            f"{P}.Kafka.FetchMaxWaitMs: 5000 must be lower than RequestTimeoutMs (5000): a "
            "fetch waiting that long would time out",
        ),
        (
            "mapping",
            {"RequestTimeoutMs": 50},
            f"{P}.Kafka.FetchMaxWaitMs: 100 must be lower than RequestTimeoutMs (50): a fetch "
            "waiting that long would time out",
        ),
    ],
)
def test_fetch_max_wait_rules(where: str, kafka_settings: dict[str, Any], expected: str) -> None:
    if where == "settings":
        assert only_problem(kafka(), settings={"Kafka": kafka_settings}) == expected
    else:
        assert only_problem(kafka(Kafka=kafka_settings)) == expected


def test_fetch_max_wait_valid_and_overridable() -> None:
    config = load(
        kafka(Kafka={"FetchMaxWaitMs": 250}),
        kafka(Topics=["other"], SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "g2"}),
        settings={"Kafka": {"FetchMaxWaitMs": 1000, "RequestTimeoutMs": 30000}},
    )
    waits = [
        m.kafka_consumer_settings(config.Settings).FetchMaxWaitMs
        for m in config.EventSourceMappings
    ]
    assert waits == [250, 1000]


# ---------------------------------------------------------------------------------------
# Filters and response types


def test_filters_up_to_the_settings_maximum() -> None:
    pattern = {"Pattern": '{"body": {"a": [1]}}'}
    load(sqs(FilterCriteria={"Filters": [pattern] * 5}))
    assert only_problem(sqs(FilterCriteria={"Filters": [pattern] * 6})) == (
        f"{P}.FilterCriteria.Filters: 6 filters is above the maximum 5 "
        "(Settings.MaxFiltersPerMapping)"
    )
    load(sqs(FilterCriteria={"Filters": [pattern] * 10}), settings={"MaxFiltersPerMapping": 10})
    assert only_problem(sqs(), settings={"MaxFiltersPerMapping": 11}) == (
        "Settings.MaxFiltersPerMapping: 11 is above the maximum 10"
    )


def test_filter_pattern_length_limit() -> None:
    long = '{"body": {"a": ["' + "x" * 4100 + '"]}}'
    assert only_problem(sqs(FilterCriteria={"Filters": [{"Pattern": long}]})) == (
        f"{P}.FilterCriteria.Filters[0].Pattern: is {len(long)} characters long, above the "
        "maximum 4096"
    )


def test_invalid_filter_pattern_reported_at_its_index() -> None:
    filters = [
        {"Pattern": '{"body": {"a": [1]}}'},
        {"Pattern": "{not json"},
        {"Pattern": '{"a": 5}'},
    ]
    found = problems(kinesis(FilterCriteria={"Filters": filters}))
    assert len(found) == 2
    assert found[0].startswith(
        f"{P}.FilterCriteria.Filters[1].Pattern: Invalid filter pattern definition."
    )
    assert found[1].startswith(
        f"{P}.FilterCriteria.Filters[2].Pattern: Invalid filter pattern definition."
    )


@pytest.mark.parametrize("types", [[], ["ReportBatchItemFailures"]])
def test_function_response_types_valid(types: list[str]) -> None:
    mapping = load(sqs(FunctionResponseTypes=types)).EventSourceMappings[0]
    assert mapping.report_batch_item_failures is bool(types)


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (
            ["ReportBatchItemFailures", "ReportBatchItemFailures"],
            "FunctionResponseTypes: must be [] or [ReportBatchItemFailures]",
        ),
        (
            ["ReportBatchItemFailure"],
            "FunctionResponseTypes[0]: 'ReportBatchItemFailure' is not one of "
            "'ReportBatchItemFailures' (did you mean 'ReportBatchItemFailures'?)",
        ),
    ],
)
def test_function_response_types_invalid(types: list[str], expected: str) -> None:
    assert only_problem(sqs(FunctionResponseTypes=types)) == f"{P}.{expected}"


# ---------------------------------------------------------------------------------------
# Event sources, function references, UUIDs


def test_exactly_one_event_source() -> None:
    both = kafka(EventSourceArn=MSK)
    assert (
        only_problem(both) == f"{P}.SelfManagedEventSource: set either EventSourceArn or "
        "SelfManagedEventSource, not both"
    )
    assert only_problem({"FunctionName": "f"}) == (
        f"{P}: no event source: set EventSourceArn (SQS, Kinesis, DynamoDB Streams, Amazon MSK) "
        "or SelfManagedEventSource (Kafka)"
    )


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (
            f"arn:aws:mq:us-east-1:{ACCOUNT}:broker:b",
            "unsupported event source service 'mq': pumphouse reads SQS queues, Kinesis streams, "
            "DynamoDB streams and Amazon MSK clusters (use SelfManagedEventSource for other "
            "Kafka clusters)",
        ),
        (
            f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/orders",
            f"'arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/orders' is a DynamoDB table ARN; use the "
            "table's stream ARN (…:table/<name>/stream/<label>)",
        ),
        (
            "orders",
            "'orders' is not an ARN (expected arn:aws:<service>:<region>:<account>:<resource>)",
        ),
        (
            "arn:aws:sqs:us-east-1:123:orders",
            "'arn:aws:sqs:us-east-1:123:orders': the account must be 12 digits, got '123'",
        ),
        (
            f"arn:aws:kinesis:us-east-1:{ACCOUNT}:clicks",
            f"'arn:aws:kinesis:us-east-1:{ACCOUNT}:clicks': a Kinesis ARN must name a "
            "stream (…:stream/<name>) "
            "or a stream consumer (…:stream/<name>/consumer/<consumer>:<timestamp>)",
        ),
    ],
)
def test_invalid_event_source_arns(arn: str, expected: str) -> None:
    assert (
        only_problem({"FunctionName": "f", "EventSourceArn": arn})
        == f"{P}.EventSourceArn: {expected}"
    )


def test_kinesis_consumer_arn_is_accepted_and_flagged() -> None:
    arn = f"{KINESIS}/consumer/fanout:1700000000"
    mapping = load(kinesis(EventSourceArn=arn)).EventSourceMappings[0]
    assert mapping.is_kinesis_consumer_arn
    assert mapping.resource_name == "clicks"
    assert mapping.stream_arn == KINESIS
    assert not load(kinesis()).EventSourceMappings[0].is_kinesis_consumer_arn


def test_function_name_must_name_a_configured_function() -> None:
    functions = {"orders": {"Handler": "app.handler"}, "payments": {"Handler": "app.handler"}}
    load(sqs(FunctionName="orders"), functions=functions)
    load(
        sqs(FunctionName=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders"), functions=functions
    )
    assert only_problem(sqs(FunctionName="order"), functions=functions) == (
        f"{P}.FunctionName: no function 'order' in Functions (did you mean 'orders'?)"
    )
    assert only_problem(sqs(FunctionName="zzz"), functions=functions) == (
        f"{P}.FunctionName: no function 'zzz' in Functions (configured: orders, payments)"
    )
    assert (
        only_problem(
            sqs(FunctionName=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:other"),
            functions=functions,
        )
        == f"{P}.FunctionName: no function 'other' in Functions (configured: orders, payments)"
    )
    assert only_problem(
        sqs(FunctionName=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders:prod"),
        functions=functions,
    ) == (
        f"{P}.FunctionName: 'arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders:prod' is "
        "not a function "
        "name or an unqualified Lambda function ARN "
        "(arn:aws:lambda:<region>:<account>:function:<name>)"
    )


def test_duplicate_derived_uuid_is_an_error() -> None:
    found = only_problem(sqs(), sqs(BatchSize=5))
    assert found.startswith(
        "EventSourceMappings[1].UUID: maps the same source to the same function as "
        "EventSourceMappings[0] (derived UUID "
    )
    assert found.endswith("); remove one, or give each its own UUID")


def test_duplicate_explicit_uuid_is_an_error_and_distinct_ones_allowed() -> None:
    same = "0b4f2f4e-55a3-4bd6-a0a4-62f5a4bd0fd5"
    assert only_problem(sqs(UUID=same), kinesis(UUID=same)) == (
        f"EventSourceMappings[1].UUID: duplicate UUID {same}: EventSourceMappings[0] has it too"
    )
    config = load(sqs(UUID=same), sqs(UUID="0b4f2f4e-55a3-4bd6-a0a4-62f5a4bd0fd6"))
    assert [m.uuid for m in config.EventSourceMappings] == [
        same,
        "0b4f2f4e-55a3-4bd6-a0a4-62f5a4bd0fd6",
    ]
    assert only_problem(sqs(UUID="not-a-uuid")) == f"{P}.UUID: 'not-a-uuid' is not a UUID"


# ---------------------------------------------------------------------------------------
# Functions and settings


F = "Functions.f"


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (
            {"Handler": "handler"},
            "Handler: 'handler' is not a handler: use the Lambda form module.function (e.g. "
            "app.handler or package/module.handler)",
        ),
        ({}, "Handler: required but missing (or ImageConfig.Command)"),
        ({"Handler": "a.b", "MemorySize": 127}, "MemorySize: 127 is below the minimum 128"),
        ({"Handler": "a.b", "MemorySize": 10241}, "MemorySize: 10241 is above the maximum 10240"),
        ({"Handler": "a.b", "Timeout": 0}, "Timeout: 0 is below the minimum 1"),
        ({"Handler": "a.b", "Timeout": 901}, "Timeout: 901 is above the maximum 900"),
        (
            {"Handler": "a.b", "Runtime": "ruby3.3"},
            "Runtime: 'ruby3.3' is not a supported runtime (python3.X, nodejsNN.x, "
            "provided.al2023, provided.al2, provided)",
        ),
        (
            {"Handler": "a.b", "ReservedConcurrentExecutions": -1},
            "ReservedConcurrentExecutions: -1 is below the minimum 0",
        ),
        (
            {"Handler": "a.b", "ProvisionedConcurrency": -1},
            "ProvisionedConcurrency: -1 is below the minimum 0",
        ),
        (
            {"Handler": "a.b", "ReservedConcurrentExecutions": 2, "ProvisionedConcurrency": 3},
            "ProvisionedConcurrency: 3 is above ReservedConcurrentExecutions (2)",
        ),
        ({"Handler": "a.b", "Role": "admin"}, "Role: 'admin' is not a role ARN"),
        (
            {"Handler": "a.b", "Environment": {"Variables": {"AWS_REGION": "x"}}},
            "Environment.Variables.AWS_REGION: AWS_REGION is reserved: the runtime sets it",
        ),
        (
            {"Handler": "a.b", "Environment": {"Variables": {"1X": "x"}}},
            "Environment.Variables.1X: '1X' is not a valid environment variable name (a "
            "letter, then letters, digits or '_')",
        ),
        (
            {"Handler": "a.b", "Environment": {"Variables": {"DEBUG": True}}},
            "Environment.Variables.DEBUG: expected a string, got true (quote it: 'true')",
        ),
        (
            {"Handler": "a.b", "Description": "x" * 257},
            "Description: is 257 characters long, above the maximum 256",
        ),
        (
            {"Handler": "a.b", "ImageConfig": {"EntryPoint": []}},
            "ImageConfig.EntryPoint: must not be empty when set",
        ),
        (
            {"ImageConfig": {"EntryPoint": ["python3", ""], "Command": ["app.handler"]}},
            "ImageConfig.EntryPoint[1]: must not be empty",
        ),
        (
            {"ImageConfig": {"WorkingDirectory": "/var/task"}},
            "ImageConfig.Command: a python3.11 function needs a handler: Command: "
            "[module.function] (or Handler, or an EntryPoint that runs its own)",
        ),
        (
            {"Handler": "a.b", "ImageConfig": {"EntryPoint": ["x"], "Commnd": ["a.b"]}},
            "ImageConfig.Commnd: unknown key (did you mean 'Command'?)",
        ),
    ],
)
def test_function_rules(function: dict[str, Any], expected: str) -> None:
    assert only_problem(sqs(), functions={"f": function}) == f"{F}.{expected}"


@pytest.mark.parametrize(
    "function",
    [
        {"Handler": "app.handler"},
        {"Handler": "pkg.mod.handler"},
        {"Handler": "pkg/mod.handler", "MemorySize": 10240, "Timeout": 900},
        {"Handler": "a.b", "ReservedConcurrentExecutions": 0},
        {"Handler": "a.b", "ReservedConcurrentExecutions": 3, "ProvisionedConcurrency": 3},
        {"Handler": "a.b", "Role": f"arn:aws:iam::{ACCOUNT}:role/service-role/x"},
        {
            "Handler": "a.b",
            "Environment": {"Variables": {"PORT": 8080, "AWS_ACCESS_KEY_ID": "test"}},
        },
    ],
)
def test_function_valid(function: dict[str, Any]) -> None:
    load(sqs(), functions={"f": function})


def test_function_name_key_rules() -> None:
    assert only_problem(functions={"bad name": {"Handler": "a.b"}}) == (
        "Functions.bad name: 'bad name' is not a valid function name (1-64 letters, digits, "
        "'-' or '_')"
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"StateStore": "postgres://db"},
            "StateStore: 'postgres://db' is not a state store URL: use "
            "redis://host:port/db, rediss://... or sqlite:///path/to/state.db",
        ),
        (
            {"StateStore": "sqlite://state.db"},
            "StateStore: 'sqlite://state.db': expected sqlite:///relative/path.db or sqlite:////absolute/path.db",
        ),
        ({"StateStore": "redis://"}, "StateStore: 'redis://': expected redis://host[:port][/db]"),
        ({"MaxConcurrency": 0}, "MaxConcurrency: 0 is below the minimum 1"),
        ({"MetricsAddress": "9400"}, "MetricsAddress: '9400' is not host:port"),
        ({"AccountId": "12345"}, "AccountId: '12345' is not a 12-digit account id"),
        (
            {"AccountId": 0},
            "AccountId: quote the account id in YAML ('000000000000'): an unquoted number "
            "loses its leading zeros",
        ),
        ({"ShutdownTimeoutSeconds": 0}, "ShutdownTimeoutSeconds: 0 must be greater than 0"),
        ({"LeaseDurationSeconds": -1}, "LeaseDurationSeconds: -1 must be greater than 0"),
        ({"LogFormat": "xml"}, "LogFormat: 'xml' is not one of 'json', 'console' or 'auto'"),
        (
            {"PassEnvironment": ["HOME", "NOT-A-NAME"]},
            "PassEnvironment[1]: 'NOT-A-NAME' is not a variable name (or PREFIX*)",
        ),
        (
            {"Endpoints": {"Sqs": "localhost:5000"}},
            "Endpoints.Sqs: 'localhost:5000' is not an http:// or https:// URL",
        ),
        ({"Endpoints": {"SQS": "http://x"}}, "Endpoints.SQS: unknown key (did you mean 'Sqs'?)"),
        ({"Kafka": {"SessionTimeoutMs": 0}}, "Kafka.SessionTimeoutMs: 0 is below the minimum 1"),
    ],
)
def test_settings_rules(settings: dict[str, Any], expected: str) -> None:
    assert only_problem(settings=settings) == f"Settings.{expected}"


def test_settings_valid_and_case_insensitive_log_level() -> None:
    settings = load(
        settings={
            "StateStore": "rediss://user:pw@redis.example:6380/2",
            "LogLevel": "debug",
            "LogFormat": "JSON",
            "MetricsAddress": "[::]:0",
            "Endpoints": {"Sqs": "http://localhost:5000", "Kafka": "https://kafka.local"},
        }
    ).Settings
    assert settings.LogLevel == "DEBUG"
    assert settings.LogFormat == "json"
    assert (settings.metrics_host, settings.metrics_port) == ("::", 0)
    assert settings.endpoint_urls() == {
        "Sqs": "http://localhost:5000",
        "Kafka": "https://kafka.local",
    }
    assert settings.state_store_scheme == "rediss"
    assert settings.sqlite_path is None


@pytest.mark.parametrize(
    "function",
    [
        {"Handler": "index.handler", "Runtime": "nodejs20.x"},
        {"Handler": "function.handler", "Runtime": "provided.al2023"},
        {"ImageConfig": {"EntryPoint": ["python3", "-m", "awslambdaric"], "Command": ["app.h"]}},
        {"ImageConfig": {"Command": ["app.handler"]}},
        {"ImageConfig": {"EntryPoint": ["./main"]}},
    ],
)
def test_function_runtimes_accepted(function: dict[str, Any]) -> None:
    config = load(sqs(), functions={"f": function})
    spec = config.function_spec("f")
    image = function.get("ImageConfig", {})
    assert spec.runtime == function.get("Runtime", "python3.11")
    assert spec.entry_point == tuple(image.get("EntryPoint", ()))
    assert spec.command == tuple(image.get("Command", ()))
    assert spec.handler == function.get("Handler", (image.get("Command") or [""])[0])
