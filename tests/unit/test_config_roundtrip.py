"""Property tests: whatever configuration the loader accepts survives ``to_yaml`` and
loading again unchanged (same values, same UUIDs and labels)."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pumphouse.config import Config, ConfigError, parse_config
from pumphouse.config.envvars import escape, substitute

ACCOUNT = "000000000000"
REGIONS = st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"])
PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Any text except lone surrogates (not encodable); control characters are included.
LITERAL_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,11}", fullmatch=True)
VARIABLES = st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: (
        not name.startswith(("AWS_LAMBDA", "AWS_REGION", "AWS_DEFAULT", "AWS_EXEC"))
        and name not in ("LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR")
    )
)
PAST_TIMESTAMPS = st.one_of(
    st.integers(0, 1_600_000_000), st.floats(0, 1.6e9, allow_nan=False, allow_infinity=False)
)
WINDOWS = st.one_of(st.integers(0, 300), st.floats(0, 300, allow_nan=False))
RECORD_AGES = st.one_of(st.just(-1), st.integers(60, 604800))
PATTERNS = {
    "sqs": ['{"body": {"kind": ["order"]}}', '{"attributes": {"SenderId": [{"prefix": "A"}]}}'],
    "kinesis": ['{"data": {"n": [{"numeric": [">", 1]}]}}', '{"partitionKey": ["a", "b"]}'],
    "dynamodb": ['{"eventName": ["INSERT"]}', '{"dynamodb": {"Keys": {"id": {"S": ["x"]}}}}'],
    "kafka": ['{"value": {"kind": ["order"]}}', '{"topic": [{"exists": true}]}'],
}


def optional(
    draw: st.DrawFn, target: dict[str, Any], key: str, strategy: st.SearchStrategy[Any]
) -> None:
    if draw(st.booleans()):
        target[key] = draw(strategy)


@st.composite
def settings_section(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    optional(
        draw,
        out,
        "StateStore",
        st.sampled_from(["redis://redis:6379/0", "rediss://r:6380", "sqlite:////tmp/s.db"]),
    )
    optional(draw, out, "MaxConcurrency", st.integers(1, 1000))
    optional(draw, out, "Region", REGIONS)
    optional(draw, out, "AccountId", st.from_regex(r"\d{12}", fullmatch=True))
    optional(
        draw, out, "MetricsAddress", st.sampled_from(["127.0.0.1:0", "[::]:9400", "metrics:80"])
    )
    optional(draw, out, "ShutdownTimeoutSeconds", st.floats(0.01, 3600, allow_nan=False))
    optional(draw, out, "WorkerIdleSeconds", st.integers(1, 10000))
    optional(draw, out, "LeaseDurationSeconds", st.floats(0.5, 600, allow_nan=False))
    optional(draw, out, "MaxFiltersPerMapping", st.integers(5, 10))
    optional(draw, out, "PassEnvironment", st.lists(VARIABLES, max_size=3))
    optional(draw, out, "LogLevel", st.sampled_from(["DEBUG", "info", "Warning"]))
    optional(draw, out, "LogFormat", st.sampled_from(["json", "console", "auto"]))
    optional(
        draw,
        out,
        "Endpoints",
        st.fixed_dictionaries(
            {},
            optional={
                "Sqs": st.just("http://localhost:5000"),
                "Kafka": st.just("https://msk.local"),
            },
        ),
    )
    if draw(st.booleans()):
        session = draw(st.integers(1000, 60000))
        out["Kafka"] = {
            "SessionTimeoutMs": session,
            "HeartbeatIntervalMs": draw(st.integers(1, session - 1)),
        }
        optional(draw, out["Kafka"], "ClientId", NAMES)
    return out


@st.composite
def function(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Handler": draw(st.sampled_from(["app.handler", "pkg.mod.fn", "pkg/mod.fn"]))
    }
    optional(draw, out, "CodeUri", st.sampled_from(["src", "../examples/x", "/opt/code"]))
    optional(draw, out, "Runtime", st.sampled_from(["python3.11", "python3.12", "python3.9"]))
    optional(draw, out, "MemorySize", st.integers(128, 10240))
    optional(draw, out, "Timeout", st.integers(1, 900))
    optional(draw, out, "Description", LITERAL_TEXT.map(escape))
    if draw(st.booleans()):
        variables = draw(st.dictionaries(VARIABLES, LITERAL_TEXT, max_size=3))
        out["Environment"] = {"Variables": {k: escape(v) for k, v in variables.items()}}
    if draw(st.booleans()):
        reserved = draw(st.integers(0, 50))
        out["ReservedConcurrentExecutions"] = reserved
        optional(draw, out, "ProvisionedConcurrency", st.integers(0, reserved))
    optional(draw, out, "Role", st.just(f"arn:aws:iam::{ACCOUNT}:role/r"))
    return out


def error_handling(draw: st.DrawFn, out: dict[str, Any]) -> None:
    optional(draw, out, "BisectBatchOnFunctionError", st.booleans())
    optional(draw, out, "MaximumRetryAttempts", st.integers(-1, 10000))
    optional(draw, out, "MaximumRecordAgeInSeconds", RECORD_AGES)


def filters(draw: st.DrawFn, out: dict[str, Any], kind: str) -> None:
    if draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(PATTERNS[kind]), max_size=5))
        out["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in chosen]}


@st.composite
def mapping(draw: st.DrawFn, index: int, function_names: list[str]) -> dict[str, Any]:
    region = draw(REGIONS)
    out: dict[str, Any] = {"FunctionName": draw(st.sampled_from(function_names))}
    kind = draw(st.sampled_from(["sqs", "fifo", "kinesis", "dynamodb", "kafka", "msk"]))
    if kind in ("sqs", "fifo"):
        out["EventSourceArn"] = f"arn:aws:sqs:{region}:{ACCOUNT}:q{index}" + (
            ".fifo" if kind == "fifo" else ""
        )
        if kind == "fifo":
            optional(draw, out, "BatchSize", st.integers(1, 10))
        else:
            batch = draw(st.integers(1, 10000))
            out["BatchSize"] = batch
            if batch > 10:
                out["MaximumBatchingWindowInSeconds"] = draw(st.integers(1, 300))
            else:
                optional(draw, out, "MaximumBatchingWindowInSeconds", WINDOWS)
            optional(
                draw,
                out,
                "ScalingConfig",
                st.builds(lambda n: {"MaximumConcurrency": n}, st.integers(2, 1000)),
            )
        filters(draw, out, "sqs")
    elif kind in ("kinesis", "dynamodb"):
        if kind == "kinesis":
            out["EventSourceArn"] = f"arn:aws:kinesis:{region}:{ACCOUNT}:stream/s{index}"
            position = draw(st.sampled_from(["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]))
            destination = st.sampled_from(
                [
                    f"arn:aws:sqs:{region}:{ACCOUNT}:dlq.fifo",
                    f"arn:aws:sns:{region}:{ACCOUNT}:t",
                    "arn:aws:s3:::bucket-1",
                ]
            )
        else:
            out["EventSourceArn"] = (
                f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/table-{index}/stream/2024-01-01T00:00:00.000"
            )
            position = draw(st.sampled_from(["TRIM_HORIZON", "LATEST"]))
            destination = st.sampled_from(
                [f"arn:aws:sqs:{region}:{ACCOUNT}:dlq", "arn:aws:s3:::bucket-1"]
            )
        out["StartingPosition"] = position
        if position == "AT_TIMESTAMP":
            out["StartingPositionTimestamp"] = draw(PAST_TIMESTAMPS)
        optional(draw, out, "BatchSize", st.integers(1, 10000))
        optional(draw, out, "MaximumBatchingWindowInSeconds", WINDOWS)
        optional(draw, out, "ParallelizationFactor", st.integers(1, 10))
        optional(draw, out, "TumblingWindowInSeconds", st.integers(0, 900))
        error_handling(draw, out)
        if draw(st.booleans()):
            out["DestinationConfig"] = {"OnFailure": {"Destination": draw(destination)}}
        filters(draw, out, kind)
    else:
        topic = f"topic-{index}"
        out["Topics"] = [topic]
        if kind == "kafka":
            servers = draw(
                st.lists(
                    st.sampled_from(["k1:9092", "k2:9093", "[::1]:9094", "10.0.0.1:1"]),
                    min_size=1,
                    max_size=4,
                    unique=True,
                )
            )
            out["SelfManagedEventSource"] = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": servers}}
            optional(
                draw,
                out,
                "SelfManagedKafkaEventSourceConfig",
                st.builds(lambda g: {"ConsumerGroupId": g}, NAMES),
            )
        else:
            out["EventSourceArn"] = f"arn:aws:kafka:{region}:{ACCOUNT}:cluster/c{index}/id-1"
            optional(
                draw,
                out,
                "AmazonManagedKafkaEventSourceConfig",
                st.builds(lambda g: {"ConsumerGroupId": g}, NAMES),
            )
        position = draw(st.sampled_from(["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]))
        out["StartingPosition"] = position
        if position == "AT_TIMESTAMP":
            out["StartingPositionTimestamp"] = draw(PAST_TIMESTAMPS)
        optional(draw, out, "BatchSize", st.integers(1, 10000))
        optional(draw, out, "MaximumBatchingWindowInSeconds", WINDOWS)
        error_handling(draw, out)
        if draw(st.booleans()):
            target = draw(
                st.sampled_from(["kafka://dead-letters", f"arn:aws:sqs:{region}:{ACCOUNT}:dlq"])
            )
            out["DestinationConfig"] = {"OnFailure": {"Destination": target}}
        if draw(st.booleans()):
            out["SourceAccessConfigurations"] = [
                {
                    "Type": draw(st.sampled_from(["BASIC_AUTH", "SASL_SCRAM_512_AUTH"])),
                    "URI": "env:KAFKA_AUTH",
                },
                {"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": "file:/etc/ca.pem"},
            ]
        if draw(st.booleans()):
            out["Kafka"] = {
                "SessionTimeoutMs": 6000,
                "HeartbeatIntervalMs": draw(st.integers(100, 2000)),
            }
        filters(draw, out, "kafka")
    optional(draw, out, "Enabled", st.booleans())
    optional(draw, out, "FunctionResponseTypes", st.sampled_from([[], ["ReportBatchItemFailures"]]))
    optional(draw, out, "UUID", st.uuids().map(str))
    optional(draw, out, "MetricsConfig", st.just({"Metrics": ["EventCount"]}))
    return out


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    functions = draw(st.dictionaries(NAMES, function(), min_size=1, max_size=3))
    names = list(functions)
    count = draw(st.integers(0, 4))
    document: dict[str, Any] = {}
    if draw(st.booleans()):
        document["Settings"] = draw(settings_section())
    document["Functions"] = functions
    document["EventSourceMappings"] = [draw(mapping(i, names)) for i in range(count)]
    return document


def assert_round_trips(config: Config) -> None:
    text = config.to_yaml()
    again = parse_config(text, environ={})
    assert again == config
    assert again.to_yaml() == text
    assert [m.uuid for m in again.EventSourceMappings] == [
        m.uuid for m in config.EventSourceMappings
    ]
    assert [m.label for m in again.EventSourceMappings] == [
        m.label for m in config.EventSourceMappings
    ]


@PROPERTY_SETTINGS
@given(document=valid_documents())
def test_valid_configurations_round_trip_through_yaml(document: dict[str, Any]) -> None:
    config = parse_config(yaml.safe_dump(document, sort_keys=False), environ={})
    assert_round_trips(config)
    for name, raw in document["Functions"].items():  # literal text kept as written
        if "Description" in raw:
            assert config.Functions[name].Description == substitute(raw["Description"], {})[0]


# Values around every limit, valid and not, per field.
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "BatchSize": st.one_of(st.integers(-1, 20000), st.sampled_from([1, 10, 11, 10000, 10001])),
    "MaximumBatchingWindowInSeconds": st.one_of(
        st.floats(-1, 400, allow_nan=False), st.sampled_from([0, 1, 300, 301])
    ),
    "ParallelizationFactor": st.integers(0, 11),
    "StartingPosition": st.sampled_from(["LATEST", "TRIM_HORIZON", "AT_TIMESTAMP", "latest"]),
    "StartingPositionTimestamp": st.one_of(
        st.integers(0, 2_000_000_000), st.just("2024-01-01T00:00:00Z")
    ),
    "BisectBatchOnFunctionError": st.sampled_from([True, False, "yes", 2]),
    "MaximumRetryAttempts": st.integers(-2, 10001),
    "MaximumRecordAgeInSeconds": st.sampled_from([-1, 0, 59, 60, 604800, 604801]),
    "TumblingWindowInSeconds": st.integers(-1, 901),
    "FunctionResponseTypes": st.sampled_from([[], ["ReportBatchItemFailures"], ["X"]]),
    "Topics": st.sampled_from([["orders"], [], ["a", "b"]]),
    "Enabled": st.sampled_from([True, False, "true", 0, None]),
    "ScalingConfig": st.builds(lambda n: {"MaximumConcurrency": n}, st.integers(1, 1001)),
    "DestinationConfig": st.sampled_from(
        [
            {"OnFailure": {"Destination": "kafka://dlq"}},
            {"OnFailure": {"Destination": "kafka://orders"}},
            {"OnFailure": {"Destination": f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq.fifo"}},
            {"OnFailure": {"Destination": "arn:aws:s3:::bucket-1"}},
            {"OnSuccess": {"Destination": "arn:aws:s3:::bucket-1"}},
        ]
    ),
}
SOURCES = [
    {"EventSourceArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:q"},
    {"EventSourceArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:q.fifo"},
    {
        "EventSourceArn": f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/s",
        "StartingPosition": "LATEST",
    },
    {
        "EventSourceArn": f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/table/stream/x",
        "StartingPosition": "LATEST",
    },
    {
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["k:9092"]}},
        "Topics": ["orders"],
        "StartingPosition": "LATEST",
    },
]


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(
    source=st.sampled_from(SOURCES),
    fields=st.lists(st.sampled_from(list(FIELD_VALUES)), max_size=4, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: FIELD_VALUES[key] for key in keys})
    ),
)
def test_anything_the_loader_accepts_round_trips(
    source: dict[str, Any], fields: dict[str, Any]
) -> None:
    document = {
        "Functions": {"f": {"Handler": "app.handler"}},
        "EventSourceMappings": [{"FunctionName": "f", **source, **fields}],
    }
    try:
        config = parse_config(yaml.safe_dump(document), environ={})
    except ConfigError as err:
        event("refused")
        assert err.problems
        assert all(p.startswith("EventSourceMappings[0]") for p in err.problems), err.problems
        return
    event("accepted")
    assert_round_trips(config)


@given(text=st.text())
def test_escape_then_substitute_is_identity(text: str) -> None:
    assert substitute(escape(text), {}) == (text, [])
