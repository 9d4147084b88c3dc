"""The record, per source: how a filter reads a top-level field of a Lambda-shaped
record, and how the data field is decoded (SQS ``body``, Kinesis ``data``, Kafka
``value`` and ``key``) -- lazily, at most once per record, into the per-record cache.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final

import orjson

from pumphouse.patterns.errors import InvalidPattern, show
from pumphouse.patterns.terms import (
    MISSING,
    NOT_CACHED,
    UNDECODABLE,
    Cache,
    Getter,
    PatternPath,
    SourceKind,
)


def _decode_sqs_body(body: Any) -> Any:
    """SQS ``body``: the parsed JSON value when the body is valid JSON, else the string."""
    if body.__class__ is not str and not isinstance(body, str | bytes):
        return body
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return UNDECODABLE


def _decode_kinesis_data(data: Any) -> Any:
    """Kinesis ``data``: base64, then JSON; anything else cannot be filtered on."""
    if not isinstance(data, str | bytes):
        return UNDECODABLE
    try:
        return orjson.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):  # JSONDecodeError is a ValueError
        return UNDECODABLE


def _decode_kafka_bytes(encoded: Any) -> Any:
    """Kafka ``value`` / ``key``: base64, then UTF-8, then JSON or the plain string."""
    if encoded is None:
        return MISSING
    if not isinstance(encoded, str | bytes):
        return UNDECODABLE
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return UNDECODABLE
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UNDECODABLE


def _plain_getter(key: str) -> Getter:
    def get(record: Mapping[str, Any], cache: Cache) -> Any:
        return record.get(key, MISSING)

    return get


def _kinesis_metadata_getter(key: str) -> Getter:
    """Kinesis metadata: top-level record keys, or the flat form Lambda's guide shows."""

    def get(record: Mapping[str, Any], cache: Cache) -> Any:
        value = record.get(key, MISSING)
        if value is MISSING:
            inner = record.get("kinesis")
            if isinstance(inner, Mapping):
                return inner.get(key, MISSING)
        return value

    return get


def _sqs_body(record: Mapping[str, Any], cache: Cache) -> Any:
    value = cache.get("body", NOT_CACHED)
    if value is NOT_CACHED:
        raw = record.get("body", MISSING)
        value = raw if raw is MISSING else _decode_sqs_body(raw)
        cache["body"] = value
    return value


def _kinesis_data(record: Mapping[str, Any], cache: Cache) -> Any:
    value = cache.get("data", NOT_CACHED)
    if value is NOT_CACHED:
        inner = record.get("kinesis")
        raw = inner.get("data", MISSING) if isinstance(inner, Mapping) else MISSING
        value = raw if raw is MISSING else _decode_kinesis_data(raw)
        cache["data"] = value
    return value


def _kafka_field_getter(key: str) -> Getter:
    def get(record: Mapping[str, Any], cache: Cache) -> Any:
        value = cache.get(key, NOT_CACHED)
        if value is NOT_CACHED:
            raw = record.get(key, MISSING)
            value = raw if raw is MISSING else _decode_kafka_bytes(raw)
            cache[key] = value
        return value

    return get


DATA_GETTERS: Final[dict[SourceKind, dict[str, Getter]]] = {
    SourceKind.SQS: {"body": _sqs_body},
    SourceKind.KINESIS: {"data": _kinesis_data},
    SourceKind.DYNAMODB: {},
    SourceKind.KAFKA: {"value": _kafka_field_getter("value"), "key": _kafka_field_getter("key")},
}

_OBJECT_ONLY_DATA: Final[dict[SourceKind, str]] = {
    SourceKind.KINESIS: "data",
    SourceKind.DYNAMODB: "dynamodb",
}


def root_getter(source: SourceKind, key: str) -> Getter:
    data_getter = DATA_GETTERS[source].get(key)
    if data_getter is not None:
        return data_getter
    if source is SourceKind.KINESIS:
        return _kinesis_metadata_getter(key)
    return _plain_getter(key)


def check_data_shape(source: SourceKind, key: str, value: Any, path: PatternPath) -> None:
    if _OBJECT_ONLY_DATA.get(source) == key and not isinstance(value, dict):
        label = "Kinesis" if source is SourceKind.KINESIS else "DynamoDB"
        raise InvalidPattern(
            (*path, key),
            f"{label} filters match {show(key)} as JSON, so its pattern must be an object of "
            f'fields (for example {{"{key}": {{"field": ["value"]}}}}), got {show(value)}',
        )
