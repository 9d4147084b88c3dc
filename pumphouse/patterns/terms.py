"""The terms the pattern compiler is built from: the source kinds, the limits, the
operator names, the sentinels that stand for "no value here", and the types of the
compiled matchers (closures, built once per pattern and called once per record)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Final

MAX_PATTERN_LENGTH: Final = 4096
"""Longest ``Pattern`` string Lambda accepts, in characters."""

DEFAULT_MAX_FILTERS: Final = 5
"""Filters per mapping by default (Lambda allows up to 10 by quota increase)."""

MAX_PATTERN_DEPTH: Final = 100
"""Deepest nesting accepted in a pattern (keys, ``$or`` and its entries each count one).

Real patterns are a few levels deep; the bound keeps compiling and matching well inside
Python's recursion limit whatever the pattern.
"""


class SourceKind(StrEnum):
    """The kind of event source, which decides how a record's data field is decoded."""

    SQS = "sqs"
    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"
    KAFKA = "kafka"


# ---------------------------------------------------------------------------------------
# Types and sentinels


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


MISSING: Final = _Sentinel("<missing>")
"""The record has no such field (or it is not a leaf)."""

UNDECODABLE: Final = _Sentinel("<undecodable>")
"""The data field is present but cannot be decoded; filters naming it never match."""

NOT_CACHED: Final = _Sentinel("<not cached>")

Leaf = Callable[[Any], bool]
"""Tests one leaf value (str, int, float, bool or None)."""

ValueMatcher = Callable[[Any], bool]
"""Tests the value found at a field (any JSON value, or ``MISSING``)."""

ObjectMatcher = Callable[[Mapping[str, Any]], bool]
"""Tests one object (a pattern object applied to one record object)."""

Cache = dict[str, Any]
Getter = Callable[[Mapping[str, Any], Cache], Any]
RootMatcher = Callable[[Mapping[str, Any], Cache], bool]
"""Tests a whole record; the cache holds the decoded data field(s) for this record."""

PatternPath = tuple[str | int, ...]

OR_KEY: Final = "$or"
OPERATORS: Final = frozenset(
    {
        "anything-but",
        "cidr",
        "equals-ignore-case",
        "exists",
        "numeric",
        "prefix",
        "suffix",
        "wildcard",
    }
)
