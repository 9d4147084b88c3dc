"""Twelve real SAM / CloudFormation templates from public AWS example collections: every
one converts and validates. They are kept beside the repository (the ``sam-templates``
folder of the ``shared`` directory next to its root, each with its source and licence),
never copied into it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pumphouse.config.templates import Conversion, TemplateOptions, convert_template
from pumphouse.errors import ConfigError

PUBLIC = Path(__file__).resolve().parents[2].parent / "shared" / "sam-templates"

NAMES = [
    "apigw-http-api-fifo-sqs-lambda-sns-sam",
    "apigw-lambda-dynamodb-stream-lambda",
    "kinesis-lambda-error-handling",
    "lambda-esm-ddb-filters-sam",
    "lambda-esm-msk-filters-sam",
    "lambda-esm-sqs-filters-sam",
    "qldb-kinesis-lambda-dynamodb",
    "sam-kinesis-intrinsics",
    "sam-msk-intrinsics-s3-codeuri",
    "sam-self-managed-kafka-intrinsics",
    "sqs-lambda-lmi-esm-provisioned-sam",
    "sqs-lambda-python-sam",
]

MSK_OVERRIDES = {
    "MSKStreamARN": "arn:aws:kafka:us-east-1:000000000000:cluster/demo/"
    "6cc0432b-8618-4f44-bccc-e1fbd8fb7c4d-2",
    "MSKTopicName": "orders",
}


def convert(name: str, **options: Any) -> Conversion:
    if name == "lambda-esm-msk-filters-sam":
        options.setdefault("parameter_overrides", MSK_OVERRIDES)
    return convert_template(PUBLIC / name / "template.yaml", TemplateOptions(**options))


def validated(conversion: Conversion) -> None:
    """Validate: every public template is a valid configuration (its Node.js runtimes
    included, whatever version they name)."""
    conversion.validate()


def test_the_collection_is_complete() -> None:
    assert sorted(p.name for p in PUBLIC.iterdir() if p.is_dir()) == NAMES


@pytest.mark.parametrize("name", [n for n in NAMES if n != "sam-msk-intrinsics-s3-codeuri"])
def test_every_template_converts_and_validates(name: str) -> None:
    conversion = convert(name)
    assert conversion.data["Functions"]
    assert conversion.data["EventSourceMappings"]
    validated(conversion)


def test_s3_code_uri_is_refused_and_found_under_code_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        convert("sam-msk-intrinsics-s3-codeuri")
    assert caught.value.problems == [
        "Resources.MyMskStreamProcessor.Properties.CodeUri: s3://sam-demo-bucket/kafka.zip is "
        "code in S3, which pumphouse cannot run: give a local directory (CodeUri: ./src) or "
        "--code-root DIR"
    ]
    conversion = convert("sam-msk-intrinsics-s3-codeuri", code_root=tmp_path)
    (mapping,) = conversion.data["EventSourceMappings"]
    assert mapping == {
        "FunctionName": "sam-msk-intrinsics-s3-codeuri-MyMskStreamProcessor",
        "StartingPosition": "LATEST",
        "EventSourceArn": "arn:aws:kafka:us-east-1:012345678901:cluster/mycluster/"
        "6cc0432b-8618-4f44-bccc-e1fbd8fb7c4d-2",
        "Topics": ["Topic"],
        "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "consumergroup1"},
    }
    validated(conversion)


def test_sqs_python() -> None:
    conversion = convert("sqs-lambda-python-sam")
    assert conversion.data["EventSourceMappings"] == [
        {
            "FunctionName": "sqs-lambda-python-sam-ProcessorFunction",
            "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:"
            "sqs-lambda-python-sam-ProcessingQueue",
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }
    ]
    queues = conversion.data["Dev"]["Queues"]
    assert queues["sqs-lambda-python-sam-ProcessingQueue"]["RedrivePolicy"]["maxReceiveCount"] == 3
    assert "Resources.ProcessorFunction.Properties.DeadLetterQueue" in conversion.not_used


def test_fifo_queue_named_by_parameters() -> None:
    conversion = convert("apigw-http-api-fifo-sqs-lambda-sns-sam")
    function = conversion.data["Functions"]["ServerlessLand_Function"]
    assert function["Environment"]["Variables"] == {
        "TOPIC_ARN": "arn:aws:sns:us-east-1:000000000000:ServerlessLandSNSTopic"
    }
    assert conversion.data["EventSourceMappings"][0]["EventSourceArn"] == (
        "arn:aws:sqs:us-east-1:000000000000:ServerlessLandSQS.fifo"
    )
    assert conversion.data["Dev"]["Queues"]["ServerlessLandSQS.fifo"]["FifoQueue"] is True
    assert "Resources.MyAPI (AWS::Serverless::HttpApi)" in conversion.not_used


def test_kinesis_error_handling() -> None:
    conversion = convert("kinesis-lambda-error-handling")
    assert conversion.data["Functions"]["KinesisDataStreamProcessor"]["Handler"] == (
        "kinesis-consumer-fn.lambda_handler"
    )
    (mapping,) = conversion.data["EventSourceMappings"]
    assert mapping["DestinationConfig"] == {
        "OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:AnomalyDataQueue"}
    }
    assert conversion.validate().Functions["KinesisDataStreamProcessor"].Timeout == 10


def test_dynamodb_stream_with_select_and_split() -> None:
    conversion = convert("apigw-lambda-dynamodb-stream-lambda")
    (mapping,) = conversion.data["EventSourceMappings"]
    assert mapping["FunctionName"] == "ConsumerFunction"
    assert mapping["EventSourceArn"].startswith(
        "arn:aws:dynamodb:us-east-1:000000000000:table/DemoStreamDynamoDBToLambda/stream/"
    )
    assert conversion.data["Dev"]["Tables"]["DemoStreamDynamoDBToLambda"]["StreamViewType"] == (
        "NEW_IMAGE"
    )
    assert "Resources.ProducerFunction.Properties.Events.ApiEvent (Api event)" in (
        conversion.not_used
    )


def test_cloudformation_mapping_and_import_value_in_an_unused_resource() -> None:
    conversion = convert("qldb-kinesis-lambda-dynamodb")
    (mapping,) = conversion.data["EventSourceMappings"]
    assert (
        mapping["FunctionName"] == "qldb-kinesis-lambda-dynamodb-QldbStreamsDynamoDBLambdaFunction"
    )
    assert mapping["EventSourceArn"] == (
        "arn:aws:kinesis:us-east-1:000000000000:stream/LicenceStreamKinesis"
    )
    function = conversion.data["Functions"][mapping["FunctionName"]]
    assert function["Environment"]["Variables"] == {
        "TABLE_NAME": "qldb-person",
        "AWS_NODEJS_CONNECTION_REUSE_ENABLED": "1",
    }
    assert "Resources.PersonQLDBStream (AWS::QLDB::Stream)" in conversion.not_used


def test_sam_intrinsics_conditions_and_join() -> None:
    conversion = convert("sam-kinesis-intrinsics")
    (mapping,) = conversion.data["EventSourceMappings"]
    assert mapping == {
        "FunctionName": "sam-kinesis-intrinsics-MyLambdaFunction",
        "BatchSize": 100,
        "BisectBatchOnFunctionError": False,
        "Enabled": True,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MaximumBatchingWindowInSeconds": 1,
        "MaximumRecordAgeInSeconds": 100,
        "MaximumRetryAttempts": 1,
        "ParallelizationFactor": 1,
        "StartingPosition": "LATEST",
        "EventSourceArn": "arn:aws:kinesis:us-east-1:000000000000:stream/"
        "sam-kinesis-intrinsics-MyStream",
        "TumblingWindowInSeconds": 100,
    }


def test_self_managed_kafka_without_starting_position() -> None:
    conversion = convert("sam-self-managed-kafka-intrinsics")
    (mapping,) = conversion.data["EventSourceMappings"]
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["SelfManagedEventSource"] == {
        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["abc.xyz.com:9092"]}
    }
    assert mapping["SourceAccessConfigurations"] == [
        {
            "Type": "BASIC_AUTH",
            "URI": "arn:aws:secretsmanager:us-east-1:000000000000:secret:KafkaUserPassword",
        }
    ]
    assert mapping["Topics"] == ["Topic"]


def test_msk_needs_its_parameters() -> None:
    with pytest.raises(ConfigError) as caught:
        convert("lambda-esm-msk-filters-sam", parameter_overrides={}).validate()
    assert caught.value.problems[0] == (
        "Resources.NoFilterFunction.Properties.Events.MSKEvent.Properties.Stream: "
        "'StreamARNNotPassed' is not an ARN (expected arn:aws:<service>:<region>:<account>:"
        "<resource>)"
    )
    conversion = convert("lambda-esm-msk-filters-sam")
    assert len(conversion.data["EventSourceMappings"]) == 9
    assert {m["Topics"][0] for m in conversion.data["EventSourceMappings"]} == {"orders"}


def test_provisioned_pollers_are_not_used() -> None:
    conversion = convert("sqs-lambda-lmi-esm-provisioned-sam")
    (mapping,) = conversion.data["EventSourceMappings"]
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (10, 5)
    assert "Resources.SQSEventSourceMapping.Properties.ProvisionedPollerConfig" in (
        conversion.not_used
    )
    assert (
        conversion.data["Dev"]["Queues"]["sqs-lambda-lmi-esm-provisioned-sam-queue"][
            "VisibilityTimeout"
        ]
        == 90
    )


def test_filters_of_six_sqs_functions() -> None:
    conversion = convert("lambda-esm-sqs-filters-sam")
    patterns = [
        [f["Pattern"] for f in m.get("FilterCriteria", {}).get("Filters", [])]
        for m in conversion.data["EventSourceMappings"]
    ]
    assert [len(p) for p in patterns] == [0, 1, 1, 1, 1, 3]
    config = conversion.validate()
    assert all(f.Runtime == "python3.14" for f in config.Functions.values())
