"""Request bodies to mapping parameters, mappings to EventSourceMappingConfiguration."""

from __future__ import annotations

import pytest

from pumphouse.api.errors import InvalidParameterValue
from pumphouse.api.shapes import (
    MappingView,
    check_tags,
    create_parameters,
    mapping_configuration,
    update_parameters,
)
from pumphouse.config import Settings, parse_mapping

KINESIS = "arn:aws:kinesis:us-east-1:000000000000:stream/orders"


def test_create_splits_tags_and_refuses_what_pumphouse_does_not_implement() -> None:
    params, tags = create_parameters(
        {"FunctionName": "f", "EventSourceArn": KINESIS, "Tags": {"team": "a"}}
    )
    assert params == {"FunctionName": "f", "EventSourceArn": KINESIS}
    assert tags == {"team": "a"}
    with pytest.raises(InvalidParameterValue, match="KMSKeyArn: not supported by pumphouse"):
        create_parameters({"FunctionName": "f", "KMSKeyArn": "arn:aws:kms:x"})
    with pytest.raises(InvalidParameterValue, match="UUID: not a parameter"):
        create_parameters({"FunctionName": "f", "UUID": "x"})
    with pytest.raises(InvalidParameterValue, match="JSON object"):
        create_parameters(["not", "an", "object"])


def test_update_refuses_create_only_parameters() -> None:
    assert update_parameters({"BatchSize": 5}) == {"BatchSize": 5}
    with pytest.raises(InvalidParameterValue, match="EventSourceArn, StartingPosition: not a"):
        update_parameters({"EventSourceArn": KINESIS, "StartingPosition": "LATEST"})


@pytest.mark.parametrize("uri", ["env:PUMPHOUSE_API_SECRET", "file:/etc/shadow"])
def test_the_api_names_secrets_manager_secrets_only(uri: str) -> None:
    body = {"SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": uri}]}
    with pytest.raises(InvalidParameterValue, match=r"SourceAccessConfigurations\[0\]\.URI"):
        create_parameters({"FunctionName": "f", **body})
    with pytest.raises(InvalidParameterValue, match="Secrets Manager secret ARNs only"):
        update_parameters(body)
    arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:kafka"
    ok = {"SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": arn}]}
    assert update_parameters(ok) == ok


def test_configuration_has_aws_names_types_and_defaults() -> None:
    mapping = parse_mapping(
        {"FunctionName": "f", "EventSourceArn": KINESIS, "StartingPosition": "LATEST"},
        settings=Settings(),
        function_names=["f"],
    )
    doc = mapping_configuration(
        MappingView(
            mapping=mapping,
            state="Enabled",
            state_transition_reason="User action",
            last_processing_result="OK",
            last_modified=1700000000.25,
            region="us-east-1",
            account_id="000000000000",
        )
    )
    assert doc == {
        "UUID": mapping.uuid,
        "EventSourceMappingArn": (
            f"arn:aws:lambda:us-east-1:000000000000:event-source-mapping:{mapping.uuid}"
        ),
        "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f",
        "EventSourceArn": KINESIS,
        "StartingPosition": "LATEST",
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": 1,
        "BisectBatchOnFunctionError": False,
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": -1,
        "TumblingWindowInSeconds": 0,
        "State": "Enabled",
        "StateTransitionReason": "User action",
        "LastProcessingResult": "OK",
        "LastModified": 1700000000.25,
    }


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({}, "at least one tag"),
        ({"k": 1}, "map of strings"),
        ({f"k{i}": "v" for i in range(51)}, "at most 50 tags"),
        ({"aws:owner": "x"}, "not starting with 'aws:'"),
        ({"k" * 129: "x"}, "1-128 characters"),
        ({"k": "v" * 257}, "over 256 characters"),
    ],
)
def test_tags_are_checked_as_lambda_does(tags: object, expected: str) -> None:
    with pytest.raises(InvalidParameterValue, match=expected):
        check_tags(tags)
    assert check_tags({"team": "orders"}) == {"team": "orders"}
