"""Kafka record fragments: the fast encoder produces exactly Lambda's record shape."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pumphouse.pollers.batching import KafkaFraming, assemble_kafka_event
from pumphouse.pollers.kafka_records import (
    FragmentEncoder,
    partition_key,
    record_dict,
    timestamp_type_name,
)


@dataclass(frozen=True)
class Msg:
    """A consumed record, as aiokafka's ConsumerRecord exposes it."""

    topic: str = "orders"
    partition: int = 0
    offset: int = 15
    timestamp: int = 1545084650987
    timestamp_type: int = 0
    key: bytes | None = None
    value: bytes | None = b"Hello, this is a test."
    headers: Sequence[tuple[str, bytes | None]] = field(default_factory=tuple)


def test_spec_example_shape() -> None:
    message = Msg(
        topic="mytopic",
        partition=0,
        offset=15,
        key=b"order-42",
        headers=(("headerKey", b"header"),),
    )
    fragment = FragmentEncoder("mytopic", 0).encode(message)
    assert orjson.loads(fragment) == {
        "topic": "mytopic",
        "partition": 0,
        "offset": 15,
        "timestamp": 1545084650987,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(b"order-42").decode(),
        "value": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
        "headers": [{"headerKey": [104, 101, 97, 100, 101, 114]}],
    }
    # Key order follows Lambda's documented record.
    assert list(orjson.loads(fragment)) == [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestampType",
        "key",
        "value",
        "headers",
    ]


def test_null_key_and_null_value_are_absent() -> None:
    fragment = FragmentEncoder("t", 3).encode(Msg(topic="t", partition=3, key=None, value=None))
    decoded = orjson.loads(fragment)
    assert "key" not in decoded
    assert "value" not in decoded
    assert decoded["headers"] == []


def test_log_append_time_and_unknown_types() -> None:
    encode = FragmentEncoder("t", 0).encode
    assert orjson.loads(encode(Msg(timestamp_type=1)))["timestampType"] == "LOG_APPEND_TIME"
    assert orjson.loads(encode(Msg(timestamp_type=-1)))["timestampType"] == "NO_TIMESTAMP_TYPE"
    assert timestamp_type_name(7) == "NO_TIMESTAMP_TYPE"


def test_event_envelope_groups_by_topic_partition() -> None:
    encoder = FragmentEncoder("orders", 2)
    fragments = [encoder.encode(Msg(partition=2, offset=o)) for o in (5, 6)]
    framing = KafkaFraming(event_source="SelfManagedKafka", bootstrap_servers="b-1:9092,b-2:9092")
    event_bytes = assemble_kafka_event({partition_key("orders", 2): fragments}, framing=framing)
    event = orjson.loads(event_bytes)
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == "b-1:9092,b-2:9092"
    assert [r["offset"] for r in event["records"]["orders-2"]] == [5, 6]


headers_strategy = st.lists(
    st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=12))), max_size=3
)


@settings(max_examples=300, deadline=None)
@given(
    topic=st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True),
    partition=st.integers(0, 1000),
    offset=st.integers(0, 2**62),
    timestamp=st.integers(-1, 2**45),
    timestamp_type=st.sampled_from([-1, 0, 1]),
    key=st.one_of(st.none(), st.binary(max_size=40)),
    value=st.one_of(st.none(), st.binary(max_size=300)),
    headers=headers_strategy,
)
def test_fast_encoder_matches_the_dict_shape(
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    timestamp_type: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]],
) -> None:
    message = Msg(topic, partition, offset, timestamp, timestamp_type, key, value, tuple(headers))
    encoder = FragmentEncoder(topic, partition)
    fragment = encoder.encode(message)
    expected = record_dict(message)
    assert orjson.loads(fragment) == expected
    assert fragment == orjson.dumps(expected)  # byte for byte, key order included
    assert encoder.encode_all([message]) == [fragment]


record_strategy = st.builds(
    Msg,
    topic=st.just("orders"),
    partition=st.just(1),
    offset=st.integers(0, 2**62),
    timestamp=st.integers(-1, 2**45),
    # Mostly the bulk encoder's inline shape (CREATE_TIME, no headers, a value), so
    # that runs mix it with the other shapes.
    timestamp_type=st.sampled_from([0, 0, 0, 1, -1]),
    key=st.one_of(st.none(), st.binary(max_size=40)),
    value=st.one_of(st.binary(max_size=300), st.binary(max_size=300), st.none()),
    headers=st.one_of(st.just(()), headers_strategy.map(tuple)),
)


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(record_strategy, max_size=12))
def test_bulk_encoder_matches_the_dict_shape(messages: list[Msg]) -> None:
    """``encode_all`` (the poller's hot path) is ``encode`` of each record, in order."""
    encoder = FragmentEncoder("orders", 1)
    fragments = encoder.encode_all(messages)
    assert fragments == [orjson.dumps(record_dict(m)) for m in messages]
    assert fragments == [encoder.encode(m) for m in messages]


def test_header_bytes_are_signed_as_aws_delivers_them() -> None:
    """``ë`` (UTF-8 c3 ab) arrives as [-61, -85] on AWS, not [195, 171]: AWS's Go and
    .NET event types were changed to signed bytes for it. Both the hot-path encoder and
    the dict form agree."""
    message = Msg(headers=(("name", "ë".encode()), ("edges", bytes([0, 127, 128, 255]))))
    expected = [{"name": [-61, -85]}, {"edges": [0, 127, -128, -1]}]
    assert orjson.loads(FragmentEncoder("orders", 0).encode(message))["headers"] == expected
    assert record_dict(message)["headers"] == expected
