"""Per-source data fields: SQS bodies, Kinesis base64 data, DynamoDB typed values, Kafka.

Records are shaped exactly as the handler receives them (docs/behaviour.md §2).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from pumphouse.patterns import FilterSet, SourceKind, compile_filter_criteria, records


def compile_(source: SourceKind, *patterns: dict[str, Any]) -> FilterSet:
    return compile_filter_criteria([orjson.dumps(p).decode() for p in patterns], source=source)


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


# --- SQS -------------------------------------------------------------------------------------


def sqs_record(body: str, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnK...",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {
            "Author": {
                "stringValue": "John",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "awsRegion": "us-east-2",
    }
    record.update(extra)
    return record


def test_sqs_lambda_guide_example_json_body() -> None:
    # with-sqs-filtering: process only records whose RequestCode is "BBBB".
    filters = compile_(SourceKind.SQS, {"body": {"RequestCode": ["BBBB"]}})
    body = (
        '{\n "RecordNumber": 1234,\n "TimeStamp": "yyyy-mm-ddThh:mm:ss",\n "RequestCode": "%s"\n}'
    )
    assert filters.matches(sqs_record(body % "BBBB"))
    assert not filters.matches(sqs_record(body % "AAAA"))


def test_sqs_plain_body_with_plain_pattern() -> None:
    filters = compile_(SourceKind.SQS, {"body": [{"prefix": "Result: "}]})
    assert filters.matches(sqs_record("Result: ok"))
    assert not filters.matches(sqs_record("Error: no"))


def test_sqs_plain_body_with_json_pattern_is_dropped() -> None:
    filters = compile_(SourceKind.SQS, {"body": {"RequestCode": ["BBBB"]}})
    assert not filters.matches(sqs_record("Test message."))
    assert not filters.matches(sqs_record("{not json"))
    # Even a pattern that only asks for an absent field does not match a plain body.
    absent = compile_(SourceKind.SQS, {"body": {"RequestCode": [{"exists": False}]}})
    assert not absent.matches(sqs_record("Test message."))
    assert absent.matches(sqs_record('{"Other": 1}'))


def test_sqs_json_body_with_plain_pattern_is_dropped() -> None:
    filters = compile_(SourceKind.SQS, {"body": [{"prefix": "{"}]})
    assert not filters.matches(sqs_record('{"RequestCode": "BBBB"}'))
    anything_but = compile_(SourceKind.SQS, {"body": [{"anything-but": "x"}]})
    assert not anything_but.matches(sqs_record('{"RequestCode": "BBBB"}'))
    # Even a rule that would accept "no value here" does not bridge the format mismatch.
    absent = compile_(SourceKind.SQS, {"body": [{"exists": False}]})
    assert not absent.matches(sqs_record('{"RequestCode": "BBBB"}'))


def test_sqs_json_scalar_bodies_match_as_parsed_values() -> None:
    # Documented choice: a body that is valid JSON is matched as its parsed value.
    assert compile_(SourceKind.SQS, {"body": [123]}).matches(sqs_record("123"))
    assert not compile_(SourceKind.SQS, {"body": ["123"]}).matches(sqs_record("123"))
    numeric = compile_(SourceKind.SQS, {"body": [{"numeric": [">", 100]}]})
    assert numeric.matches(sqs_record(" 123 "))
    assert compile_(SourceKind.SQS, {"body": ["hello"]}).matches(sqs_record('"hello"'))
    assert compile_(SourceKind.SQS, {"body": [None]}).matches(sqs_record("null"))


def test_sqs_metadata_filters_apply_whatever_the_body() -> None:
    filters = compile_(SourceKind.SQS, {"attributes": {"ApproximateReceiveCount": ["1"]}})
    assert filters.matches(sqs_record("plain text"))
    assert filters.matches(sqs_record('{"a": 1}'))
    assert not filters.matches(sqs_record("plain", attributes={"ApproximateReceiveCount": "2"}))


def test_sqs_message_attributes() -> None:
    filters = compile_(SourceKind.SQS, {"messageAttributes": {"Author": {"stringValue": ["John"]}}})
    assert filters.matches(sqs_record("x"))
    assert not filters.matches(sqs_record("x", messageAttributes={}))


def test_sqs_fifo_metadata() -> None:
    filters = compile_(SourceKind.SQS, {"attributes": {"MessageGroupId": [{"prefix": "vip-"}]}})
    vip = sqs_record("x", attributes={"MessageGroupId": "vip-1", "SequenceNumber": "1"})
    assert filters.matches(vip)
    assert not filters.matches(sqs_record("x"))


def test_sqs_body_and_metadata_together() -> None:
    filters = compile_(
        SourceKind.SQS,
        {"body": {"type": ["order"]}, "eventSourceARN": [{"suffix": ":my-queue"}]},
    )
    assert filters.matches(sqs_record('{"type": "order"}'))
    assert not filters.matches(sqs_record('{"type": "order"}', eventSourceARN="arn:x:other"))
    assert not filters.matches(sqs_record('{"type": "refund"}'))


def test_sqs_module_docstring_worked_example() -> None:
    filters = compile_(
        SourceKind.SQS,
        {"body": {"type": ["order"], "total": [{"numeric": [">", 100]}]}},
        {"attributes": {"MessageGroupId": [{"prefix": "vip-"}]}},
    )
    assert filters.matches(sqs_record('{"type": "order", "total": 250}'))
    assert filters.matches(
        sqs_record('{"type": "order", "total": "250"}', attributes={"MessageGroupId": "vip-7"})
    )
    assert not filters.matches(sqs_record("order 250", attributes={"MessageGroupId": "std-1"}))


def test_sqs_record_without_body_does_not_match_a_body_pattern() -> None:
    record = sqs_record("x")
    del record["body"]
    assert not compile_(SourceKind.SQS, {"body": ["x"]}).matches(record)
    assert compile_(SourceKind.SQS, {"body": [{"exists": False}]}).matches(record)


# --- Kinesis ---------------------------------------------------------------------------------


def kinesis_record(data: bytes | str, partition_key: str = "1") -> dict[str, Any]:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "data": b64(data),
            "approximateArrivalTimestamp": 1545084650.987,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-2",
        "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
    }


ORDER = orjson.dumps(
    {"record": 12345, "order": {"type": "buy", "stock": "ANYCO", "quantity": 1000}}
)


def test_kinesis_lambda_guide_example() -> None:
    filters = compile_(SourceKind.KINESIS, {"data": {"order": {"type": ["buy"]}}})
    assert filters.matches(kinesis_record(ORDER))
    sell = orjson.dumps({"record": 1, "order": {"type": "sell"}})
    assert not filters.matches(kinesis_record(sell))


def test_kinesis_numeric_on_decoded_data() -> None:
    filters = compile_(
        SourceKind.KINESIS, {"data": {"order": {"quantity": [{"numeric": [">=", 1000]}]}}}
    )
    assert filters.matches(kinesis_record(ORDER))


def test_kinesis_partition_key_flat_as_in_the_lambda_guide() -> None:
    filters = compile_(
        SourceKind.KINESIS, {"partitionKey": ["1"], "data": {"order": {"type": ["buy"]}}}
    )
    assert filters.matches(kinesis_record(ORDER, partition_key="1"))
    assert not filters.matches(kinesis_record(ORDER, partition_key="2"))


def test_kinesis_partition_key_nested_as_in_the_record() -> None:
    filters = compile_(SourceKind.KINESIS, {"kinesis": {"partitionKey": ["1"]}})
    assert filters.matches(kinesis_record(b"not json", partition_key="1"))
    assert not filters.matches(kinesis_record(b"not json", partition_key="2"))


def test_kinesis_top_level_metadata() -> None:
    filters = compile_(SourceKind.KINESIS, {"eventSourceARN": [{"suffix": "/lambda-stream"}]})
    assert filters.matches(kinesis_record(b"anything"))


def test_kinesis_non_json_data_is_dropped_by_a_data_pattern() -> None:
    filters = compile_(SourceKind.KINESIS, {"data": {"order": {"type": ["buy"]}}})
    assert not filters.matches(kinesis_record(b"Hello, this is a test."))
    absent = compile_(SourceKind.KINESIS, {"data": {"order": [{"exists": False}]}})
    assert absent.matches(kinesis_record(b'{"other": 1}'))
    # A filter that names data never matches data that cannot be read, even exists:false.
    assert not absent.matches(kinesis_record(b"Hello, this is a test."))


def test_kinesis_non_json_data_still_passes_a_metadata_only_filter() -> None:
    filters = compile_(SourceKind.KINESIS, {"partitionKey": ["1"]})
    assert filters.matches(kinesis_record(b"\xff\xfe binary"))


def test_kinesis_invalid_base64_data_is_dropped() -> None:
    record = kinesis_record(ORDER)
    record["kinesis"]["data"] = "!!! not base64 !!!"
    assert not compile_(SourceKind.KINESIS, {"data": {"order": [{"exists": True}]}}).matches(record)


def test_kinesis_json_scalar_data_does_not_match_an_object_pattern() -> None:
    filters = compile_(SourceKind.KINESIS, {"data": {"a": [{"exists": False}]}})
    assert not filters.matches(kinesis_record(b"123"))
    assert not filters.matches(kinesis_record(b'"text"'))
    assert filters.matches(kinesis_record(b'{"b": 1}'))
    assert filters.matches(kinesis_record(b'[{"b": 1}]'))


def test_kinesis_raw_data_is_still_reachable_under_kinesis() -> None:
    record = kinesis_record(ORDER)
    raw = record["kinesis"]["data"]
    assert compile_(SourceKind.KINESIS, {"kinesis": {"data": [raw]}}).matches(record)


# --- DynamoDB --------------------------------------------------------------------------------


def ddb_record(event_name: str = "INSERT", **new_image: Any) -> dict[str, Any]:
    image = {
        "CustomerName": {"S": "AnyCompany Industries"},
        "AccountManager": {"S": "Pat Candella"},
        "PaymentTerms": {"S": "60 days"},
        "Id": {"N": "101"},
        **new_image,
    }
    return {
        "eventID": "f07f8ca4b0b26cb9c4e5e77e69f274ee",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1480642020,
            "Keys": {"CustomerName": {"S": "AnyCompany Industries"}},
            "NewImage": image,
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": (
            "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2016-12-01T00:00:00.000"
        ),
    }


def test_dynamodb_filter_on_table_key() -> None:
    filters = compile_(
        SourceKind.DYNAMODB,
        {"dynamodb": {"Keys": {"CustomerName": {"S": ["AnyCompany Industries"]}}}},
    )
    assert filters.matches(ddb_record())
    other = ddb_record()
    other["dynamodb"]["Keys"]["CustomerName"]["S"] = "Other Co"
    assert not filters.matches(other)


def test_dynamodb_filter_on_new_image_and_event_name() -> None:
    filters = compile_(
        SourceKind.DYNAMODB,
        {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"PaymentTerms": {"S": ["60 days"]}}}},
    )
    assert filters.matches(ddb_record("INSERT"))
    assert not filters.matches(ddb_record("MODIFY"))
    assert not filters.matches(ddb_record("INSERT", PaymentTerms={"S": "30 days"}))


def test_dynamodb_numbers_are_strings() -> None:
    assert compile_(
        SourceKind.DYNAMODB, {"dynamodb": {"NewImage": {"Id": {"N": ["101"]}}}}
    ).matches(ddb_record())
    as_number = compile_(SourceKind.DYNAMODB, {"dynamodb": {"NewImage": {"Id": {"N": [101]}}}})
    assert not as_number.matches(ddb_record())
    numeric = compile_(
        SourceKind.DYNAMODB, {"dynamodb": {"NewImage": {"Id": {"N": [{"numeric": [">", 100]}]}}}}
    )
    assert not numeric.matches(ddb_record())


def test_dynamodb_booleans_and_lists() -> None:
    filters = compile_(
        SourceKind.DYNAMODB, {"dynamodb": {"NewImage": {"Active": {"BOOL": [True]}}}}
    )
    assert filters.matches(ddb_record(Active={"BOOL": True}))
    assert not filters.matches(ddb_record(Active={"BOOL": False}))
    tags = compile_(
        SourceKind.DYNAMODB, {"dynamodb": {"NewImage": {"Tags": {"L": {"S": ["red"]}}}}}
    )
    assert tags.matches(ddb_record(Tags={"L": [{"S": "blue"}, {"S": "red"}]}))
    assert not tags.matches(ddb_record(Tags={"L": [{"S": "blue"}]}))


def test_dynamodb_exists_works_on_the_typed_leaf() -> None:
    # The attribute itself is an object, not a leaf: exists must name the type key.
    leaf = compile_(
        SourceKind.DYNAMODB,
        {"dynamodb": {"NewImage": {"AccountManager": {"S": [{"exists": True}]}}}},
    )
    node = compile_(
        SourceKind.DYNAMODB, {"dynamodb": {"NewImage": {"AccountManager": [{"exists": True}]}}}
    )
    assert leaf.matches(ddb_record())
    assert not node.matches(ddb_record())
    absent = compile_(
        SourceKind.DYNAMODB, {"dynamodb": {"NewImage": {"Discount": {"N": [{"exists": False}]}}}}
    )
    assert absent.matches(ddb_record())
    assert not absent.matches(ddb_record(Discount={"N": "5"}))


def test_dynamodb_remove_event_without_new_image() -> None:
    record = ddb_record("REMOVE")
    del record["dynamodb"]["NewImage"]
    assert compile_(SourceKind.DYNAMODB, {"eventName": ["REMOVE"]}).matches(record)
    image = compile_(SourceKind.DYNAMODB, {"dynamodb": {"NewImage": {"Id": {"N": ["101"]}}}})
    assert not image.matches(record)


# --- Kafka -----------------------------------------------------------------------------------


def kafka_record(value: bytes | str | None, key: bytes | str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "topic": "mytopic",
        "partition": 0,
        "offset": 15,
        "timestamp": 1545084650987,
        "timestampType": "CREATE_TIME",
        "headers": [{"headerKey": [104, 101, 97, 100, 101, 114]}],
    }
    if value is not None:
        record["value"] = b64(value)
    if key is not None:
        record["key"] = b64(key)
    return record


DEVICE = orjson.dumps({"device_ID": "AB1234", "session": {"start_time": "t", "duration": 162}})


def test_kafka_lambda_guide_json_value_example() -> None:
    filters = compile_(SourceKind.KAFKA, {"value": {"device_ID": [{"prefix": "AB"}]}})
    assert filters.matches(kafka_record(DEVICE))
    assert not filters.matches(kafka_record(orjson.dumps({"device_ID": "CD1"})))


def test_kafka_lambda_guide_plain_string_example() -> None:
    filters = compile_(SourceKind.KAFKA, {"value": [{"anything-but": ["error"]}]})
    assert filters.matches(kafka_record("Hello, this is a test."))
    assert not filters.matches(kafka_record("error"))


def test_kafka_format_mismatch_does_not_match() -> None:
    json_pattern = compile_(SourceKind.KAFKA, {"value": {"device_ID": [{"exists": True}]}})
    plain_pattern = compile_(SourceKind.KAFKA, {"value": [{"prefix": "{"}]})
    assert not json_pattern.matches(kafka_record("plain text"))
    assert not plain_pattern.matches(kafka_record(DEVICE))
    absent_in_json = compile_(SourceKind.KAFKA, {"value": {"x": [{"exists": False}]}})
    assert not absent_in_json.matches(kafka_record("plain text"))
    assert absent_in_json.matches(kafka_record(DEVICE))


def test_kafka_non_utf8_value_only_metadata_filters_apply() -> None:
    record = kafka_record(b"\xff\xfe\x00binary")
    value_filter = compile_(SourceKind.KAFKA, {"value": [{"anything-but": ["error"]}]})
    assert not value_filter.matches(record)
    absent = compile_(SourceKind.KAFKA, {"value": [{"exists": False}]})
    assert not absent.matches(record)
    metadata = compile_(SourceKind.KAFKA, {"topic": ["mytopic"], "partition": [0]})
    assert metadata.matches(record)
    both = compile_(SourceKind.KAFKA, {"value": [{"anything-but": ["error"]}]}, {"partition": [0]})
    assert both.matches(record)


def test_kafka_invalid_base64_value_does_not_match() -> None:
    record = kafka_record("x")
    record["value"] = "%%%"
    assert not compile_(SourceKind.KAFKA, {"value": [{"exists": True}]}).matches(record)


def test_kafka_key_is_decoded_like_the_value() -> None:
    assert compile_(SourceKind.KAFKA, {"key": ["order-1"]}).matches(
        kafka_record("v", key="order-1")
    )
    json_key = compile_(SourceKind.KAFKA, {"key": {"tenant": ["acme"]}})
    assert json_key.matches(kafka_record("v", key=b'{"tenant": "acme"}'))
    no_key = compile_(SourceKind.KAFKA, {"key": [{"exists": False}]})
    assert no_key.matches(kafka_record("v"))
    assert not no_key.matches(kafka_record("v", key="k"))


def test_kafka_missing_value_is_an_absent_field() -> None:
    tombstone = kafka_record(None)
    assert compile_(SourceKind.KAFKA, {"value": [{"exists": False}]}).matches(tombstone)
    assert not compile_(SourceKind.KAFKA, {"value": ["x"]}).matches(tombstone)
    tombstone["value"] = None
    assert compile_(SourceKind.KAFKA, {"value": [{"exists": False}]}).matches(tombstone)


def test_kafka_headers_match_raw_byte_arrays() -> None:
    filters = compile_(SourceKind.KAFKA, {"headers": {"headerKey": [104]}})
    assert filters.matches(kafka_record("v"))


def test_kafka_numeric_metadata() -> None:
    filters = compile_(SourceKind.KAFKA, {"offset": [{"numeric": [">=", 10]}]})
    assert filters.matches(kafka_record("v"))


# --- decoding happens once, lazily; records are never modified -------------------------------


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls = [0]
    original: Callable[[Any], Any] = getattr(records, name)

    def counting(raw: Any) -> Any:
        calls[0] += 1
        return original(raw)

    monkeypatch.setattr(records, name, counting)
    return calls


def test_sqs_body_is_parsed_once_across_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_calls(monkeypatch, "_decode_sqs_body")
    filters = compile_(
        SourceKind.SQS,
        {"body": {"a": ["1"]}},
        {"body": {"b": ["2"]}},
        {"body": {"c": ["3"]}},
    )
    assert not filters.matches(sqs_record('{"a": "x", "b": "y", "c": "z"}'))
    assert calls[0] == 1
    assert filters.matches(sqs_record('{"c": "3"}'))
    assert calls[0] == 2


def test_body_is_not_parsed_when_metadata_already_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_calls(monkeypatch, "_decode_sqs_body")
    filters = compile_(SourceKind.SQS, {"body": {"a": ["1"]}, "awsRegion": ["eu-west-1"]})
    assert not filters.matches(sqs_record('{"a": "1"}'))
    assert calls[0] == 0
    metadata_only = compile_(SourceKind.SQS, {"awsRegion": ["us-east-2"]})
    assert metadata_only.matches(sqs_record('{"a": "1"}'))
    assert calls[0] == 0


def test_kinesis_data_is_decoded_once_across_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_calls(monkeypatch, "_decode_kinesis_data")
    filters = compile_(
        SourceKind.KINESIS,
        {"data": {"order": {"type": ["sell"]}}},
        {"data": {"record": [1]}},
        {"$or": [{"data": {"x": ["1"]}}, {"data": {"y": ["2"]}}]},
    )
    assert not filters.matches(kinesis_record(ORDER))
    assert calls[0] == 1


def test_kafka_value_and_key_are_decoded_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_calls(monkeypatch, "_decode_kafka_bytes")
    filters = compile_(
        SourceKind.KAFKA,
        {"value": {"device_ID": ["AB1234"]}, "key": ["other"]},
        {"value": {"session": {"duration": [162]}}, "key": ["other"]},
        {"value": {"device_ID": ["nope"]}},
    )
    assert not filters.matches(kafka_record(DEVICE, key="k"))
    assert calls[0] == 2  # one for value, one for key


@pytest.mark.parametrize(
    ("source", "record", "patterns"),
    [
        (
            SourceKind.SQS,
            sqs_record('{"a": [1, {"b": "x"}], "c": null}'),
            [{"body": {"a": {"b": ["x"]}}}, {"attributes": {"SenderId": [{"prefix": "A"}]}}],
        ),
        (SourceKind.KINESIS, kinesis_record(ORDER), [{"data": {"order": {"type": ["buy"]}}}]),
        (
            SourceKind.DYNAMODB,
            ddb_record(),
            [{"dynamodb": {"NewImage": {"Id": {"N": [{"anything-but": "1"}]}}}}],
        ),
        (SourceKind.KAFKA, kafka_record(DEVICE, key="k"), [{"value": {"device_ID": ["AB1234"]}}]),
    ],
    ids=["sqs", "kinesis", "dynamodb", "kafka"],
)
def test_matching_never_modifies_the_record(
    source: SourceKind, record: dict[str, Any], patterns: list[dict[str, Any]]
) -> None:
    before = copy.deepcopy(record)
    filters = compile_(source, *patterns)
    assert filters.matches(record)
    assert filters.matches(MappingProxyType(record))
    assert record == before


def test_deeply_nested_arrays_in_a_record_do_not_crash_matching() -> None:
    # orjson parses up to 1024 levels; matching must walk them without recursing.
    deep = "[" * 1000 + '{"b": "x"}' + "]" * 1000
    body = '{"a": ' + deep + ', "c": ' + "[" * 1000 + '"y"' + "]" * 1000 + "}"
    record = sqs_record(body)
    assert compile_(SourceKind.SQS, {"body": {"a": {"b": ["x"]}}}).matches(record)
    assert compile_(SourceKind.SQS, {"body": {"c": ["y"]}}).matches(record)
    assert not compile_(SourceKind.SQS, {"body": {"c": [{"exists": False}]}}).matches(record)
    assert compile_(SourceKind.SQS, {"body": {"a": [{"exists": False}]}}).matches(record)
    empty = sqs_record('{"a": ' + "[" * 1000 + "]" * 1000 + "}")
    assert compile_(SourceKind.SQS, {"body": {"a": {"b": [{"exists": False}]}}}).matches(empty)
    assert not compile_(SourceKind.SQS, {"body": {"a": {"b": ["x"]}}}).matches(empty)


# --- empty criteria --------------------------------------------------------------------------


@pytest.mark.parametrize("source", list(SourceKind))
def test_no_filters_match_everything(source: SourceKind) -> None:
    filters = compile_filter_criteria([], source=source)
    assert filters.is_empty
    assert filters.patterns == ()
    assert filters.source is source
    assert filters.matches({})
    assert filters.matches(sqs_record("anything"))
    assert filters.matches(kafka_record(b"\xff"))


def test_filter_set_exposes_its_patterns() -> None:
    patterns = ['{"a": ["x"]}', '{"b": ["y"]}']
    filters = compile_filter_criteria(patterns, source=SourceKind.SQS)
    assert not filters.is_empty
    assert filters.patterns == tuple(patterns)
    assert filters.source is SourceKind.SQS
    assert repr(filters) == "FilterSet(source='sqs', filters=2)"


def test_source_kind_values() -> None:
    assert [kind.value for kind in SourceKind] == ["sqs", "kinesis", "dynamodb", "kafka"]
    assert compile_filter_criteria([], source="kafka").source is SourceKind.KAFKA  # type: ignore[arg-type]  # str accepted at runtime
