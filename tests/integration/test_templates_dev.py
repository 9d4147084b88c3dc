"""``pumphouse dev --template``: the template's resources created on local servers as
declared, its endpoints written to ``--endpoints-file``, records flowing through the
mappings it declares into the functions it declares.

Our own templates (``tests/templates``) run for SQS (with a layer, a secret resolved from
a ``{{resolve:secretsmanager:...}}`` reference and a filter), Kinesis (with an on-failure
queue) and DynamoDB (plain CloudFormation JSON); so do the public templates marked end to
end, with stand-in handlers where their code is not part of the collection."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from pumphouse.devstack import free_port

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PUBLIC = Path(__file__).resolve().parents[2].parent / "shared" / "sam-templates"

RECORDING_HANDLER = """\
import json, os

def {name}(event, context):
    with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "records.jsonl"), "a") as out:
        for record in event["Records"]:
            out.write(json.dumps(record) + "\\n")
    return {{"batchItemFailures": []}}
"""


class Dev:
    """A running ``pumphouse dev`` and the endpoints it wrote."""

    def __init__(self, proc: subprocess.Popen[str], endpoints: dict[str, str], log: Path) -> None:
        self.proc = proc
        self.endpoints = endpoints
        self.log = log

    def client(self, service: str, key: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoints[key],
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@contextmanager
def dev(tmp_path: Path, template: Path, *args: str, settings_extra: str = "") -> Iterator[Dev]:
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"Settings:\n  MetricsAddress: 127.0.0.1:{free_port()}\n  ShutdownTimeoutSeconds: 5\n"
        + settings_extra
    )
    endpoints_file = tmp_path / "endpoints.json"
    log = tmp_path / "dev.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pumphouse",
                "--log-format",
                "json",
                "dev",
                "--template",
                str(template),
                "-c",
                str(settings),
                "--endpoints-file",
                str(endpoints_file),
                *args,
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    try:
        deadline = time.monotonic() + 90
        while not endpoints_file.exists():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield Dev(proc, json.loads(endpoints_file.read_text()), log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_records(
    path: Path, count: int, *, log: Path, poke: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """The JSON lines a handler appended, once there are ``count``; ``poke`` is called
    every half second meanwhile (to write again to a source read from LATEST)."""
    deadline = time.monotonic() + 60
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        assert time.monotonic() < deadline, (
            f"{len(lines)} of {count} records; log:\n{log.read_text()[-3000:]}"
        )
        if poke is not None:
            poke()
        time.sleep(0.5)


# -- our templates -------------------------------------------------------------------------


def test_sqs_template_end_to_end(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    template = TEMPLATES / "sqs" / "template.yaml"
    with dev(
        tmp_path, template, "--stack-name", "shop", "--parameter-overrides", f"RecordDir={records}"
    ) as run:
        assert set(run.endpoints) == {
            "Sqs",
            "Sns",
            "S3",
            "DynamoDB",
            "DynamoDBStreams",
            "SecretsManager",
        }
        sqs = run.client("sqs", "Sqs")
        url = sqs.get_queue_url(QueueName="shop-OrdersQueue")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["VisibilityTimeout"] == "20"
        assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"].endswith(
            ":shop-OrdersDLQ"
        )
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "other", "n": 0}))
        for n in (1, 2):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "order", "n": n}))
        seen = wait_for_records(records / "records.jsonl", 2, log=run.log)
    assert sorted(r["body"]["n"] for r in seen) == [1, 2]  # the filter dropped the other
    assert {r["layer"] for r in seen} == {"from-layer"}
    assert {r["api_key"] for r in seen} == {"s3cr3t-value"}
    assert {r["stage"] for r in seen} == {"development"}
    assert {r["function"] for r in seen} == {"shop-OrdersFunction"}
    assert "s3cr3t-value" not in run.log.read_text()


def test_kinesis_template_end_to_end(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    template = TEMPLATES / "kinesis" / "template.yaml"
    with dev(tmp_path, template, "--parameter-overrides", f"RecordDir={records}") as run:
        assert set(run.endpoints) >= {"Kinesis", "Sqs"}
        kinesis = run.client("kinesis", "Kinesis")
        shards = kinesis.list_shards(StreamName="kinesis-Clicks")["Shards"]
        assert len(shards) == 2
        for n in range(4):
            kinesis.put_record(StreamName="kinesis-Clicks", Data=f"click-{n}", PartitionKey=str(n))
        kinesis.put_record(StreamName="kinesis-Clicks", Data="poison", PartitionKey="p")
        seen = wait_for_records(records / "records.jsonl", 4, log=run.log)
        sqs = run.client("sqs", "Sqs")
        url = sqs.get_queue_url(QueueName="kinesis-ClicksFailures")["QueueUrl"]
        deadline = time.monotonic() + 60
        failures: list[dict[str, Any]] = []
        while not failures:
            assert time.monotonic() < deadline, run.log.read_text()[-3000:]
            answer = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
            failures = [json.loads(m["Body"]) for m in answer.get("Messages", [])]
    assert {r["data"] for r in seen} >= {f"click-{n}" for n in range(4)}
    assert failures[0]["KinesisBatchInfo"]["batchSize"] == 1  # bisected down to the poison
    assert failures[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"


def test_dynamodb_cloudformation_template_end_to_end(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    template = TEMPLATES / "dynamodb" / "template.json"
    with dev(tmp_path, template, "--parameter-overrides", f"RecordDir={records}") as run:
        ddb = run.client("dynamodb", "DynamoDB")
        table = ddb.describe_table(TableName="dynamodb-orders")["Table"]
        assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
        assert table["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        ddb.put_item(TableName="dynamodb-orders", Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
        ddb.put_item(
            TableName="dynamodb-orders", Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"S": "y"}}
        )
        ddb.put_item(TableName="dynamodb-orders", Item={"pk": {"S": "b"}, "sk": {"N": "2"}})
        # One shard, in order: had the MODIFY passed the filter, it would be the second.
        seen = wait_for_records(records / "records.jsonl", 2, log=run.log)
    assert [(r["event"], r["keys"]["pk"]["S"]) for r in seen] == [("INSERT", "a"), ("INSERT", "b")]


def test_self_managed_kafka_template_reads_from_the_start(tmp_path: Path) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    records = tmp_path / "records"
    records.mkdir()
    template = TEMPLATES / "selfmanaged" / "template.yaml"
    kafka = (
        "  Kafka: {SessionTimeoutMs: 2000, RebalanceTimeoutMs: 2000, HeartbeatIntervalMs: 300}\n"
    )
    with dev(
        tmp_path, template, "--parameter-overrides", f"RecordDir={records}", settings_extra=kafka
    ) as run:
        assert set(run.endpoints) == {"Kafka"}

        async def produce() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=run.endpoints["Kafka"])
            await producer.start()
            try:
                for n in range(3):
                    await producer.send_and_wait("payments", f"payment-{n}".encode(), partition=0)
            finally:
                await producer.stop()

        asyncio.run(produce())
        seen = wait_for_records(records / "records.jsonl", 3, log=run.log)
    assert [r["value"] for r in seen] == ["payment-0", "payment-1", "payment-2"]
    assert {r["source"] for r in seen} == {"SelfManagedKafka"}


# -- public templates marked end to end ----------------------------------------------------


def stand_in(root: Path, directory: str, module: str, function: str) -> Path:
    code = root / directory
    code.mkdir(parents=True, exist_ok=True)
    (code / f"{module}.py").write_text(RECORDING_HANDLER.format(name=function))
    return code / "records.jsonl"


def test_public_sqs_python_template(tmp_path: Path) -> None:
    code = tmp_path / "code"
    recorded = stand_in(code, "src", "app", "lambda_handler")
    template = PUBLIC / "sqs-lambda-python-sam" / "template.yaml"
    with dev(tmp_path, template, "--code-root", str(code)) as run:
        sqs = run.client("sqs", "Sqs")
        url = sqs.get_queue_url(QueueName="sqs-lambda-python-sam-ProcessingQueue")["QueueUrl"]
        for n in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=f"message-{n}")
        seen = wait_for_records(recorded, 3, log=run.log)
    assert sorted(r["body"] for r in seen) == ["message-0", "message-1", "message-2"]


def test_public_kinesis_error_handling_template(tmp_path: Path) -> None:
    code = tmp_path / "code"
    recorded = stand_in(code, "kinesis-consumer", "kinesis-consumer-fn", "lambda_handler")
    template = PUBLIC / "kinesis-lambda-error-handling" / "template.yaml"
    with dev(tmp_path, template, "--code-root", str(code)) as run:
        kinesis = run.client("kinesis", "Kinesis")
        for n in range(3):
            kinesis.put_record(
                StreamName="DataActivityKinesisStream", Data=f"{n}", PartitionKey=str(n)
            )
        seen = wait_for_records(recorded, 3, log=run.log)
        run.client("sqs", "Sqs").get_queue_url(QueueName="AnomalyDataQueue")
    assert sorted(base64.b64decode(r["kinesis"]["data"]).decode() for r in seen) == ["0", "1", "2"]


def test_public_dynamodb_stream_template(tmp_path: Path) -> None:
    code = tmp_path / "code"
    recorded = stand_in(code, "src", "messageHandler", "lambda_handler")
    template = PUBLIC / "apigw-lambda-dynamodb-stream-lambda" / "template.yaml"
    with dev(tmp_path, template, "--code-root", str(code)) as run:
        ddb = run.client("dynamodb", "DynamoDB")
        written = iter(range(1000))

        def put() -> None:  # the mapping reads from LATEST: write until one arrives
            ddb.put_item(
                TableName="DemoStreamDynamoDBToLambda", Item={"id": {"S": f"item-{next(written)}"}}
            )

        seen = wait_for_records(recorded, 1, log=run.log, poke=put)
    assert seen[0]["eventSource"] == "aws:dynamodb"
    assert seen[0]["eventName"] == "INSERT"
    assert set(seen[0]["dynamodb"]) >= {"Keys", "NewImage"}
    assert "OldImage" not in seen[0]["dynamodb"]  # StreamViewType NEW_IMAGE, as declared
