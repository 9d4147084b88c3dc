"""Partial batch responses (ReportBatchItemFailures): every row of docs/behaviour.md §3."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from pumphouse.pollers.responses import (
    PartialFailure,
    WholeFailure,
    WholeSuccess,
    kafka_item_id,
    kafka_record_id,
    parse_batch_item_failures,
    sqs_item_id,
    stream_item_id,
)

SQS_IDS = ["059f36b4-87a3-44ab-83d2-661975830a7d", "2e1424d4-f796-459a-8184-9c92662be6da", "c3"]
STREAM_IDS = [
    "49590338271490256608559692538361571095921575989136588898",
    "49590338271490256608559692538361571095921575989136588899",
    "49590338271490256608559692538361571095921575989136588900",
]
KAFKA_IDS = [
    kafka_record_id("orders", 0, 15),
    kafka_record_id("orders", 0, 16),
    kafka_record_id("orders", 1, 15),
]


def failures(*identifiers: Any) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": i} for i in identifiers]}


SOURCES: dict[str, tuple[list[Hashable], Callable[[Any], Hashable | None], list[Any]]] = {
    # source: (batch ids, id_of, how the function names each record)
    "sqs": (list(SQS_IDS), sqs_item_id, list(SQS_IDS)),
    "stream": (list(STREAM_IDS), stream_item_id, list(STREAM_IDS)),
    "kafka": (
        list(KAFKA_IDS),
        kafka_item_id,
        [
            {"partition": "orders-0", "offset": 15},
            {"partition": "orders-0", "offset": 16},
            {"partition": "orders-1", "offset": 15},
        ],
    ),
}

WHOLE_SUCCESS_RESPONSES = [
    pytest.param(None, id="null"),
    pytest.param("", id="empty-string"),
    pytest.param({}, id="empty-object"),
    pytest.param([], id="empty-list"),
    pytest.param({"batchItemFailures": []}, id="empty-failures"),
    pytest.param({"batchItemFailures": None}, id="null-failures"),
    pytest.param({"statusCode": 200, "body": "ok"}, id="no-key"),
    pytest.param("not json", id="returned-str"),
    pytest.param(json.dumps(failures("x")), id="returned-json-string-not-reparsed"),
    pytest.param(42, id="number"),
    pytest.param(b"null", id="raw-null"),
    pytest.param(b"", id="raw-empty"),
    pytest.param(b'"not json"', id="raw-json-string"),
    pytest.param(b'{"batchItemFailures": []}', id="raw-empty-failures"),
    pytest.param(b"{}", id="raw-empty-object"),
]


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("payload", WHOLE_SUCCESS_RESPONSES)
def test_whole_success(source: str, payload: Any) -> None:
    ids, id_of, _ = SOURCES[source]
    assert parse_batch_item_failures(payload, batch_ids=ids, id_of=id_of) == WholeSuccess()


def whole_failure_cases(source: str) -> list[Any]:
    _, _, named = SOURCES[source]
    not_in_batch: Any = {
        "sqs": "no-such-message",
        "stream": "1",
        "kafka": {"partition": "orders-0", "offset": 99},
    }[source]
    cases: list[tuple[str, Any]] = [
        ("empty-identifier", failures("")),
        ("null-identifier", failures(None)),
        ("bad-key-name", {"batchItemFailures": [{"foo": named[0]}]}),
        ("missing-identifier", {"batchItemFailures": [{}]}),
        ("not-in-batch", failures(named[0], not_in_batch)),
        ("failures-not-a-list", {"batchItemFailures": "m-1"}),
        ("failures-object", {"batchItemFailures": {"itemIdentifier": named[0]}}),
        ("item-not-an-object", {"batchItemFailures": [named[0]]}),
        ("raw-invalid-json", b"{not json"),
        ("raw-truncated", b'{"batchItemFailures": ['),
    ]
    return [pytest.param(source, payload, id=f"{source}-{name}") for name, payload in cases]


@pytest.mark.parametrize(
    ("source", "payload"),
    [case for source in SOURCES for case in whole_failure_cases(source)],
)
def test_whole_failure(source: str, payload: Any) -> None:
    ids, id_of, _ = SOURCES[source]
    result = parse_batch_item_failures(payload, batch_ids=ids, id_of=id_of)
    assert isinstance(result, WholeFailure)
    assert result.reason


@pytest.mark.parametrize("source", list(SOURCES))
def test_partial_failure_in_batch_order_without_duplicates(source: str) -> None:
    ids, id_of, named = SOURCES[source]
    payload = failures(named[2], named[0], named[2])
    result = parse_batch_item_failures(payload, batch_ids=ids, id_of=id_of)
    assert result == PartialFailure(failed_ids=(ids[0], ids[2]))


@pytest.mark.parametrize("source", list(SOURCES))
def test_partial_failure_from_raw_bytes(source: str) -> None:
    ids, id_of, named = SOURCES[source]
    payload = json.dumps(failures(named[1])).encode()
    result = parse_batch_item_failures(payload, batch_ids=ids, id_of=id_of)
    assert result == PartialFailure(failed_ids=(ids[1],))


def test_every_record_failed_is_still_partial() -> None:
    result = parse_batch_item_failures(failures(*SQS_IDS), batch_ids=SQS_IDS, id_of=sqs_item_id)
    assert result == PartialFailure(failed_ids=tuple(SQS_IDS))


def test_extra_keys_are_ignored() -> None:
    payload = {"batchItemFailures": [{"itemIdentifier": SQS_IDS[1], "why": "x"}], "state": {}}
    result = parse_batch_item_failures(payload, batch_ids=SQS_IDS, id_of=sqs_item_id)
    assert result == PartialFailure(failed_ids=(SQS_IDS[1],))


@pytest.mark.parametrize(
    "identifier",
    [123, ["m"], {"messageId": SQS_IDS[0]}, True],
    ids=["number", "list", "object", "bool"],
)
def test_sqs_identifier_of_the_wrong_type_fails_the_batch(identifier: Any) -> None:
    result = parse_batch_item_failures(failures(identifier), batch_ids=SQS_IDS, id_of=sqs_item_id)
    assert isinstance(result, WholeFailure)


def test_stream_identifier_must_be_the_exact_sequence_number() -> None:
    as_number = int(STREAM_IDS[0])  # a JSON number is not the sequenceNumber string
    result = parse_batch_item_failures(
        failures(as_number), batch_ids=STREAM_IDS, id_of=stream_item_id
    )
    assert isinstance(result, WholeFailure)


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ({"partition": "orders-0", "offset": 15}, ("orders-0", 15)),
        ({"partition": "orders-0", "offset": "15"}, ("orders-0", 15)),
        ({"partition": "my-topic-12", "offset": 0}, ("my-topic-12", 0)),
        ({"partition": "orders-0", "offset": 15.0}, None),
        ({"partition": "orders-0", "offset": True}, None),
        ({"partition": "orders-0", "offset": -1}, None),
        ({"partition": "orders-0", "offset": "15a"}, None),
        ({"partition": "orders-0", "offset": "-1"}, None),
        ({"partition": "orders-0"}, None),
        ({"partition": "", "offset": 1}, None),
        ({"partition": 0, "offset": 1}, None),
        ("orders-0-15", None),
        (None, None),
    ],
)
def test_kafka_identifier_normalization(identifier: Any, expected: Any) -> None:
    assert kafka_item_id(identifier) == expected


def test_kafka_malformed_identifier_fails_the_batch() -> None:
    result = parse_batch_item_failures(
        failures({"partition": "orders-0"}), batch_ids=KAFKA_IDS, id_of=kafka_item_id
    )
    assert isinstance(result, WholeFailure)


def test_kafka_string_offset_matches_the_record() -> None:
    result = parse_batch_item_failures(
        failures({"partition": "orders-1", "offset": "15"}),
        batch_ids=KAFKA_IDS,
        id_of=kafka_item_id,
    )
    assert result == PartialFailure(failed_ids=(("orders-1", 15),))
