"""SAM and CloudFormation templates → pumphouse configuration: what becomes what, where
problems are reported, ``-c`` beside a template, and the ``--template`` CLI forms.

The templates under ``tests/templates/`` cover every event type and property; the error
paths use small templates written here."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from pumphouse.cli import main
from pumphouse.config import load_config
from pumphouse.config.templates import Conversion, TemplateOptions, convert_template
from pumphouse.errors import ConfigError

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def convert(path: Path, **options: Any) -> Conversion:
    return convert_template(path, TemplateOptions(**options))


def write(tmp_path: Path, text: str, name: str = "template.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    (tmp_path / "src").mkdir(exist_ok=True)
    return path


def problems(path: Path, **options: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        convert(path, **options).validate()
    return caught.value.problems


FUNCTION = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Stream:
    Type: AWS::Kinesis::Stream
  Orders:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
"""


# -- the test templates: what becomes what ----------------------------------------------


def test_sqs_template() -> None:
    conversion = convert(
        TEMPLATES / "sqs" / "template.yaml",
        parameter_overrides={"RecordDir": "/records"},
        stack_name="shop",
    )
    data = conversion.data
    assert data["Functions"] == {
        "shop-OrdersFunction": {
            "Handler": "app.handler",
            "Runtime": "python3.12",
            "MemorySize": 256,
            "Timeout": 10,
            "Environment": {
                "Variables": {
                    "RECORD_DIR": "/records",
                    "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/shop-OrdersQueue",
                    "API_KEY": "{{resolve:secretsmanager:shop-api-key:SecretString:key}}",
                    "STAGE": "development",
                }
            },
            "CodeUri": "src",
            "Layers": ["layers/common"],
        }
    }
    assert data["EventSourceMappings"] == [
        {
            "FunctionName": "shop-OrdersFunction",
            "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:shop-OrdersQueue",
            "BatchSize": 5,
            "MaximumBatchingWindowInSeconds": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 2},
            "FilterCriteria": {"Filters": [{"Pattern": '{"body": {"kind": ["order"]}}'}]},
            "Enabled": True,
        }
    ]
    assert data["Dev"] == {
        "Queues": {
            "shop-OrdersDLQ": {},
            "shop-OrdersQueue": {
                "VisibilityTimeout": 20,
                "RedrivePolicy": {
                    "deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:shop-OrdersDLQ",
                    "maxReceiveCount": 3,
                },
            },
        },
        "Secrets": {"shop-api-key": '{"key": "s3cr3t-value"}'},
    }
    assert conversion.not_used == [
        "Resources.OrdersFunction.Properties.Tracing",
        "Resources.OrdersFunction.Properties.Events.Api (Api event)",
    ]
    config = conversion.validate()
    function = config.Functions["shop-OrdersFunction"]
    assert function.layer_paths == [(TEMPLATES / "sqs" / "layers" / "common").resolve()]
    assert function.code_path == (TEMPLATES / "sqs" / "src").resolve()
    assert [r.secret_id for r in conversion.secret_references()] == ["shop-api-key"]


def test_stack_name_defaults_to_the_template_directory() -> None:
    conversion = convert(
        TEMPLATES / "kinesis" / "template.yaml", parameter_overrides={"RecordDir": "/r"}
    )
    assert conversion.stack_name == "kinesis"
    assert list(conversion.data["Functions"]) == ["kinesis-ClicksFunction"]


