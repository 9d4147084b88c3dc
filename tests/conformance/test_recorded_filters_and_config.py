"""Recorded FilterCriteria outcomes, refused configurations and partial batch responses,
through pumphouse's filter compiler, configuration validation and response reading
(pure; the SQS ones that involve deletes also run end to end in ``test_recorded_e2e.py``)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from conformance_support import params

from pumphouse.config import parse_config
from pumphouse.errors import ConfigError
from pumphouse.patterns import FilterPatternError, SourceKind, compile_filter_criteria
from pumphouse.pollers import shapes
from pumphouse.pollers.policy import AttemptOutcome, RetryPolicy, classify_invocation
from pumphouse.pollers.responses import sqs_item_id


def _sqs_record(body: str) -> dict[str, Any]:
    return shapes.sqs_record(
        {"MessageId": "m", "ReceiptHandle": "r", "Body": body, "Attributes": {}},
        queue_arn="arn:aws:sqs:us-east-1:123456789012:q",
        region="us-east-1",
        batching_window=1,
    )


@pytest.mark.parametrize("case", params("filter", source="sqs") + params("e2e", prefix="sqs.filter"))
def test_sqs_filter(case: dict[str, Any]) -> None:
    setup, facts = case["setup"], case["facts"]
    filters = compile_filter_criteria([json.dumps(setup["pattern"])], source=SourceKind.SQS)
    kept = [body for body in setup["bodies"] if filters.matches(_sqs_record(body))]
    assert len(kept) == facts["invocations"] == 1
    delivered = [b if isinstance(b, str) else json.dumps(b) for b in facts["delivered_bodies"]]
    assert [json.loads(b) for b in kept] == [json.loads(b) for b in delivered]


def _dynamodb_changes(puts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stream records two PutItem calls produce (NEW_AND_OLD_IMAGES): a put on an
    existing key is a MODIFY — even when nothing changed, as the recording shows."""
    table: dict[str, dict[str, Any]] = {}
    out = []
    for n, item in enumerate(puts):
        key = json.dumps(item["id"])
        old = table.get(key)
        change: dict[str, Any] = {
            "ApproximateCreationDateTime": datetime(2025, 11, 25, 15, 56, n, tzinfo=UTC),
            "Keys": {"id": item["id"]},
            "NewImage": item,
            "SequenceNumber": str(100 + n),
            "SizeBytes": 50,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if old is not None:
            change["OldImage"] = old
        table[key] = item
        out.append(
            shapes.dynamodb_record(
                {"eventID": str(n), "eventName": "MODIFY" if old else "INSERT", "dynamodb": change},
                stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/x",
                region="us-east-1",
            )
        )
    return out


@pytest.mark.parametrize("case", params("filter", source="dynamodb"))
def test_dynamodb_filter(case: dict[str, Any]) -> None:
    setup = case["setup"]
    filters = compile_filter_criteria([json.dumps(setup["pattern"])], source=SourceKind.DYNAMODB)
    kept = [r for r in _dynamodb_changes(setup["puts"]) if filters.matches(r)]
    assert len(kept) == case["facts"]["invocations"]


@pytest.mark.parametrize("case", params("filter", source="kinesis"))
def test_kinesis_filter(case: dict[str, Any]) -> None:
    setup = case["setup"]
    filters = compile_filter_criteria([json.dumps(setup["pattern"])], source=SourceKind.KINESIS)
    records = [
        shapes.kinesis_record(
            {"SequenceNumber": str(i), "ApproximateArrivalTimestamp": 1.0,
             "Data": json.dumps(data).encode(), "PartitionKey": "k"},
            shard_id="shardId-000000000000", stream_arn="arn", region="us-east-1",
            invoke_identity_arn="role",
        )
        for i, data in enumerate(setup["data"])
    ]
    kept = [i for i, r in enumerate(records) if filters.matches(r)]
    assert kept == case["facts"]["delivered"]
    assert json.loads(base64.b64decode(records[kept[0]]["kinesis"]["data"])) == setup["data"][0]


@pytest.mark.parametrize("case", params("config", prefix="sqs.invalid_filter") + params("config", prefix="dynamodb.invalid_filter"))
def test_invalid_filter_is_refused_with_awss_message(case: dict[str, Any]) -> None:
    source = SourceKind.SQS if case["id"].startswith("sqs") else SourceKind.DYNAMODB
    with pytest.raises(FilterPatternError) as caught:
        compile_filter_criteria([case["setup"]["pattern"]], source=source)
    # AWS: "Invalid filter pattern definition."; pumphouse says where, after it.
    assert str(caught.value).startswith(case["facts"]["error"]["Message"])


def _sqs_mapping_config(**mapping: Any) -> str:
    return yaml.safe_dump(
        {
            "Functions": {"f": {"Handler": "h.handler", "CodeUri": "."}},
            "EventSourceMappings": [
                {"FunctionName": "f", "EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:q", **mapping}
            ],
        }
    )


def test_sqs_defaults_and_the_window_rule() -> None:
    (param,) = params("config", prefix="sqs.default_batch_size")
    case = param.values[0]
    facts, setup = case["facts"], case["setup"]
    mapping = parse_config(_sqs_mapping_config(), base_dir=".").EventSourceMappings[0]
    assert mapping.batch_size == facts["default_batch_size"]
    assert mapping.batching_window == facts["default_batching_window"]
    with pytest.raises(ConfigError) as caught:
        parse_config(
            _sqs_mapping_config(
                BatchSize=setup["batch_size"],
                MaximumBatchingWindowInSeconds=setup["batching_window"],
            ),
            base_dir=".",
        )
    assert facts["error"]["Message"] in str(caught.value)


@pytest.mark.parametrize("case", params("response"))
def test_sqs_partial_batch_response_is_read_as_aws_read_it(case: dict[str, Any]) -> None:
    setup, facts = case["setup"], case["facts"]
    policy = RetryPolicy.from_mapping(function_response_types=["ReportBatchItemFailures"])
    if setup.get("raise"):
        result = _Result(ok=False, payload=None, function_error="Unhandled")
    else:
        result = _Result(ok=True, payload=setup["response"])
    attempt = classify_invocation(result, policy=policy, batch_ids=["m-1"], id_of=sqs_item_id)
    expected = {"success": AttemptOutcome.SUCCESS, "whole_failure": AttemptOutcome.FAILED}
    assert attempt.outcome is expected[facts["outcome"]]


@dataclass(frozen=True)
class _Result:
    ok: bool
    payload: Any
    function_error: str | None = None
    function_ran: bool = True
    request_id: str | None = None
