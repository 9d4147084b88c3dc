"""The Kinesis record and event shape, built by pumphouse (docs/behaviour.md §2), end to end."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from handlers.streams import support as s

from pumphouse.devstack import KinesisMock

pytestmark = pytest.mark.slow

ROLE = "arn:aws:iam::123456789012:role/lambda-role"


async def test_kinesis_records_have_lambdas_shape(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    record_file = tmp_path / "records.jsonl"
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 1)
        before = time.time()
        put = await s.put_records(kinesis, unique_name, [("pk-1", {"k": "pk-1", "i": 0})])
        function = s.function("recorder.handler", record_file, FULL_RECORDS="1")
        function["Role"] = ROLE
        config = s.config_yaml(
            settings=s.settings(
                state_store=f"sqlite:///{tmp_path}/state.db", kinesis_url=kinesis_mock.url
            ),
            functions={"f": function},
            mappings=[{"FunctionName": "f", "EventSourceArn": arn, "StartingPosition": "TRIM_HORIZON"}],
        )
        async with s.running(config):
            await s.wait_for(lambda: len(s.delivered(record_file)) == 1, what="the record")
    record = s.delivered(record_file)[0]["record"]
    shard, seq = put[0]
    arrival = record["kinesis"].pop("approximateArrivalTimestamp")
    assert isinstance(arrival, float) and before - 5 < arrival < time.time() + 5
    assert round(arrival, 3) == arrival, "epoch seconds with milliseconds"
    assert json.loads(base64.b64decode(record["kinesis"].pop("data"))) == {"k": "pk-1", "i": 0}
    # No encryptionType: AWS sends none for an unencrypted stream (kinesis-mock says "NONE").
    assert record == {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "pk-1", "sequenceNumber": seq},
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": ROLE,
        "awsRegion": "us-east-1",
        "eventSourceARN": arn,
    }