def test_kinesis_template() -> None:
    conversion = convert(
        TEMPLATES / "kinesis" / "template.yaml", parameter_overrides={"RecordDir": "/r"}
    )
    (mapping,) = conversion.data["EventSourceMappings"]
    assert mapping == {
        "FunctionName": "kinesis-ClicksFunction",
        "EventSourceArn": "arn:aws:kinesis:us-east-1:000000000000:stream/kinesis-Clicks",
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": 2,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 1,
        "MaximumRecordAgeInSeconds": 600,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "DestinationConfig": {
            "OnFailure": {
                "Destination": "arn:aws:sqs:us-east-1:000000000000:kinesis-ClicksFailures"
            }
        },
    }
    assert conversion.data["Dev"] == {
        "Queues": {"kinesis-ClicksFailures": {}},
        "Streams": {"kinesis-Clicks": 2},
    }
    assert "Resources.NeverCreated (its Condition is false)" in conversion.not_used
    prod = convert(
        TEMPLATES / "kinesis" / "template.yaml",
        parameter_overrides={"RecordDir": "/r", "Env": "prod"},
    )
    (mapping,) = prod.data["EventSourceMappings"]
    assert (mapping["BatchSize"], mapping["BisectBatchOnFunctionError"]) == (100, False)
    assert mapping["MaximumRetryAttempts"] == 5
    config = conversion.validate()
    assert config.Functions["kinesis-ClicksFunction"].Handler == "clicks-handler.handler"


def test_cloudformation_json_template() -> None:
    conversion = convert(
        TEMPLATES / "dynamodb" / "template.json", parameter_overrides={"RecordDir": "/r"}
    )
    assert conversion.data["Functions"]["dynamodb-OrdersFunction"] == {
        "Handler": "app.handler",
        "Runtime": "python3.12",
        "Environment": {"Variables": {"RECORD_DIR": "/r"}},
        "Role": "arn:aws:iam::000000000000:role/dynamodb-OrdersRole",
        "CodeUri": "src",
    }
    assert conversion.data["EventSourceMappings"] == [
        {
            "FunctionName": "dynamodb-OrdersFunction",
            "EventSourceArn": "arn:aws:dynamodb:us-east-1:000000000000:table/dynamodb-orders"
            "/stream/1970-01-01T00:00:00.000",
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 10,
            "MaximumRetryAttempts": 1,
            "FilterCriteria": {"Filters": [{"Pattern": '{"eventName": ["INSERT"]}'}]},
        }
    ]
    assert conversion.data["Dev"]["Tables"] == {
        "dynamodb-orders": {
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    }
    conversion.validate()


def test_kafka_template() -> None:
    conversion = convert(TEMPLATES / "kafka" / "template.yaml")
    msk, self_managed = conversion.data["EventSourceMappings"]
    secret = "arn:aws:secretsmanager:us-east-1:000000000000:secret:kafka-login"
    assert msk == {
        "FunctionName": "kafka-KafkaFunction",
        "EventSourceArn": "arn:aws:kafka:us-east-1:000000000000:cluster/orders/"
        "6cc0432b-8618-4f44-bccc-e1fbd8fb7c4d-2",
        "Topics": ["orders"],
        "StartingPosition": "AT_TIMESTAMP",
        "StartingPositionTimestamp": 1700000000,
        "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "orders-consumers"},
        "BatchSize": 500,
        "MaximumBatchingWindowInSeconds": 2,
        "FilterCriteria": {"Filters": [{"Pattern": '{"value": {"kind": ["order"]}}'}]},
        "DestinationConfig": {
            "OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:kafka-Failures"}
        },
        "SourceAccessConfigurations": [{"Type": "SASL_SCRAM_512_AUTH", "URI": secret}],
    }
    assert self_managed == {
        "FunctionName": "kafka-KafkaFunction",
        "SelfManagedEventSource": {
            "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["broker-1:9092", "broker-2:9092"]}
        },
        "Topics": ["payments"],
        "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "payments-consumers"},
        "Enabled": False,
        "SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": secret}],
        # AWS deploys a self-managed Kafka mapping without one and reads from the start.
        "StartingPosition": "TRIM_HORIZON",
    }
    generated = conversion.data["Dev"]["Secrets"]["kafka-login"]
    assert (
        generated
        == convert(TEMPLATES / "kafka" / "template.yaml").data["Dev"]["Secrets"]["kafka-login"]
    )
    assert '"username": "consumer"' in generated
    assert conversion.not_used == [
        "Resources.KafkaFunction.Properties.Events.SelfManaged.Properties.SecretsManagerKmsKeyId",
        "Resources.KafkaFunction.Properties.Events.SelfManaged.Properties."
        "SourceAccessConfigurations (VPC entries)",
    ]
    config = conversion.validate()
    assert [m.consumer_group_id for m in config.EventSourceMappings] == [
        "orders-consumers",
        "payments-consumers",
    ]


