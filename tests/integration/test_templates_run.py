"""What ``pumphouse run --template`` does before the service starts, against a real moto
server: Secrets Manager dynamic references resolved (by name, ARN, JSON key and version
stage), secrets never shown in a problem, and a DynamoDB table's real stream ARN read
from the table."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import boto3
import pytest

from pumphouse.config.templates import TemplateOptions, convert_template
from pumphouse.config.templates.dynamic import redact
from pumphouse.devstack import MotoServer
from pumphouse.errors import ConfigError, PumphouseError
from pumphouse.template_cli import prepare_for_run

pytestmark = pytest.mark.slow


def template(tmp_path: Path, moto: MotoServer, body: str) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"Settings:\n  Endpoints: {{SecretsManager: '{moto.url}', DynamoDB: '{moto.url}'}}\n"
    )
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def options(tmp_path: Path) -> TemplateOptions:
    return TemplateOptions(config_path=tmp_path / "settings.yaml", stack_name="run")


async def test_secret_references_and_stream_arns_are_resolved(
    tmp_path: Path, moto_server: MotoServer, unique_name: str
) -> None:
    manager = boto3.client("secretsmanager", endpoint_url=moto_server.url, region_name="us-east-1")
    arn = manager.create_secret(
        Name=unique_name, SecretString=json.dumps({"user": "svc", "password": "old-pass"})
    )["ARN"]
    manager.put_secret_value(
        SecretId=unique_name,
        SecretString=json.dumps({"user": "svc", "password": "new-pass"}),
        VersionStages=["AWSCURRENT"],
    )
    ddb = boto3.client("dynamodb", endpoint_url=moto_server.url, region_name="us-east-1")
    table = ddb.create_table(
        TableName=f"{unique_name}-table",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]
    path = template(
        tmp_path,
        moto_server,
        f"""\
        Resources:
          Table:
            Type: AWS::DynamoDB::Table
            Properties:
              TableName: {unique_name}-table
              StreamSpecification: {{StreamViewType: NEW_IMAGE}}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Environment:
                Variables:
                  WHOLE: "{{{{resolve:secretsmanager:{unique_name}}}}}"
                  PASSWORD: "{{{{resolve:secretsmanager:{arn}:SecretString:password}}}}"
                  PREVIOUS: "{{{{resolve:secretsmanager:{unique_name}:SecretString:password:AWSPREVIOUS}}}}"
                  MIXED: "user=${{USER}} password={{{{resolve:secretsmanager:{unique_name}:SecretString:password}}}}"
              Events:
                Changes:
                  Type: DynamoDB
                  Properties:
                    Stream: !GetAtt Table.StreamArn
                    StartingPosition: TRIM_HORIZON
        """,
    )
    conversion = convert_template(path, options(tmp_path))
    config = conversion.validate()
    assert config.EventSourceMappings[0].EventSourceArn.endswith("/stream/1970-01-01T00:00:00.000")
    prepared = await prepare_for_run(conversion, config)
    variables = prepared.Functions["run-Fn"].Environment.Variables
    assert json.loads(variables["WHOLE"]) == {"user": "svc", "password": "new-pass"}
    assert variables["PASSWORD"] == "new-pass"
    assert variables["PREVIOUS"] == "old-pass"
    assert variables["MIXED"] == "user=${USER} password=new-pass"  # template text is literal
    assert prepared.EventSourceMappings[0].EventSourceArn == table["LatestStreamArn"]


async def test_a_value_resolved_from_a_secret_is_validated_at_its_template_path(
    tmp_path: Path, moto_server: MotoServer, unique_name: str
) -> None:
    secret = "s3cr3t-" * 50
    boto3.client(
        "secretsmanager", endpoint_url=moto_server.url, region_name="us-east-1"
    ).create_secret(Name=unique_name, SecretString=secret)
    path = template(
        tmp_path,
        moto_server,
        f"""\
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Description: "{{{{resolve:secretsmanager:{unique_name}}}}}"
        """,
    )
    conversion = convert_template(path, options(tmp_path))
    with pytest.raises(ConfigError) as caught:
        await prepare_for_run(conversion, conversion.validate())
    assert caught.value.problems == [
        "Resources.Fn.Properties.Description: is 350 characters long, above the maximum 256"
    ]
    assert "s3cr3t" not in str(caught.value)


def test_redaction_of_resolved_values() -> None:
    assert redact("user svc has password pa55 (pa55word)", ["pa55", "pa55word"]) == (
        "user svc has password *** (***)"
    )


async def test_a_missing_secret_or_key_stops_the_start(
    tmp_path: Path, moto_server: MotoServer, unique_name: str
) -> None:
    boto3.client(
        "secretsmanager", endpoint_url=moto_server.url, region_name="us-east-1"
    ).create_secret(Name=unique_name, SecretString=json.dumps({"a": "b"}))
    for reference, message in (
        (
            f"{unique_name}-missing",
            f"dynamic reference to secret {unique_name}-missing: Secrets Manager "
            "GetSecretValue failed (ResourceNotFoundException)",
        ),
        (
            f"{unique_name}:SecretString:nope",
            f"dynamic reference to secret {unique_name}: the secret has no JSON key 'nope'",
        ),
    ):
        path = template(
            tmp_path,
            moto_server,
            f"""\
            Resources:
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: src
                  Handler: app.handler
                  Environment: {{Variables: {{X: "{{{{resolve:secretsmanager:{reference}}}}}"}}}}
            """,
        )
        conversion = convert_template(path, options(tmp_path))
        with pytest.raises(PumphouseError) as caught:
            await prepare_for_run(conversion, conversion.validate())
        assert str(caught.value) == message


def test_run_a_template_against_existing_resources(
    tmp_path: Path, moto_server: MotoServer, unique_name: str
) -> None:
    """``pumphouse run --template``: no resources created, secrets read from the configured
    endpoint, records flowing into the template's function."""
    import signal
    import subprocess
    import sys
    import time

    from pumphouse.devstack import free_port

    stack = f"run-{unique_name}"
    boto3.client(
        "secretsmanager", endpoint_url=moto_server.url, region_name="us-east-1"
    ).create_secret(Name=f"{stack}-api-key", SecretString=json.dumps({"key": "from-moto"}))
    sqs = boto3.client("sqs", endpoint_url=moto_server.url, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"{stack}-OrdersQueue")["QueueUrl"]
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        textwrap.dedent(
            f"""\
            Settings:
              StateStore: sqlite:///{tmp_path}/state.db
              MetricsAddress: 127.0.0.1:{free_port()}
              ShutdownTimeoutSeconds: 5
              Endpoints: {{Sqs: "{moto_server.url}", SecretsManager: "{moto_server.url}"}}
            """
        )
    )
    records = tmp_path / "records"
    records.mkdir()
    template = Path(__file__).resolve().parent.parent / "templates" / "sqs" / "template.yaml"
    log = tmp_path / "run.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "pumphouse", "--log-format", "json", "run",
                "--template", str(template), "-c", str(settings), "--stack-name", stack,
                "--parameter-overrides", f"RecordDir={records}",
            ],
            cwd=tmp_path,
            stderr=stderr,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "order", "n": 1}))
        recorded = records / "records.jsonl"
        deadline = time.monotonic() + 60
        while not recorded.exists():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (seen,) = [json.loads(line) for line in recorded.read_text().splitlines()]
    assert (seen["body"], seen["api_key"], seen["layer"]) == (
        {"kind": "order", "n": 1},
        "from-moto",
        "from-layer",
    )
    assert "from-moto" not in log.read_text()
