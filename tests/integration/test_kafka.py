"""The Kafka event source against a real broker (tansu), through the real service."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_kafka_helpers import (
    FAST_GROUP,
    committed,
    consume_all,
    create_topic,
    delivered,
    group_of,
    kafka_config,
    mapping_labels,
    metric,
    produce,
    read_lines,
    running,
    unique_records,
    wait_for,
)

from pumphouse.aws import AwsClients
from pumphouse.devstack import MotoServer, TansuBroker, free_port

pytestmark = pytest.mark.slow

REGION = "us-east-1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def sqs_queue(moto: MotoServer, name: str) -> tuple[AwsClients, str, str]:
    clients = AwsClients(region=REGION, endpoints={"Sqs": moto.url})
    sqs = await clients.client("sqs")
    url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    return clients, url, f"arn:aws:sqs:{REGION}:000000000000:{name}"


async def receive_all(clients: AwsClients, url: str, count: int) -> list[dict[str, Any]]:
    sqs = await clients.client("sqs")
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while len(bodies) < count and time.monotonic() < deadline:
        answer = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        bodies.extend(json.loads(m["Body"]) for m in answer.get("Messages", []))
    return bodies


# ---------------------------------------------------------------------------------------
# Shape, order, commits


async def test_event_shape_with_headers_and_null_keys(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 2)
    await produce(
        tansu.bootstrap,
        unique_name,
        [
            {"value": b"first", "key": b"k-1", "partition": 1, "headers": [("trace", b"abc")]},
            {"value": b"second", "key": None, "partition": 1, "timestamp_ms": 1_700_000_000_123},
        ],
    )
    events = tmp_path / "events.jsonl"
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        env={"EVENTS_TO": str(events)},
        mapping={"MaximumBatchingWindowInSeconds": 0.3},
    )
    async with running(config):
        await wait_for(delivered(tmp_path / "records.jsonl", at_least=2), message="2 records")
    [event] = read_lines(events)
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == tansu.bootstrap
    assert "eventSourceArn" not in event
    assert list(event["records"]) == [f"{unique_name}-1"]
    first, second = event["records"][f"{unique_name}-1"]
    assert first == {
        "topic": unique_name,
        "partition": 1,
        "offset": 0,
        "timestamp": first["timestamp"],
        "timestampType": "CREATE_TIME",
        "key": b64(b"k-1"),
        "value": b64(b"first"),
        "headers": [{"trace": list(b"abc")}],
    }
    assert abs(first["timestamp"] / 1000 - time.time()) < 600
    assert "key" not in second
    assert second["value"] == b64(b"second")
    assert second["timestamp"] == 1_700_000_000_123
    assert second["headers"] == []


async def test_resume_after_restart_from_committed_offsets(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 4)
    first = [{"value": f"a{i}".encode(), "partition": i % 4} for i in range(80)]
    await produce(tansu.bootstrap, unique_name, first)
    config = kafka_config(
        tmp_path, bootstrap=tansu.bootstrap, topic=unique_name, mapping={"BatchSize": 7}
    )
    records = tmp_path / "records.jsonl"
    async with running(config) as service:
        await wait_for(delivered(records, at_least=80), message="the first 80 records")
        labels = mapping_labels(service)
        await wait_for(
            lambda: metric(service, "pumphouse_committed_events_total", **labels) == 80,
            message="80 committed",
        )
        await wait_for(
            lambda: (
                all(
                    metric(
                        service,
                        "pumphouse_kafka_offset_lag_records",
                        **labels,
                        partition=f"{unique_name}-{p}",
                    )
                    == 0
                    for p in range(4)
                )
                and service.metrics.registry.get_sample_value(
                    "pumphouse_kafka_offset_lag_records",
                    {**labels, "partition": f"{unique_name}-0"},
                )
                is not None
            ),
            message="no offset lag",
        )
        assert metric(service, "pumphouse_polled_events_total", **labels) == 80
        assert metric(service, "pumphouse_invoked_events_total", **labels) == 80
        assert metric(service, "pumphouse_kafka_rebalances_total", **labels, kind="assigned") >= 1
        assert metric(service, "pumphouse_pollers_active", **labels) == 4
    assert await committed(tansu.bootstrap, group_of(config), unique_name, 4) == {
        0: 20,
        1: 20,
        2: 20,
        3: 20,
    }
    await produce(
        tansu.bootstrap,
        unique_name,
        [{"value": f"b{i}".encode(), "partition": i % 4} for i in range(40)],
    )
    async with running(config) as service:
        await wait_for(delivered(records, at_least=120), message="40 more records")
        await asyncio.sleep(0.3)  # anything redelivered would show up by now
        assert metric(service, "pumphouse_polled_events_total", **labels) == 40
    lines = read_lines(records)
    values = [line["value"] for line in lines]
    # Nothing lost, nothing delivered twice: the second run started at the commits.
    assert sorted(values) == sorted([f"a{i}" for i in range(80)] + [f"b{i}" for i in range(40)])
    assert len(unique_records(lines)) == 120
    assert await committed(tansu.bootstrap, group_of(config), unique_name, 4) == dict.fromkeys(
        range(4), 30
    )


async def test_per_partition_order_under_concurrency(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 4)
    await produce(
        tansu.bootstrap,
        unique_name,
        [
            {"value": f"v{i}".encode(), "key": f"k{i}".encode(), "partition": i % 4}
            for i in range(400)
        ],
    )
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        env={"SLEEP_MS": "5"},
        mapping={"BatchSize": 9, "MaximumBatchingWindowInSeconds": 0},
    )
    records = tmp_path / "records.jsonl"
    async with running(config) as service:
        await wait_for(delivered(records, at_least=400), message="400 records")
        views = service.mapping_views()
    lines = read_lines(records)
    assert len(lines) == 400
    by_partition: dict[int, list[int]] = {}
    for line in lines:
        by_partition.setdefault(line["partition"], []).append(line["offset"])
    assert len(by_partition) == 4
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))  # in order, no gap, no repeat
    # Partitions ran concurrently: more than one worker process served them.
    assert len({line["pid"] for line in lines}) > 1
    assert views[0]["LastProcessingResult"] == "OK"


async def test_failing_batch_is_retried_until_success_blocking_only_its_partition(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 2)
    state = tmp_path / "state"
    state.mkdir()
    await produce(
        tansu.bootstrap,
        unique_name,
        [{"value": b"stubborn", "partition": 0}]
        + [{"value": f"p1-{i}".encode(), "partition": 1} for i in range(20)]
        + [{"value": b"after", "partition": 0}],
    )
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        env={"FAIL_VALUES": "stubborn", "FAIL_TIMES": "2", "STATE_DIR": str(state)},
        mapping={"BatchSize": 5, "MaximumBatchingWindowInSeconds": 0},
    )
    records = tmp_path / "records.jsonl"

    def values() -> list[str]:
        return [line["value"] for line in read_lines(records)]

    async with running(config) as service:
        await wait_for(
            lambda: values().count("stubborn") >= 3 and "p1-19" in values(),
            message="two failures, a success, and partition 1 done",
        )
        await asyncio.sleep(0.2)
        failed = metric(
            service,
            "pumphouse_failed_invoke_events_total",
            mapping=service.config.EventSourceMappings[0].label,
            function="fn",
            source="kafka",
        )
    seen = values()
    assert seen.count("stubborn") == 3  # (the handler records before it raises)
    assert failed == 4  # two failed invocations of the 2-record batch
    # Partition 1 was not held up by partition 0's retries (backoff 0.5 s, then 1 s).
    third = [i for i, v in enumerate(seen) if v == "stubborn"][2]
    assert seen.index("p1-19") < third
    partition0 = [line["value"] for line in read_lines(records) if line["partition"] == 0]
    assert partition0 == ["stubborn", "after"] * 3  # retried whole, never skipped past
    assert await committed(tansu.bootstrap, group_of(config), unique_name, 2) == {0: 2, 1: 20}


# ---------------------------------------------------------------------------------------
# Errors and on-failure destinations


async def test_poison_record_with_bisect_retries_and_an_sqs_destination(
    tansu: TansuBroker, moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 1)
    values = [f"ok{i}" for i in range(8)]
    values[5] = "poison"
    await produce(
        tansu.bootstrap,
        unique_name,
        [
            {"value": v.encode(), "key": f"k{i}".encode(), "partition": 0}
            for i, v in enumerate(values)
        ],
    )
    clients, url, queue_arn = await sqs_queue(moto_server, unique_name)
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        env={"FAIL_VALUES": "poison"},
        mapping={
            "BatchSize": 8,
            "MaximumBatchingWindowInSeconds": 1,
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 1,
            "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
        },
        settings={"Endpoints": {"Sqs": moto_server.url}},
    )
    try:
        async with running(config) as service:
            [failure] = await receive_all(clients, url, 1)
            await wait_for(
                lambda: "ok7" in {line["value"] for line in read_lines(tmp_path / "records.jsonl")},
                message="the records after the poison one",
            )
            labels = mapping_labels(service)
            await wait_for(
                lambda: metric(service, "pumphouse_committed_events_total", **labels) == 8,
                message="every offset committed",
            )
            # AWS: records sent to the on-failure destination are not counted as dropped.
            assert metric(service, "pumphouse_dropped_events_total", **labels) == 0
            assert metric(service, "pumphouse_on_failure_delivered_events_total", **labels) == 1
    finally:
        await clients.close()
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["requestContext"]["functionArn"] == (
        "arn:aws:lambda:us-east-1:000000000000:function:fn"
    )
    assert failure["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert failure["version"] == "1.0"
    info = failure["KafkaBatchInfo"]
    assert info["batchSize"] == 1
    assert info["eventSourceArn"] is None
    assert info["bootstrapServers"] == tansu.bootstrap
    assert info["payloadSize"] > 0
    assert list(info["recordsInfo"]) == [f"{unique_name}-0"]
    assert info["recordsInfo"][f"{unique_name}-0"]["firstRecordOffset"] == "5"
    assert info["recordsInfo"][f"{unique_name}-0"]["lastRecordOffset"] == "5"
    # Bisect: the good records were each delivered until their half succeeded; the
    # poison one twice alone (1 retry) after the splits; nothing was lost.
    lines = read_lines(tmp_path / "records.jsonl")
    assert {line["value"] for line in lines} == set(values)
    alone = [line for line in lines if line["value"] == "poison"]
    assert len(alone) == 5  # 8 → 4 → 2 → 1 (three splits), then 1 retry
    assert await committed(tansu.bootstrap, group_of(config), unique_name, 1) == {0: 8}


async def test_poison_record_to_a_kafka_topic_destination(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    dead_letters = f"{unique_name}-dlt"
    await create_topic(tansu.bootstrap, unique_name, 1)
    await create_topic(tansu.bootstrap, dead_letters, 1)
    await produce(
        tansu.bootstrap,
        unique_name,
        [
            {"value": b"fine", "key": b"a", "partition": 0},
            {"value": b"poison", "key": b"order-7", "partition": 0, "headers": [("h", b"1")]},
            {"value": b"also-fine", "key": None, "partition": 0},
        ],
    )
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        env={"FAIL_VALUES": "poison"},
        mapping={
            "BatchSize": 1,
            "MaximumRetryAttempts": 0,
            "DestinationConfig": {"OnFailure": {"Destination": f"kafka://{dead_letters}"}},
        },
    )
    async with running(config):
        await wait_for(
            lambda: (
                "also-fine" in {line["value"] for line in read_lines(tmp_path / "records.jsonl")}
            ),
            message="the record after the poison one",
        )
        [message] = await consume_all(tansu.bootstrap, dead_letters, 1)
    assert message.key == b"order-7"
    body = json.loads(message.value)
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 1
    assert body["responseContext"]["functionError"] == "Unhandled"
    info = body["KafkaBatchInfo"]
    assert info["batchSize"] == 1
    assert info["bootstrapServers"] == tansu.bootstrap
    assert info["recordInfo"]["offset"] == "1"
    payload = body["payload"]
    assert info["payloadSize"] == len(json.dumps(payload, separators=(",", ":")).encode())
    assert payload["eventSource"] == "SelfManagedKafka"
    [record] = payload["records"][f"{unique_name}-0"]
    assert record["offset"] == 1
    assert record["key"] == b64(b"order-7")
    assert record["value"] == b64(b"poison")
    assert record["headers"] == [{"h": [49]}]
    assert await committed(tansu.bootstrap, group_of(config), unique_name, 1) == {0: 3}


@pytest.mark.parametrize("with_destination", [True, False])
async def test_maximum_payload_size_exceeded(
    tansu: TansuBroker,
    moto_server: MotoServer,
    unique_name: str,
    tmp_path: Path,
    with_destination: bool,
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 1)
    huge = b"x" * (4_800_000)  # base64 makes it 6.4 MB: no event can hold it
    await produce(
        tansu.bootstrap,
        unique_name,
        [
            {"value": b"small-1", "partition": 0},
            {"value": huge, "partition": 0},
            {"value": b"small-2", "partition": 0},
        ],
        max_request_size=8_000_000,
    )
    clients, url, queue_arn = await sqs_queue(moto_server, unique_name)
    mapping: dict[str, Any] = {"Kafka": {"MaxPartitionFetchBytes": 10_000_000}}
    if with_destination:
        mapping["DestinationConfig"] = {"OnFailure": {"Destination": queue_arn}}
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        mapping=mapping,
        settings={"Endpoints": {"Sqs": moto_server.url}},
    )
    try:
        async with running(config) as service:
            await wait_for(
                lambda: (
                    "small-2" in {line["value"] for line in read_lines(tmp_path / "records.jsonl")}
                ),
                message="the record after the huge one",
            )
            labels = mapping_labels(service)
            failures = await receive_all(clients, url, 1) if with_destination else []
            # AWS: a record sent to the on-failure destination is not dropped.
            dropped, delivered = (0, 1) if with_destination else (1, 0)
            assert metric(service, "pumphouse_dropped_events_total", **labels) == dropped
            assert (
                metric(service, "pumphouse_on_failure_delivered_events_total", **labels)
                == delivered
            )
    finally:
        await clients.close()
    assert [line["value"] for line in read_lines(tmp_path / "records.jsonl")] == [
        "small-1",
        "small-2",
    ]
    if with_destination:
        [failure] = failures
        assert failure["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
        assert failure["requestContext"]["approximateInvokeCount"] == 0
        assert failure["responseContext"] is None
        info = failure["KafkaBatchInfo"]["recordsInfo"][f"{unique_name}-0"]
        assert (info["firstRecordOffset"], info["lastRecordOffset"]) == ("1", "1")
        assert failure["KafkaBatchInfo"]["payloadSize"] > 6_291_456
    assert await committed(tansu.bootstrap, group_of(config), unique_name, 1) == {0: 3}


async def test_partial_batch_response_retries_from_the_lowest_failed_offset(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 1)
    state = tmp_path / "state"
    state.mkdir()
    values = ["r0", "r1", "flaky", "r3", "r4"]
    await produce(
        tansu.bootstrap, unique_name, [{"value": v.encode(), "partition": 0} for v in values]
    )
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        env={"PARTIAL_VALUES": "flaky", "FAIL_TIMES": "1", "STATE_DIR": str(state)},
        mapping={
            "BatchSize": 5,
            "MaximumBatchingWindowInSeconds": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )
    records = tmp_path / "records.jsonl"
    async with running(config):
        await wait_for(delivered(records, at_least=8), message="the retried remainder")
        await asyncio.sleep(0.3)
    lines = read_lines(records)
    # First invocation: all five, "flaky" reported. The retry starts at "flaky": the
    # records after it are delivered again, the ones before it are not.
    assert [line["value"] for line in lines] == [*values, "flaky", "r3", "r4"]
    assert await committed(tansu.bootstrap, group_of(config), unique_name, 1) == {0: 5}


# ---------------------------------------------------------------------------------------
# Filters, starting position


async def test_filters_on_json_plain_string_and_non_utf8_values(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 1)
    raw = [
        json.dumps({"kind": "order", "total": 250}).encode(),  # JSON: matches filter 1
        json.dumps({"kind": "order", "total": 5}).encode(),  # JSON: too small
        b"hello plain world",  # plain string: matches filter 2
        b"goodbye",  # plain string: no match
        b"\xff\xfe\x00binary",  # not UTF-8: no value filter can match it
        json.dumps({"kind": "refund", "total": 900}).encode(),
    ]
    await produce(tansu.bootstrap, unique_name, [{"value": v, "partition": 0} for v in raw])
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        mapping={
            "FilterCriteria": {
                "Filters": [
                    {
                        "Pattern": json.dumps(
                            {"value": {"kind": ["order"], "total": [{"numeric": [">", 100]}]}}
                        )
                    },
                    {"Pattern": json.dumps({"value": [{"prefix": "hello"}]})},
                ]
            },
        },
    )
    records = tmp_path / "records.jsonl"
    group = group_of(config)
    async with running(config) as service:
        await wait_for(delivered(records, at_least=2), message="the matching records")
        labels = mapping_labels(service)
        await wait_for(
            lambda: metric(service, "pumphouse_committed_events_total", **labels) == 6,
            message="filtered records committed",
        )
        assert metric(service, "pumphouse_filtered_out_events_total", **labels) == 4
    assert [line["offset"] for line in read_lines(records)] == [0, 2]
    # Records that matched no filter are committed too: the group holds no lag.
    assert await committed(tansu.bootstrap, group, unique_name, 1) == {0: 6}


async def test_at_timestamp_starts_at_the_first_record_that_recent(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 2)
    old = [{"value": f"old{i}".encode(), "partition": i % 2} for i in range(6)]
    new = [{"value": f"new{i}".encode(), "partition": i % 2} for i in range(6)]
    await produce(tansu.bootstrap, unique_name, old)
    # tansu answers offsets_for_times by the time records were appended, so the
    # boundary is a moment between two produce calls rather than record timestamps.
    await asyncio.sleep(1.0)
    boundary = time.time()
    await asyncio.sleep(0.2)
    await produce(tansu.bootstrap, unique_name, new)
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        mapping={"StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": boundary},
    )
    records = tmp_path / "records.jsonl"
    async with running(config):
        await wait_for(delivered(records, at_least=6), message="the recent records")
        await asyncio.sleep(0.3)
    assert sorted(line["value"] for line in read_lines(records)) == sorted(
        f"new{i}" for i in range(6)
    )
    # A committed offset wins over StartingPosition: a second run reads nothing again.
    await produce(tansu.bootstrap, unique_name, [{"value": b"later", "partition": 0}])
    async with running(config):
        await wait_for(delivered(records, at_least=7), message="the later record")
        await asyncio.sleep(0.3)
    assert [line["value"] for line in read_lines(records)][6:] == ["later"]


# ---------------------------------------------------------------------------------------
# Handlers and health


async def test_powertools_batch_processor_handler_works_unmodified(
    tansu: TansuBroker, moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 1)
    await produce(
        tansu.bootstrap,
        unique_name,
        [{"value": v, "partition": 0} for v in (b"good-1", b"bad", b"good-2")],
    )
    clients, url, queue_arn = await sqs_queue(moto_server, unique_name)
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        handler="powertools_batch.handler",
        mapping={
            "BatchSize": 3,
            "MaximumBatchingWindowInSeconds": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumRetryAttempts": 1,
            "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
        },
        settings={"Endpoints": {"Sqs": moto_server.url}},
    )
    try:
        async with running(config):
            [failure] = await receive_all(clients, url, 1)
    finally:
        await clients.close()
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    # Powertools reported {"partition": "<topic>-0", "offset": 1}: offset 0 is committed
    # and offsets 1-2 are a new batch (no retry spent, as AWS records it for streams);
    # "bad" is reported again, retried once, and the remainder given up.
    assert Counter(lines) == Counter({"0 0 good-1": 1, "0 1 bad": 3, "0 2 good-2": 3})
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["responseContext"]["functionError"] is None  # a partial response
    info = failure["KafkaBatchInfo"]
    assert info["batchSize"] == 2  # the failed remainder: offsets 1 and 2
    assert info["recordsInfo"][f"{unique_name}-0"]["firstRecordOffset"] == "1"
    assert info["recordsInfo"][f"{unique_name}-0"]["lastRecordOffset"] == "2"


async def test_bad_bootstrap_address_is_a_clear_problem_not_a_crash(
    unique_name: str, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    config = kafka_config(tmp_path, bootstrap=address, topic=unique_name)
    async with running(config) as service:
        await wait_for(
            lambda: service.mapping_views()[0]["LastProcessingResult"].startswith("PROBLEM:"),
            within=15,
            message="a PROBLEM state",
        )
        [view] = service.mapping_views()
        ready, _ = service.readiness()
    assert view["LastProcessingResult"].startswith(f"PROBLEM: cannot connect to Kafka at {address}")
    assert view["SourceReachable"] is False
    assert not ready


async def test_amazon_msk_source_finds_its_brokers_and_names_its_arn(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    """An MSK cluster ARN: brokers from GetBootstrapBrokers (served here by a minimal
    local implementation of that one MSK API call), events with ``aws:kafka``."""
    from aiohttp import web

    cluster_arn = f"arn:aws:kafka:us-east-1:000000000000:cluster/{unique_name}/abc-1"
    asked: list[str] = []

    async def bootstrap_brokers(request: web.Request) -> web.Response:
        asked.append(request.match_info["arn"])
        return web.json_response({"bootstrapBrokerString": tansu.bootstrap})

    app = web.Application()
    app.router.add_get("/v1/clusters/{arn}/bootstrap-brokers", bootstrap_brokers)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    await create_topic(tansu.bootstrap, unique_name, 1)
    await produce(tansu.bootstrap, unique_name, [{"value": b"from-msk", "partition": 0}])
    events = tmp_path / "events.jsonl"
    base = yaml.safe_load(
        kafka_config(
            tmp_path, bootstrap="unused:1", topic=unique_name, env={"EVENTS_TO": str(events)}
        )
    )
    mapping = base["EventSourceMappings"][0]
    del mapping["SelfManagedEventSource"]
    mapping["EventSourceArn"] = cluster_arn
    mapping["AmazonManagedKafkaEventSourceConfig"] = {"ConsumerGroupId": f"{unique_name}-g"}
    base["Settings"]["Endpoints"] = {"Kafka": f"http://127.0.0.1:{port}"}
    try:
        async with running(yaml.safe_dump(base)):
            await wait_for(delivered(tmp_path / "records.jsonl", at_least=1), message="1 record")
    finally:
        await runner.cleanup()
    assert asked == [cluster_arn]
    [event] = read_lines(events)
    assert event["eventSource"] == "aws:kafka"
    assert event["eventSourceArn"] == cluster_arn
    assert event["bootstrapServers"] == tansu.bootstrap
    assert list(event["records"]) == [f"{unique_name}-0"]
    assert await committed(tansu.bootstrap, f"{unique_name}-g", unique_name, 1) == {0: 1}


async def test_unreachable_msk_api_is_a_clear_problem(unique_name: str, tmp_path: Path) -> None:
    base = yaml.safe_load(kafka_config(tmp_path, bootstrap="unused:1", topic=unique_name))
    mapping = base["EventSourceMappings"][0]
    del mapping["SelfManagedEventSource"]
    arn = f"arn:aws:kafka:us-east-1:000000000000:cluster/{unique_name}/abc-1"
    mapping["EventSourceArn"] = arn
    base["Settings"]["Endpoints"] = {"Kafka": f"http://127.0.0.1:{free_port()}"}
    async with running(yaml.safe_dump(base)) as service:
        await wait_for(
            lambda: service.mapping_views()[0]["LastProcessingResult"].startswith("PROBLEM:"),
            within=30,
            message="a PROBLEM state",
        )
        [view] = service.mapping_views()
    assert view["LastProcessingResult"].startswith(f"PROBLEM: cannot find the brokers of {arn}")


async def test_credentials_never_reach_the_mapping_status(
    tansu: TansuBroker, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SASL over TLS against a plaintext listener fails; the PROBLEM names the servers,
    never the login."""
    password = f"pw-{unique_name}"
    monkeypatch.setenv("PH_KAFKA_LOGIN", json.dumps({"username": "svc", "password": password}))
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        mapping={
            "SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": "env:PH_KAFKA_LOGIN"}],
        },
        settings={"Kafka": {**FAST_GROUP, "RequestTimeoutMs": 3000}},
    )
    async with running(config) as service:
        await wait_for(
            lambda: service.mapping_views()[0]["LastProcessingResult"].startswith("PROBLEM:"),
            within=30,
            message="a PROBLEM state",
        )
        [view] = service.mapping_views()
    assert view["LastProcessingResult"].startswith("PROBLEM: cannot connect to Kafka at")
    assert password not in json.dumps(view)