def test_globals_merge_as_sam_merges_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        Globals:
          Function:
            Runtime: python3.12
            Timeout: 5
            Environment: {Variables: {SHARED: "1", OVERRIDDEN: global}}
            Layers: [!Ref First]
        Resources:
          First:
            Type: AWS::Serverless::LayerVersion
            Properties: {ContentUri: first/}
          Second:
            Type: AWS::Lambda::LayerVersion
            Properties: {Content: second/}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Handler: app.handler
              CodeUri: src
              Timeout: 7
              Environment: {Variables: {OWN: yes, OVERRIDDEN: own}}
              Layers: [!GetAtt Second.Arn]
        """,
    )
    data = convert(path, stack_name="s").data["Functions"]["s-Fn"]
    assert data["Timeout"] == 7
    assert data["Runtime"] == "python3.12"
    assert data["Environment"] == {"Variables": {"SHARED": "1", "OVERRIDDEN": "own", "OWN": "true"}}
    assert data["Layers"] == ["first", "second"]


def test_image_function(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Metadata: {DockerContext: ./app, Dockerfile: Dockerfile}
            Properties:
              PackageType: Image
              Handler: app.handler
              ImageConfig:
                EntryPoint: [/lambda-entrypoint.sh]
                Command: [app.handler]
                WorkingDirectory: /var/task
        """,
    )
    (tmp_path / "app").mkdir()
    conversion = convert(path, stack_name="s")
    assert conversion.data["Functions"]["s-Fn"] == {
        "Handler": "app.handler",
        "ImageConfig": {
            "EntryPoint": ["/lambda-entrypoint.sh"],
            "Command": ["app.handler"],
            "WorkingDirectory": "/var/task",
        },
        "CodeUri": "app",
    }
    config = conversion.validate()
    image = config.Functions["s-Fn"].ImageConfig
    assert image is not None and image.Command == ["app.handler"]


def test_physical_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        FUNCTION
        + """\
  Named:
    Type: AWS::SQS::Queue
    Properties: {QueueName: orders}
  Fifo:
    Type: AWS::SQS::Queue
    Properties: {FifoQueue: true}
  Bucket:
    Type: AWS::S3::Bucket
  Topic:
    Type: AWS::SNS::Topic
    Properties: {TopicName: alerts}
""",
    )
    dev = convert(path, stack_name="Shop").data["Dev"]
    assert list(dev["Queues"]) == ["Shop-Queue", "orders", "Shop-Fifo.fifo"]
    assert dev["Queues"]["Shop-Fifo.fifo"] == {"FifoQueue": True}
    assert dev["Streams"] == {"Shop-Stream": 1}
    assert dev["Buckets"] == ["shop-bucket"]
    assert dev["SnsTopics"] == ["alerts"]


# -- -c beside a template ------------------------------------------------------------------


