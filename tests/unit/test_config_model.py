"""The resolved (snake_case) values the rest of pumphouse reads from a configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from pumphouse.config import (
    Config,
    DestinationType,
    EventSourceMapping,
    Function,
    Settings,
    SourceType,
    parse_config,
)

ACCOUNT = "123456789012"
SQS = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:orders"
KINESIS = f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/clicks"
DDB = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders/stream/2024-01-01T00:00:00.000"
MSK = f"arn:aws:kafka:eu-west-1:{ACCOUNT}:cluster/main/abc-1"
SELF_MANAGED = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k2:9092", "k1:9092"]}}


def config_of(*mappings: dict[str, Any], settings: dict[str, Any] | None = None) -> Config:
    data: dict[str, Any] = {
        "Settings": settings or {},
        "Functions": {"orders": {"Handler": "app.handler"}, "clicks": {"Handler": "app.handler"}},
        "EventSourceMappings": list(mappings),
    }
    return parse_config(yaml.safe_dump(data, sort_keys=False), environ={})


def one(mapping: dict[str, Any], **kwargs: Any) -> EventSourceMapping:
    return config_of({"FunctionName": "orders", **mapping}, **kwargs).EventSourceMappings[0]


@pytest.mark.parametrize(
    ("mapping", "source_type", "resource", "batch", "window"),
    [
        ({"EventSourceArn": SQS}, SourceType.SQS, "orders", 10, 0.0),
        ({"EventSourceArn": SQS + ".fifo"}, SourceType.SQS, "orders.fifo", 10, 0.0),
        (
            {"EventSourceArn": KINESIS, "StartingPosition": "LATEST"},
            SourceType.KINESIS,
            "clicks",
            100,
            0.0,
        ),
        (
            {"EventSourceArn": DDB, "StartingPosition": "LATEST"},
            SourceType.DYNAMODB,
            "orders",
            100,
            0.0,
        ),
        (
            {"EventSourceArn": MSK, "Topics": ["t"], "StartingPosition": "LATEST"},
            SourceType.KAFKA,
            "t",
            100,
            0.5,
        ),
        (
            {"SelfManagedEventSource": SELF_MANAGED, "Topics": ["t"], "StartingPosition": "LATEST"},
            SourceType.KAFKA,
            "t",
            100,
            0.5,
        ),
    ],
)
def test_source_type_and_defaults(
    mapping: dict[str, Any], source_type: SourceType, resource: str, batch: int, window: float
) -> None:
    m = one(mapping)
    assert m.source_type is source_type
    assert m.resource_name == resource
    assert m.batch_size == batch
    assert m.batching_window == window
    assert m.parallelization_factor == 1
    assert m.tumbling_window == 0
    assert m.retry_attempts == -1
    assert m.max_record_age is None
    assert m.report_batch_item_failures is False
    assert m.bisect_batch_on_function_error is False
    assert m.on_failure_destination is None
    assert m.filter_patterns == []
    assert m.Enabled is True


def test_resolved_values_follow_the_configured_ones() -> None:
    m = one(
        {
            "EventSourceArn": KINESIS,
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 7,
            "MaximumBatchingWindowInSeconds": 2.5,
            "ParallelizationFactor": 3,
            "TumblingWindowInSeconds": 60,
            "MaximumRetryAttempts": 4,
            "MaximumRecordAgeInSeconds": 120,
            "BisectBatchOnFunctionError": True,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {
                "OnFailure": {"Destination": f"arn:aws:sns:eu-west-1:{ACCOUNT}:f"}
            },
            "FilterCriteria": {"Filters": [{"Pattern": '{"data": {"a": [1]}}'}]},
        }
    )
    assert (m.batch_size, m.batching_window, m.parallelization_factor, m.tumbling_window) == (
        7,
        2.5,
        3,
        60,
    )
    assert (m.retry_attempts, m.max_record_age) == (4, 120)
    assert m.bisect_batch_on_function_error and m.report_batch_item_failures
    assert m.on_failure_destination == f"arn:aws:sns:eu-west-1:{ACCOUNT}:f"
    assert m.on_failure_destination_type is DestinationType.SNS
    assert m.filter_patterns == ['{"data": {"a": [1]}}']
    assert m.starting_position == "TRIM_HORIZON"
    assert m.region == "eu-west-1"
    assert m.account_id == ACCOUNT
    assert m.stream_arn == KINESIS


def test_record_age_minus_one_means_no_limit() -> None:
    assert (
        one(
            {
                "EventSourceArn": KINESIS,
                "StartingPosition": "LATEST",
                "MaximumRecordAgeInSeconds": -1,
            }
        ).max_record_age
        is None
    )


def test_sqs_fifo_and_region_from_arn() -> None:
    m = one({"EventSourceArn": SQS + ".fifo"})
    assert m.is_fifo
    assert not one({"EventSourceArn": SQS}).is_fifo
    assert (m.region, m.account_id) == ("eu-west-1", ACCOUNT)


def test_self_managed_kafka_takes_region_and_account_from_settings() -> None:
    m = one(
        {"SelfManagedEventSource": SELF_MANAGED, "Topics": ["t"], "StartingPosition": "LATEST"},
        settings={"Region": "ap-south-1", "AccountId": "111122223333"},
    )
    assert (m.region, m.account_id) == ("ap-south-1", "111122223333")
    assert m.function_arn == "arn:aws:lambda:ap-south-1:111122223333:function:orders"
    assert m.bootstrap_servers == ["k2:9092", "k1:9092"]
    assert m.topic == "t"
    assert m.is_self_managed_kafka and not m.is_msk


def test_kafka_consumer_group_defaults_to_the_uuid() -> None:
    base = {"SelfManagedEventSource": SELF_MANAGED, "Topics": ["t"], "StartingPosition": "LATEST"}
    assert one(base).consumer_group_id == one(base).uuid
    configured = one({**base, "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "g1"}})
    assert configured.consumer_group_id == "g1"
    msk = one(
        {
            "EventSourceArn": MSK,
            "Topics": ["t"],
            "StartingPosition": "LATEST",
            "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "g2"},
        }
    )
    assert msk.consumer_group_id == "g2"
    assert msk.is_msk and msk.bootstrap_servers == []
    assert one({"EventSourceArn": SQS}).consumer_group_id is None


def test_uuid_is_stable_and_derived_from_function_and_source() -> None:
    a = one({"EventSourceArn": SQS})
    assert a.uuid == one({"EventSourceArn": SQS, "BatchSize": 5}).uuid  # settings don't matter
    assert (
        a.uuid
        == one(
            {
                "EventSourceArn": SQS,
                "FunctionName": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:orders",
            }
        ).uuid
    )
    assert a.uuid != one({"EventSourceArn": SQS + "2"}).uuid
    assert (
        a.uuid
        != config_of({"FunctionName": "clicks", "EventSourceArn": SQS}).EventSourceMappings[0].uuid
    )
    kafka = {"SelfManagedEventSource": SELF_MANAGED, "Topics": ["t"], "StartingPosition": "LATEST"}
    other_brokers = {
        **kafka,
        "SelfManagedEventSource": {
            "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k1:9092", "k3:9092", "k4:9092"]}
        },
    }
    # The broker list does not matter: editing it must keep the consumer group (offsets).
    assert one(kafka).uuid == one(other_brokers).uuid
    assert one(kafka).uuid != one({**kafka, "Topics": ["u"]}).uuid
    given = "4b9b6f0e-1c1a-4bd6-8f7e-5b2c2e9d1a00"
    assert one({"EventSourceArn": SQS, "UUID": given}).uuid == given


def test_labels_are_short_and_unique() -> None:
    config = config_of(
        {"FunctionName": "orders", "EventSourceArn": SQS},
        {"FunctionName": "orders", "EventSourceArn": KINESIS, "StartingPosition": "LATEST"},
        {"FunctionName": "clicks", "EventSourceArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders"},
        {"FunctionName": "clicks", "EventSourceArn": f"arn:aws:sqs:us-east-2:{ACCOUNT}:orders"},
    )
    labels = [m.label for m in config.EventSourceMappings]
    assert labels[:2] == ["orders/sqs:orders", "orders/kinesis:clicks"]
    m2, m3 = config.EventSourceMappings[2:]
    assert labels[2:] == [f"clicks/sqs:orders#{m2.uuid[:8]}", f"clicks/sqs:orders#{m3.uuid[:8]}"]
    assert len(set(labels)) == len(labels)


def test_compiled_filters_are_cached_and_match() -> None:
    m = one(
        {
            "EventSourceArn": SQS,
            "FilterCriteria": {"Filters": [{"Pattern": '{"body": {"kind": ["order"]}}'}]},
        }
    )
    filters = m.compiled_filters()
    assert filters is m.compiled_filters()
    assert filters.matches({"body": '{"kind": "order"}'})
    assert not filters.matches({"body": '{"kind": "refund"}'})
    assert one({"EventSourceArn": SQS}).compiled_filters().is_empty


def test_kafka_consumer_settings_merge_overrides() -> None:
    config = config_of(
        {
            "FunctionName": "orders",
            "SelfManagedEventSource": SELF_MANAGED,
            "Topics": ["t"],
            "StartingPosition": "LATEST",
            "Kafka": {"SessionTimeoutMs": 2000, "HeartbeatIntervalMs": 300},
        },
        settings={"Kafka": {"ClientId": "pumphouse", "RebalanceTimeoutMs": 4000}},
    )
    merged = config.EventSourceMappings[0].kafka_consumer_settings(config.Settings)
    assert merged.aiokafka_options() == {
        "session_timeout_ms": 2000,
        "rebalance_timeout_ms": 4000,
        "heartbeat_interval_ms": 300,
        "max_poll_interval_ms": 300000,
        "fetch_max_bytes": 52428800,
        "max_partition_fetch_bytes": 1048576,
        "client_id": "pumphouse",
        "request_timeout_ms": 40000,
    }
    assert Settings().Kafka.aiokafka_options()["session_timeout_ms"] == 10000
    assert "client_id" not in Settings().Kafka.aiokafka_options()


def test_settings_defaults() -> None:
    settings = Settings()
    assert settings.StateStore == "sqlite:///./.pumphouse/state.db"
    assert settings.sqlite_path == Path("./.pumphouse/state.db")
    assert settings.max_concurrency == 4 * (os.cpu_count() or 1)
    assert Settings(MaxConcurrency=3).max_concurrency == 3
    assert (settings.Region, settings.AccountId) == ("us-east-1", "000000000000")
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9400)
    assert settings.ShutdownTimeoutSeconds == 30
    assert settings.WorkerIdleSeconds == 300
    assert settings.LeaseDurationSeconds == 10
    assert settings.PassEnvironment is None
    assert settings.MaxFiltersPerMapping == 5
    assert settings.endpoint_urls() == {}
    assert (settings.LogLevel, settings.LogFormat) == ("INFO", "auto")


def test_function_defaults_role_and_function_for() -> None:
    config = config_of(
        {"FunctionName": "orders", "EventSourceArn": SQS}, settings={"AccountId": ACCOUNT}
    )
    fn = config.function_for(config.EventSourceMappings[0])
    assert fn is config.Functions["orders"]
    assert (fn.CodeUri, fn.Runtime, fn.MemorySize, fn.Timeout) == (".", "python3.11", 128, 3)
    assert fn.ReservedConcurrentExecutions is None and fn.ProvisionedConcurrency == 0
    assert fn.role_arn(config.Settings) == f"arn:aws:iam::{ACCOUNT}:role/pumphouse"
    assert fn.code_path == Path.cwd().resolve()


def test_to_spec_builds_the_runtime_view(tmp_path: Path) -> None:
    spec_module = pytest.importorskip("pumphouse.runtime")
    if not hasattr(spec_module, "FunctionSpec"):
        pytest.skip("pumphouse.runtime.FunctionSpec is not there yet")
    text = yaml.safe_dump(
        {
            "Settings": {"Region": "eu-west-1", "AccountId": ACCOUNT},
            "Functions": {
                "orders": {
                    "Handler": "app.handler",
                    "CodeUri": "src",
                    "MemorySize": 256,
                    "Timeout": 30,
                    "Environment": {"Variables": {"A": "1"}},
                    "ReservedConcurrentExecutions": 4,
                    "ProvisionedConcurrency": 1,
                }
            },
        }
    )
    config = parse_config(text, environ={}, base_dir=tmp_path)
    spec = config.Functions["orders"].to_spec("orders", config.Settings)
    assert spec.name == "orders"
    assert spec.handler == "app.handler"
    assert spec.code_uri == (tmp_path / "src").resolve()
    assert (spec.memory_size, spec.timeout) == (256, 30.0)
    assert dict(spec.environment) == {"A": "1"}
    assert (spec.reserved_concurrency, spec.provisioned_concurrency) == (4, 1)
    assert spec.role == f"arn:aws:iam::{ACCOUNT}:role/pumphouse"
    assert (spec.region, spec.account_id) == ("eu-west-1", ACCOUNT)
    assert config.function_spec("orders") == spec


def test_models_are_frozen_and_strict() -> None:
    fn = Function(Handler="app.handler")
    with pytest.raises(ValidationError):
        fn.Timeout = 5  # frozen: refused at run time
    with pytest.raises(ValidationError):
        Function(Handler="app.handler", Timout=3)  # type: ignore[call-arg]  # the point: unknown key


def test_config_constructed_directly_runs_the_same_rules() -> None:
    mapping = EventSourceMapping(FunctionName="orders", EventSourceArn=SQS, BatchSize=11)
    with pytest.raises(ValidationError) as info:
        Config(Functions={"orders": Function(Handler="app.handler")}, EventSourceMappings=[mapping])
    assert "EventSourceMappings[0].MaximumBatchingWindowInSeconds: Maximum batch window" in str(
        info.value
    )
    ok = Config(
        Functions={"orders": Function(Handler="app.handler")},
        EventSourceMappings=[EventSourceMapping(FunctionName="orders", EventSourceArn=SQS)],
    )
    assert ok.EventSourceMappings[0].label == "orders/sqs:orders"


def test_to_yaml_writes_only_what_differs_from_defaults() -> None:
    config = config_of(
        {
            "FunctionName": "orders",
            "EventSourceArn": SQS,
            "BatchSize": 20,
            "MaximumBatchingWindowInSeconds": 2,
        }
    )
    assert config.to_yaml() == (
        "Functions:\n"
        "  orders:\n"
        "    Handler: app.handler\n"
        "  clicks:\n"
        "    Handler: app.handler\n"
        "EventSourceMappings:\n"
        "  - FunctionName: orders\n"
        f"    EventSourceArn: {SQS}\n"
        "    BatchSize: 20\n"
        "    MaximumBatchingWindowInSeconds: 2\n"
    )
    assert parse_config(config.to_yaml(), environ={}) == config