async def test_shutdown_during_endless_retries_commits_nothing_past_the_failing_batch(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    await create_topic(tansu.bootstrap, unique_name, 2)
    await produce(
        tansu.bootstrap,
        unique_name,
        [
            {"value": b"ok-0", "partition": 0},
            {"value": b"stuck", "partition": 0},
            {"value": b"ok-1", "partition": 1},
        ],
    )
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        env={"FAIL_VALUES": "stuck"},
        mapping={"BatchSize": 1, "MaximumBatchingWindowInSeconds": 0},
    )
    records = tmp_path / "records.jsonl"
    async with running(config) as service:
        await wait_for(
            lambda: [line["value"] for line in read_lines(records)].count("stuck") >= 2,
            message="the stuck record retried",
        )
        # The last batch's result is shown: partition 1's success may land after a
        # failed attempt (its worker's cold start), the next attempt's failure after it.
        await wait_for(
            lambda: service.mapping_views()[0]["LastProcessingResult"]
            == "PROBLEM: Function call failed",
            message="the failing batch shown",
        )
    # The service stopped although the batch never succeeded; partition 0 is committed
    # up to the failing record, never past it, and partition 1 is unaffected.
    assert await committed(tansu.bootstrap, group_of(config), unique_name, 2) == {0: 1, 1: 1}


