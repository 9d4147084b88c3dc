"""Kinesis error handling end to end: bisect, retries, record age, partial batch
responses, and on-failure destinations (SQS, SNS, S3) on moto.

Records are put before the service starts, so the first ``GetRecords`` returns them all
and batches are exactly ``BatchSize`` consecutive records.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from handlers.streams import support as s

from pumphouse.config import parse_config
from pumphouse.devstack import KinesisMock, MotoServer

pytestmark = pytest.mark.slow


async def test_poison_record_is_bisected_out_to_sqs(
    kinesis_mock: KinesisMock, moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with (
        s.client("kinesis", kinesis_mock.url) as kinesis,
        s.client("sqs", moto_server.url) as sqs,
    ):
        arn = await s.create_stream(kinesis, unique_name, 1)
        queue_url, queue_arn = await s.create_queue(sqs, f"{unique_name}-dlq")
        data = [("p", {"k": "p", "i": i, "poison": i == 11}) for i in range(16)]
        put = await s.put_records(kinesis, unique_name, data)
        config = s.config_yaml(
            settings=s.settings(
                state_store=f"sqlite:///{tmp_path}/state.db",
                kinesis_url=kinesis_mock.url,
                moto_url=moto_server.url,
            ),
            functions={"f": s.function("recorder.handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 16,
                    "BisectBatchOnFunctionError": True,
                    "MaximumRetryAttempts": 2,
                    "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
                }
            ],
        )
        async with s.running(config) as service:
            failures = await s.drain_queue(sqs, queue_url, expect=1)
            await s.wait_for(
                lambda: {x["i"] for x in _succeeded(record_file)} == set(range(16)) - {11},
                what="every other record processed",
            )
            delivered = s.metric(service, "pumphouse_on_failure_delivered_events_total")
    poison_seq = put[11][1]
    assert len(failures) == 1
    failure = failures[0]
    info = failure["KinesisBatchInfo"]
    assert info["startSequenceNumber"] == poison_seq == info["endSequenceNumber"]
    assert info["batchSize"] == 1
    assert info["shardId"] == put[11][0]
    assert info["streamArn"] == arn
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["approximateArrivalOfFirstRecord"])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["requestContext"]["functionArn"].endswith(":function:f")
    assert failure["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert failure["version"] == "1.0"
    assert delivered == 1
    # The poison record alone was invoked 3 times once bisected down to it.
    alone = [line for line in s.read_lines(record_file) if [x["i"] for x in line["items"]] == [11]]
    assert len(alone) == 3


def _succeeded(path: Path) -> list[dict[str, Any]]:
    return [x for line in s.read_lines(path) if not line["poison"] for x in line["items"]]


async def test_records_past_their_age_go_to_s3_without_response_context(
    kinesis_mock: KinesisMock,
    moto_server: MotoServer,
    tmp_path: Path,
    unique_name: str,
) -> None:
    # The records are an hour old as far as the error policy can tell.
    def an_hour_later() -> float:
        return time.time() + 3600

    record_file = tmp_path / "records.jsonl"
    bucket = unique_name
    async with (
        s.client("kinesis", kinesis_mock.url) as kinesis,
        s.client("s3", moto_server.url) as s3,
    ):
        await s3.create_bucket(Bucket=bucket)
        arn = await s.create_stream(kinesis, unique_name, 1)
        put = await s.put_records(kinesis, unique_name, [("a", {"k": "a", "i": i}) for i in range(5)])
        config = s.config_yaml(
            settings=s.settings(
                state_store=f"sqlite:///{tmp_path}/state.db",
                kinesis_url=kinesis_mock.url,
                moto_url=moto_server.url,
            ),
            functions={"f": s.function("recorder.handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "MaximumRecordAgeInSeconds": 60,
                    "DestinationConfig": {"OnFailure": {"Destination": f"arn:aws:s3:::{bucket}"}},
                }
            ],
        )
        uuid = parse_config(config, base_dir=s.HANDLERS).EventSourceMappings[0].uuid

        async def objects() -> list[str]:
            listing = await s3.list_objects_v2(Bucket=bucket)
            return [o["Key"] for o in listing.get("Contents", [])]

        async def one_object() -> bool:
            return len(await objects()) == 1

        async with s.running(config, wall_clock=an_hour_later):
            await s.wait_for(one_object, what="the failure record in S3")
        keys = await objects()
        body = json.loads(await (await s3.get_object(Bucket=bucket, Key=keys[0]))["Body"].read())
    assert not record_file.exists(), "expired records are never invoked"
    shard = put[0][0]
    assert re.fullmatch(
        rf"aws/lambda/{uuid}/{shard}/\d{{4}}/\d\d/\d\d/\d{{4}}-\d\d-\d\dT\d\d\.\d\d\.\d\d-[0-9a-f-]{{36}}",
        keys[0],
    )
    assert "responseContext" not in body
    assert body["requestContext"]["condition"] == "RecordAgeExceeded"
    assert body["requestContext"]["approximateInvokeCount"] == 1  # never invoked: AWS says 1
    info = body["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (put[0][1], put[-1][1])
    assert info["batchSize"] == 5
    payload = json.loads(body["payload"])  # an escaped JSON string, as on AWS
    assert [r["kinesis"]["sequenceNumber"] for r in payload["Records"]] == [
        seq for _, seq in put
    ]


SUCCESS_CASES = [
    "null",
    "empty_string",
    "empty_object",
    "empty_list",
    "empty_failures",
    "null_failures",
    "other_key",
]
WHOLE_FAILURE_CASES = ["id_empty", "id_null", "id_missing", "id_unknown", "invalid_json", "raise"]
PARTIAL_CASES = ["partial_once", "partial_always"]


async def test_partial_batch_response_matrix_with_sns(
    kinesis_mock: KinesisMock, moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    cases = SUCCESS_CASES + WHOLE_FAILURE_CASES + PARTIAL_CASES
    async with (
        s.client("kinesis", kinesis_mock.url) as kinesis,
        s.client("sqs", moto_server.url) as sqs,
        s.client("sns", moto_server.url) as sns,
    ):
        topic_arn = (await sns.create_topic(Name=unique_name))["TopicArn"]
        queue_url, queue_arn = await s.create_queue(sqs, f"{unique_name}-sub")
        await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        arn = await s.create_stream(kinesis, unique_name, 1)
        data = [
            ("m", {"k": "m", "i": 3 * n + j, "case": case})
            for n, case in enumerate(cases)
            for j in range(3)
        ]
        put = await s.put_records(kinesis, unique_name, data)
        seqs = {case: [put[3 * n + j][1] for j in range(3)] for n, case in enumerate(cases)}
        config = s.config_yaml(
            settings=s.settings(
                state_store=f"sqlite:///{tmp_path}/state.db",
                kinesis_url=kinesis_mock.url,
                moto_url=moto_server.url,
            ),
            functions={"f": s.function("matrix.handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "BatchSize": 3,
                    "MaximumRetryAttempts": 1,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    "DestinationConfig": {"OnFailure": {"Destination": topic_arn}},
                }
            ],
        )
        async with s.running(config):
            failures = await s.drain_queue(sqs, queue_url, expect=7, within=40)
            await s.wait_for(
                lambda: any(line["case"] == cases[-1] for line in s.read_lines(record_file)),
                what="the last case",
            )
    invocations: dict[str, list[list[str]]] = {}
    for line in s.read_lines(record_file):
        invocations.setdefault(line["case"], []).append(line["seqs"])
    for case in SUCCESS_CASES:
        assert invocations[case] == [seqs[case]], f"{case}: one invocation, a whole success"
    for case in WHOLE_FAILURE_CASES:
        assert invocations[case] == [seqs[case]] * 2, f"{case}: a whole failure, retried once"
    assert invocations["partial_once"] == [seqs["partial_once"], seqs["partial_once"][1:]]
    # The checkpoint advanced: the remainder is a new batch (no retry spent), then retried.
    assert invocations["partial_always"] == [
        seqs["partial_always"],
        seqs["partial_always"][1:],
        seqs["partial_always"][1:],
    ]

    by_start = {f["KinesisBatchInfo"]["startSequenceNumber"]: f for f in failures}
    assert len(by_start) == len(failures) == 7
    for case in WHOLE_FAILURE_CASES:
        failure = by_start[seqs[case][0]]
        info = failure["KinesisBatchInfo"]
        assert (info["endSequenceNumber"], info["batchSize"]) == (seqs[case][2], 3)
        assert failure["requestContext"]["approximateInvokeCount"] == 2
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
        expected_error = "Unhandled" if case == "raise" else None
        assert failure["responseContext"]["functionError"] == expected_error, case
    partial = by_start[seqs["partial_always"][1]]
    assert partial["KinesisBatchInfo"]["endSequenceNumber"] == seqs["partial_always"][2]
    assert partial["KinesisBatchInfo"]["batchSize"] == 2
    assert partial["responseContext"]["functionError"] is None
    assert partial["requestContext"]["approximateInvokeCount"] == 2


async def test_powertools_kinesis_batch_processor_unmodified(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 1)
        await s.put_records(
            kinesis, unique_name, [("p", {"k": "p", "i": i, "poison": i == 5}) for i in range(8)]
        )
        config = s.config_yaml(
            settings=s.settings(
                state_store=f"sqlite:///{tmp_path}/state.db", kinesis_url=kinesis_mock.url
            ),
            functions={"f": s.function("powertools_handler.kinesis_handler", record_file)},
            mappings=[
                {
                    "FunctionName": "f",
                    "EventSourceArn": arn,
                    "StartingPosition": "TRIM_HORIZON",
                    "MaximumRetryAttempts": 1,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                }
            ],
        )
        async with s.running(config) as service:
            await s.wait_for(
                lambda: s.metric(service, "pumphouse_dropped_events_total") >= 3,
                what="the failed remainder given up",
            )
            dropped = s.metric(service, "pumphouse_dropped_events_total")
    counts: dict[int, int] = {}
    for line in s.read_lines(record_file):
        counts[line["i"]] = counts.get(line["i"], 0) + 1
    # Powertools reports record 5: 0-4 are done at once; the remainder 5-7 is a new batch
    # (no retry spent), 5 fails again, its one retry fails too, and 5-7 is given up.
    assert counts == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 3, 6: 3, 7: 3}
    assert dropped == 3