def test_config_beside_a_template_supplies_settings_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        FUNCTION
        + """\
      Timeout: 3
      Events:
        Q:
          Type: SQS
          Properties: {Queue: !GetAtt Queue.Arn, BatchSize: 5}
""",
    )
    settings = tmp_path / "conf" / "pumphouse.yaml"
    settings.parent.mkdir()
    (settings.parent / "extra").mkdir()
    settings.write_text(
        textwrap.dedent(
            """\
            Settings:
              Region: eu-west-1
              AccountId: "123456789012"
            Functions:
              s-Orders: {Timeout: 30}
              extra: {Handler: extra.handler, CodeUri: extra}
            EventSourceMappings:
              - FunctionName: s-Orders
                EventSourceArn: arn:aws:sqs:eu-west-1:123456789012:s-Queue
                BatchSize: 7
              - FunctionName: extra
                EventSourceArn: arn:aws:sqs:eu-west-1:123456789012:s-Queue
            """
        )
    )
    config = convert(path, stack_name="s", config_path=settings).validate()
    assert config.Settings.Region == "eu-west-1"
    assert config.Functions["s-Orders"].Timeout == 30
    assert config.Functions["s-Orders"].Handler == "app.handler"
    assert config.Functions["extra"].code_path == (settings.parent / "extra").resolve()
    assert [(m.function_name, m.BatchSize) for m in config.EventSourceMappings] == [
        ("s-Orders", 7),
        ("extra", None),
    ]
    settings.write_text("Functions:\n  s-Orders: {Timeout: 1000}\n")
    template_error = path.read_text().replace("Timeout: 3", "MemorySize: 1")
    path.write_text(template_error)
    assert problems(path, stack_name="s", config_path=settings) == [
        "Resources.Orders.Properties.MemorySize: 1 is below the minimum 128",
        "Functions.s-Orders.Timeout: 1000 is above the maximum 900",  # where -c set it
    ]


# -- problems, at their template paths ---------------------------------------------------


def test_pumphouse_rules_are_reported_at_the_template_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        Globals:
          Function: {Timeout: 1000}
        Resources:
          Stream:
            Type: AWS::Kinesis::Stream
          OrdersFunction:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Events:
                Stream:
                  Type: Kinesis
                  Properties:
                    Stream: !GetAtt Stream.Arn
                    StartingPosition: AT_TIMESTAMP
                    StartingPositionTimestamp: 4102444800
                    BatchSize: 20000
                    ScalingConfig: {MaximumConcurrency: 5}
        """,
    )
    assert problems(path, stack_name="s") == [
        "Globals.Function.Timeout: 1000 is above the maximum 900",
        "Resources.OrdersFunction.Properties.Events.Stream.Properties.BatchSize: 20000 is "
        "above the maximum 10000",
        "Resources.OrdersFunction.Properties.Events.Stream.Properties.StartingPositionTimestamp"
        ": 2100-01-01T00:00:00+00:00 is in the future",
        "Resources.OrdersFunction.Properties.Events.Stream.Properties.ScalingConfig: only "
        "supported for SQS, not Kinesis",
    ]


def test_unknown_ref_is_one_clear_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        FUNCTION
        + """\
      Events:
        Q: {Type: SQS, Properties: {Queue: !GetAtt Missing.Arn}}
      Environment: {Variables: {X: !Ref Nowhere}}
""",
    )
    assert problems(path) == [
        "Resources.Orders.Properties.Environment.Variables.X.Ref: !Ref 'Nowhere' names no "
        "parameter, resource or pseudo parameter",
        "Resources.Orders.Properties.Events.Q.Properties.Queue.Fn::GetAtt: !GetAtt "
        "Missing.Arn: no resource 'Missing'",
    ]


def test_unsupported_event_property_is_one_clear_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        FUNCTION
        + """\
      Events:
        Q:
          Type: SQS
          Properties: {Queue: !GetAtt Queue.Arn, Stream: !GetAtt Stream.Arn}
        Broker:
          Type: MQ
          Properties: {Broker: arn:aws:mq:us-east-1:000000000000:broker:b:1}
