"""Sample traffic a user shapes: record templates, and `pumphouse events generate` options."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pumphouse.devproducer import dynamodb_item, templated_record
from pumphouse.samples import RecordTemplate, TemplateError, attribute_map

NOW = 1767225600.123  # 2026-01-01T00:00:00.123Z


def test_placeholders_are_filled_per_record() -> None:
    template = RecordTemplate(
        {
            "orderId": "order-{{seq}}",
            "n": "{{seq}}",
            "status": "{{choice:NEW|PAID|SHIPPED}}",
            "at": "{{timestamp}}",
            "ms": "{{ epoch_ms }}",
            "items": [{"sku": "sku-{{seq}}-{{choice:A|B}}", "quantity": 1}],
            "fixed": 12.5,
        }
    )
    rng = random.Random(7)
    records = [template.render(n, now=NOW, rng=rng) for n in range(20)]
    assert [r["orderId"] for r in records[:3]] == ["order-0", "order-1", "order-2"]
    assert [r["n"] for r in records[:3]] == [0, 1, 2]
    assert {r["status"] for r in records} == {"NEW", "PAID", "SHIPPED"}
    assert records[0]["at"] == "2026-01-01T00:00:00.123Z"
    assert records[0]["ms"] == 1767225600123
    assert records[5]["items"][0]["sku"] in ("sku-5-A", "sku-5-B")
    assert records[5]["fixed"] == 12.5
    assert template.render(0, now=NOW)["orderId"] == "order-0"  # the template is unchanged


def test_an_unknown_placeholder_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"a": {"b": ["ok", "{{sequence}}"]}, "c": "{{choice:}}"}')
    with pytest.raises(TemplateError) as caught:
        RecordTemplate.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "a.b[1]: unknown placeholder {{sequence}}" in message
    assert "c: unknown placeholder {{choice:}}" in message


def test_a_template_that_is_not_json_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("{orderId: 1}")
    with pytest.raises(TemplateError, match="not JSON"):
        RecordTemplate.load(path)


def test_templated_records_for_each_source() -> None:
    template = RecordTemplate({"sku": "{{choice:A|B}}", "n": "{{seq}}"})
    record, key = templated_record(template, 11)
    assert record["n"] == 11 and key == "key-3"
    assert dynamodb_item(record, 11) == {
        "id": {"S": "item-000011"},
        "sku": {"S": record["sku"]},
        "n": {"N": "11"},
    }
    assert dynamodb_item({"id": 5, "x": None}, 1) == {"id": {"S": "5"}, "x": {"NULL": True}}
    assert dynamodb_item("plain", 2)["value"] == {"S": "plain"}


def test_attribute_values() -> None:
    assert attribute_map({"s": "x", "n": 1.5, "b": True, "z": None, "m": {"l": [1, "a"]}}) == {
        "s": {"S": "x"},
        "n": {"N": "1.5"},
        "b": {"BOOL": True},
        "z": {"NULL": True},
        "m": {"M": {"l": {"L": [{"N": "1"}, {"S": "a"}]}}},
    }


def generate(*args: str) -> tuple[int, Any, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pumphouse", "events", "generate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, json.loads(done.stdout) if done.returncode == 0 else None, done.stderr


def test_events_generate_sqs_body_is_delivered_as_written(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"orderId": 1,  "note": "spaced"}')
    code, event, _ = generate("sqs", "--body", f"@{body}", "--records", "2")
    assert code == 0
    assert [r["body"] for r in event["Records"]] == ['{"orderId": 1,  "note": "spaced"}'] * 2


def test_events_generate_kafka_key_headers_and_value() -> None:
    code, event, _ = generate(
        "kafka", "--body", '{"a": 1}', "--key", "k-1", "--header", "trace=ab", "--header", "x="
    )
    assert code == 0
    (record,) = next(iter(event["records"].values()))
    assert base64.b64decode(record["value"]) == b'{"a": 1}'
    assert base64.b64decode(record["key"]) == b"k-1"
    assert record["headers"] == [{"trace": [97, 98]}, {"x": []}]


def test_events_generate_kinesis_partition_key() -> None:
    code, event, _ = generate("kinesis", "--body", "plain text", "--partition-key", "pk-9")
    assert code == 0
    kinesis = event["Records"][0]["kinesis"]
    assert kinesis["partitionKey"] == "pk-9"
    assert base64.b64decode(kinesis["data"]) == b"plain text"


@pytest.mark.parametrize(
    ("args", "name", "images"),
    [
        (["--body", '{"id": "o1", "n": 2}'], "INSERT", {"NewImage"}),
        (["--body", '{"id": "o1", "n": 2}', "--old-image", '{"id": "o1", "n": 1}'], "MODIFY",
         {"NewImage", "OldImage"}),
        (["--old-image", '{"sku": "x"}'], "REMOVE", {"OldImage"}),
    ],
)
def test_events_generate_dynamodb_images(args: list[str], name: str, images: set[str]) -> None:
    code, event, _ = generate("dynamodb", *args)
    assert code == 0
    record = event["Records"][0]
    assert record["eventName"] == name
    assert images == {k for k in ("NewImage", "OldImage") if k in record["dynamodb"]}
    if "NewImage" in images:
        assert record["dynamodb"]["NewImage"] == {"id": {"S": "o1"}, "n": {"N": "2"}}
        assert record["dynamodb"]["Keys"] == {"id": {"S": "o1"}}
    else:
        assert record["dynamodb"]["Keys"] == {"sku": {"S": "x"}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sqs", "--key", "k"], "--key is for kafka events, not sqs"),
        (["kafka", "--partition-key", "p"], "--partition-key is for kinesis events, not kafka"),
        (["kafka", "--header", "novalue"], "expected NAME=VALUE"),
        (["dynamodb", "--body", "[1]"], "--body must be a JSON object"),
        (["sqs", "--body", "@/nonexistent/body.json"], "cannot read /nonexistent/body.json"),
    ],
)
def test_events_generate_misuse_is_one_clear_message(args: list[str], message: str) -> None:
    code, _, stderr = generate(*args)
    assert code == 2
    assert message in stderr and "Traceback" not in stderr