# ---------------------------------------------------------------------------------------
# SecurityProtocol and FetchMaxWaitMs (pumphouse extensions)


async def test_explicit_plaintext_and_a_longer_fetch_wait_consume_end_to_end(
    tansu: TansuBroker, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiokafka import AIOKafkaConsumer

    from pumphouse.pollers import kafka as kafka_module

    seen: list[dict[str, Any]] = []

    class RecordingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
        def __init__(self, *args: Any, **options: Any) -> None:
            seen.append(options)
            super().__init__(*args, **options)

    monkeypatch.setattr(kafka_module, "AIOKafkaConsumer", RecordingConsumer)
    await create_topic(tansu.bootstrap, unique_name, 2)
    await produce(
        tansu.bootstrap,
        unique_name,
        [{"value": f"a{i}".encode(), "partition": i % 2} for i in range(20)],
    )
    config = kafka_config(
        tmp_path,
        bootstrap=tansu.bootstrap,
        topic=unique_name,
        mapping={"Kafka": {"SecurityProtocol": "PLAINTEXT", "FetchMaxWaitMs": 300}},
    )
    records = tmp_path / "records.jsonl"
    async with running(config) as service:
        await wait_for(delivered(records, at_least=20), message="the first 20 records")
        # Records produced while the consumer idles in waiting fetches arrive too.
        await produce(
            tansu.bootstrap,
            unique_name,
            [{"value": f"b{i}".encode(), "partition": i % 2} for i in range(10)],
        )
        await wait_for(delivered(records, at_least=30), message="10 more records")
        await wait_for(
            lambda: (
                metric(
                    service,
                    "pumphouse_committed_events_total",
                    mapping=service.config.EventSourceMappings[0].label,
                    function="fn",
                    source="kafka",
                )
                == 30
            ),
            message="30 committed",
        )
        views = service.mapping_views()
    [options] = seen
    assert options["security_protocol"] == "PLAINTEXT"
    assert options["fetch_max_wait_ms"] == 300
    assert "ssl_context" not in options and "sasl_mechanism" not in options
    values = sorted(line["value"] for line in read_lines(records))
    assert values == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(10)])
    assert views[0]["LastProcessingResult"] == "OK"
    assert await committed(tansu.bootstrap, group_of(config), unique_name, 2) == {0: 15, 1: 15}