""",
    )
    assert problems(path) == [
        "Resources.Orders.Properties.Events.Q.Properties.Stream: not a property of a SAM SQS "
        "event that pumphouse can honour",
        "Resources.Orders.Properties.Events.Broker.Type: MQ: pumphouse has no Amazon MQ "
        "event source",
    ]


def test_s3_code_is_one_clear_problem_and_code_root_finds_it(tmp_path: Path) -> None:
    path = write(tmp_path, FUNCTION.replace("CodeUri: src/", "CodeUri: s3://bucket/code.zip"))
    assert problems(path) == [
        "Resources.Orders.Properties.CodeUri: s3://bucket/code.zip is code in S3, which "
        "pumphouse cannot run: give a local directory (CodeUri: ./src) or --code-root DIR"
    ]
    root = tmp_path / "code"
    (root / "Orders").mkdir(parents=True)
    config = convert(path, code_root=root, stack_name="s").validate()
    assert config.Functions["s-Orders"].code_path == (root / "Orders").resolve()


def test_layer_by_arn_is_one_clear_problem(tmp_path: Path) -> None:
    arn = "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3:7"
    path = write(tmp_path, FUNCTION + f"      Layers: [{arn}]\n")
    assert problems(path) == [
        f"Resources.Orders.Properties.Layers[0]: layer {arn} is given by ARN only: pumphouse "
        "needs its content in a local directory (declare it in the template as an "
        "AWS::Serverless::LayerVersion with a local ContentUri, or give the function's "
        "Layers as directories in a -c configuration)"
    ]


def test_import_value_only_matters_where_it_is_used(tmp_path: Path) -> None:
    unused = (
        FUNCTION
        + "  Ledger:\n    Type: AWS::QLDB::Stream\n    Properties: {LedgerName: !ImportValue ledger}\n"
    )
    convert(write(tmp_path, unused)).validate()
    used = FUNCTION + "      Environment: {Variables: {LEDGER: !ImportValue ledger}}\n"
    assert problems(write(tmp_path, used)) == [
        "Resources.Orders.Properties.Environment.Variables.LEDGER.Fn::ImportValue: "
        "Fn::ImportValue 'ledger' is not resolvable locally (the export belongs to another "
        "stack): give its value with --import-value ledger=VALUE"
    ]
    config = convert(write(tmp_path, used), import_values={"ledger": "main"}).validate()
    function = next(iter(config.Functions.values()))
    assert function.Environment.Variables == {"LEDGER": "main"}


def test_dynamic_references_other_than_secrets_manager(tmp_path: Path) -> None:
    path = write(
        tmp_path, FUNCTION + "      Environment: {Variables: {X: '{{resolve:ssm:/app/x}}'}}\n"
    )
    assert problems(path) == [
        "Resources.Orders.Properties.Environment.Variables.X: {{resolve:ssm:...}} is not "
        "resolvable locally: pumphouse resolves only Secrets Manager references"
    ]


def test_template_strings_are_literal(tmp_path: Path) -> None:
    path = write(tmp_path, FUNCTION + "      Environment: {Variables: {X: '${NOT_AN_ENV_VAR}'}}\n")
    config = convert(path).validate()
    assert next(iter(config.Functions.values())).Environment.Variables == {"X": "${NOT_AN_ENV_VAR}"}


def test_not_a_template(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("Functions: {}\n")
    with pytest.raises(ConfigError) as caught:
        convert(path)
    assert caught.value.problems == ["not a CloudFormation or SAM template: no Resources section"]


# -- the CLI -------------------------------------------------------------------------------


def test_convert_prints_a_configuration_that_loads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = TEMPLATES / "kinesis" / "template.yaml"
    assert (
        main(["convert", "--template", str(template), "--parameter-overrides", "RecordDir=/r"]) == 0
    )
    out = capsys.readouterr().out
    converted = template.parent / ".converted.yaml"  # beside the template: same CodeUri base
    try:
        converted.write_text(out)
        loaded = load_config(converted)
    finally:
        converted.unlink()
    expected = convert(template, parameter_overrides={"RecordDir": "/r"}).validate()
    assert loaded.model_dump() == expected.model_dump()
    assert loaded.Dev == expected.Dev


def test_validate_lists_what_is_not_used(capsys: pytest.CaptureFixture[str]) -> None:
    template = TEMPLATES / "sqs" / "template.yaml"
    assert main(["validate", "--template", str(template)]) == 0
    out = capsys.readouterr().out
    assert "not used by pumphouse:\n  Resources.OrdersFunction.Properties.Tracing\n" in out
    assert out.rstrip().endswith("valid (1 functions, 1 mappings)")


def test_cli_problems_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, FUNCTION + "      Timeout: !Ref Missing\n")
    assert main(["validate", "--template", str(path)]) == 2
    assert "Resources.Orders.Properties.Timeout.Ref: !Ref 'Missing'" in capsys.readouterr().err
    assert main(["validate", "--template", str(path), "--parameter-overrides", "Nope"]) == 2
    assert "--parameter-overrides 'Nope': expected KEY=VALUE" in capsys.readouterr().err
    assert main(["validate"]) == 2
    assert "give a configuration (-c FILE) or a template" in capsys.readouterr().err


def test_parameter_overrides_in_the_aws_cli_form(tmp_path: Path) -> None:
    path = write(
        tmp_path, "Parameters: {T: {Type: Number}}\n" + FUNCTION + "      Timeout: !Ref T\n"
    )
    from pumphouse.cli import build_parser
    from pumphouse.template_cli import conversion_from_args

    args = build_parser().parse_args(
        [
            "validate",
            "--template",
            str(path),
            "--parameter-overrides",
            "ParameterKey=T,ParameterValue=9",
        ]
    )
    config = conversion_from_args(args).validate()
    assert next(iter(config.Functions.values())).Timeout == 9


def test_default_stack_name_is_a_valid_stack_name(tmp_path: Path) -> None:
    directory = tmp_path / "2 my.app"
    directory.mkdir()
    conversion = convert(write(directory, FUNCTION))
    assert conversion.stack_name == "stack-2-my-app"
    assert list(conversion.data["Functions"]) == ["stack-2-my-app-Orders"]


def test_global_properties_pumphouse_ignores_are_listed_once(tmp_path: Path) -> None:
    text = "Globals:\n  Function: {Architectures: [arm64]}\n" + FUNCTION
    text += "  Other:\n    Type: AWS::Serverless::Function\n    Properties: {Handler: a.b}\n"
    assert convert(write(tmp_path, text)).not_used == ["Globals.Function.Architectures"]


def test_dev_refuses_an_msk_mapping_with_one_clear_problem() -> None:
    from pumphouse.devstack import plan_for

    config = convert(TEMPLATES / "kafka" / "template.yaml").validate()
    with pytest.raises(ConfigError) as caught:
        plan_for(config)
    assert caught.value.problems == [
        "kafka-KafkaFunction/kafka:orders: an Amazon MSK cluster has no local stand-in under "
        "pumphouse dev: give the mapping a SelfManagedEventSource (a SelfManagedKafka event) "
        "to run it on the local broker"
    ]


def test_every_malformed_reference_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        FUNCTION
        + "      Environment: {Variables: {A: '{{resolve:ssm:/a}}', B: '{{resolve:secretsmanager:}}'}}\n",
    )
    assert problems(path) == [
        "Resources.Orders.Properties.Environment.Variables.A: {{resolve:ssm:...}} is not "
        "resolvable locally: pumphouse resolves only Secrets Manager references",
        "Resources.Orders.Properties.Environment.Variables.B: "
        "{{resolve:secretsmanager:}}: no secret id",
    ]


def test_stream_events_with_windows_metrics_and_sns_s3_destinations() -> None:
    conversion = convert(TEMPLATES / "streams" / "template.yaml")
    changes, clicks = conversion.data["EventSourceMappings"]
    assert changes == {
        "FunctionName": "streams-Totals",
        "EventSourceArn": "arn:aws:dynamodb:us-east-1:000000000000:table/streams-Table/stream/"
        "1970-01-01T00:00:00.000",
        "StartingPosition": "LATEST",
        "BatchSize": 50,
        "MaximumBatchingWindowInSeconds": 2,
        "TumblingWindowInSeconds": 60,
        "ParallelizationFactor": 3,
        "MaximumRetryAttempts": 2,
        "MaximumRecordAgeInSeconds": 120,
        "BisectBatchOnFunctionError": True,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MetricsConfig": {"Metrics": ["EventCount"]},
        "DestinationConfig": {
            "OnFailure": {"Destination": "arn:aws:sns:us-east-1:000000000000:streams-Alerts"}
        },
    }
    assert clicks == {
        "FunctionName": "streams-Totals",
        "EventSourceArn": "arn:aws:kinesis:us-east-1:000000000000:stream/streams-Stream",
        "StartingPosition": "LATEST",
        "TumblingWindowInSeconds": 30,
        "Enabled": False,
        "FilterCriteria": {"Filters": [{"Pattern": '{"data": {"kind": ["click"]}}'}]},
        "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:s3:::stream-failures"}},
    }
    assert conversion.data["Functions"]["streams-Totals"] == {
        "Handler": "totals.handler",
        "Runtime": "python3.12",
        "ReservedConcurrentExecutions": 4,
        "ProvisionedConcurrency": 1,
        "CodeUri": ".",
    }
    dev = conversion.data["Dev"]
    assert dev["Streams"] == {"streams-Stream": 4}  # on demand: four shards to start
    assert dev["Tables"]["streams-Table"]["StreamViewType"] == "KEYS_ONLY"
    assert (dev["SnsTopics"], dev["Buckets"]) == (["streams-Alerts"], ["stream-failures"])
    config = conversion.validate()
    assert [m.tumbling_window for m in config.EventSourceMappings] == [60, 30]


def test_parameter_overrides_as_sam_writes_them(tmp_path: Path) -> None:
    from pumphouse.cli import build_parser
    from pumphouse.template_cli import conversion_from_args

    path = write(
        tmp_path,
        "Parameters: {T: {Type: Number}, D: {Type: String}}\n"
        + FUNCTION
        + "      Timeout: !Ref T\n      Description: !Ref D\n",
    )
    args = build_parser().parse_args(
        ["validate", "--template", str(path), "--parameter-overrides", "T=9 D='two words'"]
    )
    function = next(iter(conversion_from_args(args).validate().Functions.values()))
    assert (function.Timeout, function.Description) == (9, "two words")


def test_invoke_a_template_function(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"Records": [{"eventSource": "aws:kinesis", "kinesis": {"data": "aGk="}}]}')
    template = TEMPLATES / "kinesis" / "template.yaml"
    argv = ["invoke", "kinesis-ClicksFunction", "--template", str(template), "--event", str(event)]
    assert main([*argv, "--parameter-overrides", f"RecordDir={tmp_path}"]) == 0
    assert '"batchItemFailures": []' in capsys.readouterr().out
    assert (tmp_path / "records.jsonl").read_text() == '{"data": "hi", "source": "aws:kinesis"}\n'


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, FUNCTION + "      Handler: other.handler\n")
    with pytest.raises(ConfigError) as caught:
        convert(path)
    assert caught.value.problems == [
        "line 13, column 7: invalid YAML: duplicate key 'Handler' (first given at line 11)"
    ]


def test_validate_checks_the_code_at_its_template_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        FUNCTION + "  Missing:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: nowhere/, Handler: app.handler}\n",
    )
    assert main(["validate", "--template", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "  - Resources.Orders.Properties.Handler: Runtime.ImportModuleError: Unable to import "
        "module 'app': No module named 'app'\n"
    ) in err
    assert (
        f"  - Resources.Missing.Properties.CodeUri: directory not found: {tmp_path / 'nowhere'}\n"
        in err
    )
    assert main(["validate", "--template", str(path), "--skip-handler-check"]) == 0
