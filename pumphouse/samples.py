"""Sample traffic a user shapes: record templates and DynamoDB attribute values.

A **record template** (``pumphouse dev --produce RATE --produce-template FILE.json``) is
a JSON document — the body of every record sent — whose strings may hold placeholders:

=============================  ===========================================================
``{{seq}}``                    the record's sequence number: 0, 1, 2, ...
``{{choice:NEW|PAID|SHIPPED}}``  one of the values, picked at random for each record
``{{timestamp}}``              the time of sending, ISO-8601 UTC (``2026-01-31T12:00:00.123Z``)
``{{epoch_ms}}``               the time of sending, epoch milliseconds
=============================  ===========================================================

A string that is exactly ``{{seq}}`` or ``{{epoch_ms}}`` becomes a JSON number; any
other placeholder is replaced inside its string (``"order-{{seq}}"`` → ``"order-7"``).
An unknown placeholder is refused when the template is read, with its path::

    {"orderId": "order-{{seq}}", "status": "{{choice:NEW|PAID}}", "at": "{{timestamp}}",
     "amount": 12.5, "items": [{"sku": "{{choice:A-1|B-2}}", "quantity": 1}]}

:func:`attribute_value` turns plain JSON into DynamoDB's typed attribute values
(``{"id": "1", "n": 2}`` → ``{"id": {"S": "1"}, "n": {"N": "2"}}``), for items put into a
table and for the images of a sample stream record.
"""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PLACEHOLDERS = ("seq", "choice:A|B|...", "timestamp", "epoch_ms")


class TemplateError(ValueError):
    """A template that cannot be used; the message names the file and the path in it."""


def _path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(the document)"


class RecordTemplate:
    """A parsed record template; :meth:`render` makes the n-th record."""

    def __init__(self, document: Any, *, source: str = "template") -> None:
        problems: list[str] = []
        self._check(document, (), problems)
        if problems:
            raise TemplateError(f"{source}: " + "; ".join(problems))
        self.document = document
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> RecordTemplate:
        """Read a template file (JSON)."""
        try:
            document = orjson.loads(Path(path).read_bytes())
        except OSError as err:
            raise TemplateError(f"cannot read {path}: {err.strerror or err}") from None
        except orjson.JSONDecodeError as err:
            raise TemplateError(f"{path}: not JSON: {err}") from None
        return cls(document, source=str(path))

    def _check(self, node: Any, loc: tuple[str | int, ...], problems: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                self._check(value, (*loc, key), problems)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                self._check(value, (*loc, index), problems)
        elif isinstance(node, str):
            for name in PLACEHOLDER.findall(node):
                if name in ("seq", "timestamp", "epoch_ms"):
                    continue
                if name.startswith("choice:") and name[len("choice:"):]:
                    continue
                problems.append(
                    f"{_path(loc)}: unknown placeholder {{{{{name}}}}} (known: "
                    + ", ".join(f"{{{{{p}}}}}" for p in PLACEHOLDERS)
                    + ")"
                )

    def render(
        self, seq: int, *, now: float | None = None, rng: random.Random | None = None
    ) -> Any:
        """Record number ``seq``: the document with its placeholders filled in."""
        when = time.time() if now is None else now
        pick = rng if rng is not None else random.Random()

        def value(name: str) -> Any:
            if name == "seq":
                return seq
            if name == "epoch_ms":
                return int(when * 1000)
            if name == "timestamp":
                stamp = datetime.fromtimestamp(when, UTC)
                return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
            return pick.choice(name[len("choice:"):].split("|"))

        def fill(node: Any) -> Any:
            if isinstance(node, dict):
                return {key: fill(item) for key, item in node.items()}
            if isinstance(node, list):
                return [fill(item) for item in node]
            if isinstance(node, str):
                whole = PLACEHOLDER.fullmatch(node)
                if whole is not None and whole.group(1) in ("seq", "epoch_ms"):
                    return value(whole.group(1))
                return PLACEHOLDER.sub(lambda m: str(value(m.group(1))), node)
            return node

        return fill(self.document)


def attribute_value(value: Any) -> dict[str, Any]:
    """Plain JSON as a DynamoDB attribute value: strings ``S``, numbers ``N`` (as
    strings), booleans ``BOOL``, null ``NULL``, objects ``M``, lists ``L``."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {str(k): attribute_value(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [attribute_value(v) for v in value]}
    raise TypeError(f"no DynamoDB attribute type for {type(value).__name__}")


def attribute_map(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A JSON object as a DynamoDB item (attribute name → typed value)."""
    return {str(name): attribute_value(value) for name, value in document.items()}


def read_argument(value: str) -> str:
    """A command-line value given inline or as ``@FILE`` (the file's text)."""
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"cannot read {value[1:]}: {err.strerror or err}") from None
    return value


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"{what} is not JSON: {err}") from None
    if not isinstance(document, dict) or not document:
        raise ValueError(f"{what} must be a JSON object with at least one attribute")
    return document


_SOURCE_OPTIONS = {
    "key": ("--key", "kafka"),
    "headers": ("--header", "kafka"),
    "partition_key": ("--partition-key", "kinesis"),
    "old_image": ("--old-image", "dynamodb"),
}


def event_overrides(
    source: str,
    *,
    body: str | None = None,
    key: str | None = None,
    headers: list[str] | None = None,
    partition_key: str | None = None,
    old_image: str | None = None,
) -> dict[str, Any]:
    """``pumphouse events generate`` options as :func:`pumphouse.testing.sample_event`
    overrides. ``body`` is the SQS body, the Kinesis data or the Kafka value as written
    (byte for byte), or the DynamoDB new image (a JSON object; its ``id`` attribute, else
    its first, is the key). ``ValueError`` names a misused option."""
    given = {"key": key, "headers": headers, "partition_key": partition_key,
             "old_image": old_image}
    for name, value in given.items():
        option, owner = _SOURCE_OPTIONS[name]
        if value is not None and source != owner:
            raise ValueError(f"{option} is for {owner} events, not {source}")
    overrides: dict[str, Any] = {}
    if source == "dynamodb":
        new = attribute_map(_json_object(body, "--body")) if body is not None else None
        old = attribute_map(_json_object(old_image, "--old-image")) if old_image else None
        image = new if new is not None else old
        if image is None:
            return overrides
        key_name = "id" if "id" in image else next(iter(image))
        overrides["keys"] = {key_name: image[key_name]}
        overrides["event_name"] = (
            "MODIFY" if new is not None and old is not None else "INSERT" if new else "REMOVE"
        )
        if new is not None:
            overrides["new_image"] = new
        if old is not None:
            overrides["old_image"] = old
        return overrides
    if body is not None:
        overrides[{"sqs": "body", "kinesis": "data", "kafka": "value"}[source]] = (
            body if source == "sqs" else body.encode("utf-8")
        )
    if partition_key is not None:
        overrides["partition_key"] = partition_key
    if key is not None:
        overrides["key"] = key
    if headers is not None:
        pairs = []
        for header in headers:
            name, sep, value = header.partition("=")
            if not sep or not name:
                raise ValueError(f"--header {header!r}: expected NAME=VALUE")
            pairs.append((name, value.encode("utf-8")))
        overrides["headers"] = pairs
    return overrides
