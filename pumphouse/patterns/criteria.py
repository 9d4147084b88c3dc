r"""Event filtering: Lambda ``FilterCriteria`` patterns, compiled once, matched per record.

A mapping's ``FilterCriteria.Filters[].Pattern`` strings use the EventBridge event-pattern
language. :func:`compile_filter_criteria` validates every pattern at configuration time
(raising :class:`FilterPatternError`, "Invalid filter pattern definition. ...") and
compiles it into closures; :meth:`FilterSet.matches` then answers, for one record shaped
exactly as the handler will receive it, "does any filter match?". Records that match no
filter are acknowledged without invoking the function (SQS: deleted; streams: skipped
past; Kafka: offset committed) -- that is the sources' job, not this module's.

Semantics
---------
* Filters are OR-ed. Inside a pattern the fields are AND-ed, and the values listed for
  one field are OR-ed. A field is matched only if the record has it (except
  ``{"exists": false}``). ``"$or": [{...}, {...}]`` (two or more objects, nestable)
  OR-s sub-patterns at the level where it appears.
* A field's value in the pattern is either a nested object or a non-empty array of
  rules: ``{"a": "x"}`` is invalid, ``{"a": ["x"]}`` is valid, ``{}`` is invalid.
* Rules work on *leaf* values (strings, numbers, booleans, null). An array in the record
  matches if any of its elements matches, and an object pattern applied to an array of
  objects must be satisfied by one single element ("array consistent"). An object in
  the record is not a leaf: ``exists: true`` does not match it, ``exists: false`` does.
* Rules: exact string / number / ``true`` / ``false`` / ``null`` (``""`` is the empty
  string), ``prefix`` and ``suffix`` (plain or ``{"equals-ignore-case": ...}``),
  ``equals-ignore-case``, ``wildcard`` (``*`` matches any run of characters; a backslash
  escapes a literal ``*`` or ``\``, written ``"\\*"`` and ``"\\\\"`` in the JSON
  text; ``**`` is invalid), ``anything-but`` (a string, a number, a list of only strings
  or only numbers, or an object with ``prefix`` / ``suffix`` / ``equals-ignore-case`` /
  ``wildcard``), ``numeric`` (``["=", 5]``, ``["<", 5]``, ``[">", 0, "<=", 5]``),
  ``exists``, ``cidr`` (IPv4 and IPv6). These are EventBridge's operators, whose syntax
  Lambda says it shares; Lambda's own guide lists all but ``wildcard``, ``cidr`` and the
  ``anything-but`` objects, which pumphouse supports as EventBridge defines them.
* Numbers compare as numbers: ``300``, ``300.0`` and ``3.0e2`` are equal, both for
  ``numeric`` and for exact values (this is what event-ruler, the engine behind
  EventBridge, does; Lambda's guide still says exact numbers compare as text, which
  cannot be reproduced once JSON is parsed). A number never matches a string, and
  ``true`` is not ``1``. ``numeric``, ``prefix``, ``suffix``, ``equals-ignore-case``,
  ``wildcard`` and ``cidr`` only match values of their own type; ``anything-but``
  matches every leaf that is not excluded, whatever its type.
* Duplicate keys in a pattern: the last one wins (as Lambda documents).

The data field, per source
--------------------------
The pattern is shaped like the record the handler receives, except that the *data
field* is decoded before matching (at most once per record per ``matches`` call, and
only if a filter names it; the record itself is never mutated or re-serialized):

========  ============  ==================================  ============================
source    pattern key   decoded from                        if it cannot be decoded
========  ============  ==================================  ============================
SQS       ``body``      ``body`` parsed as JSON, else the   (always decodes)
                        raw string
Kinesis   ``data``      ``kinesis.data``: base64, then      filters naming ``data`` do
                        JSON                                not match
DynamoDB  ``dynamodb``  the typed values as delivered       --
Kafka     ``value``,    base64, then UTF-8, then JSON or    filters naming the field do
          ``key``       the plain string                    not match
========  ============  ==================================  ============================

Format mismatches follow Lambda's tables. The data field's pattern is either an object
(the data must be JSON) or a list of value rules (the data is a plain value): an object
pattern against a plain-string SQS body, Kafka value or JSON-scalar Kinesis data does
not match, and value rules against a JSON object do not match either -- not even
``exists: false``. For Kinesis and DynamoDB the data pattern must be an object;
anything else is rejected at configuration time, as Lambda does. An SQS body that is a
JSON scalar (``123``, ``"text"``, ``true``) is matched as its parsed value, so ``[123]``
matches the body ``123`` and ``["123"]`` does not.

Metadata keys are matched as they appear in the record (``attributes``,
``messageAttributes``, ``eventName``, ``topic``, ``partition`` ...). Kinesis metadata may
be written flat, as Lambda's guide shows (``{"partitionKey": ["1"], "data": {...}}``),
or as nested in the record (``{"kinesis": {"partitionKey": ["1"]}}``). DynamoDB numbers
are strings (``{"N": "101"}``), so they match ``["101"]`` and never ``numeric``. Kafka
``headers`` are matched raw (arrays of byte values).

For Kafka, Lambda's guide says that when the value is not UTF-8 or its format does not
match the pattern, "Lambda filters on the other metadata properties only". pumphouse
reads this fail-closed: a filter that names ``value`` (or ``key``) does not match such a
record, while a filter that names only metadata still can. (The literal reading would
let every undecodable record through a value-only filter.)

Limits: a pattern is at most 4096 characters; a mapping has at most ``max_filters``
filters (5, or up to 10 by settings).

Worked example
--------------
An SQS mapping with two filters::

    F1 = {"body": {"type": ["order"], "total": [{"numeric": [">", 100]}]}}
    F2 = {"attributes": {"MessageGroupId": [{"prefix": "vip-"}]}}

``compile_filter_criteria([F1, F2], source=SourceKind.SQS)`` compiles F1 to "body is
JSON, body.type is 'order' and body.total is a number > 100", and F2 to "attributes has
a MessageGroupId starting with 'vip-'". Three records arrive:

1. body ``{"type": "order", "total": 250}`` -- F1: ``type`` matches, ``250 > 100``:
   **match**, F2 is not evaluated.
2. body ``{"type": "order", "total": "250"}``, group ``vip-7`` -- F1: ``"250"`` is a
   string, ``numeric`` never matches strings, so F1 fails; F2: ``vip-7`` starts with
   ``vip-``: **match**. Had F2 named ``body`` too, it would have reused F1's parse.
3. body ``order 250`` (not JSON), group ``std-1`` -- F1: an object pattern against a
   plain-string body does not match; F2: ``std-1`` has the wrong prefix: **no match**,
   the message is deleted without invoking the function.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

import orjson

__all__ = [
    "DEFAULT_MAX_FILTERS",
    "MAX_PATTERN_DEPTH",
    "MAX_PATTERN_LENGTH",
    "FilterPatternError",
    "FilterSet",
    "SourceKind",
    "compile_filter_criteria",
]

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


class FilterPatternError(ValueError):
    """A filter pattern is invalid.

    The message reads ``Invalid filter pattern definition. <where>: <reason>``.
    ``where`` is the place inside the pattern (``body.price``, ``$or[1].a``; ``""`` for
    the pattern as a whole), ``reason`` says what is wrong, and ``index`` is the position
    of the offending pattern in the list given to :func:`compile_filter_criteria` (None
    when the problem is not in one pattern, e.g. too many filters).
    """

    def __init__(self, reason: str, *, where: str = "", index: int | None = None) -> None:
        self.reason = reason
        self.where = where
        self.index = index
        detail = f"{where}: {reason}" if where else reason[:1].upper() + reason[1:]
        super().__init__(f"Invalid filter pattern definition. {detail}")


# ---------------------------------------------------------------------------------------
# Types and sentinels


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


_MISSING: Final = _Sentinel("<missing>")
"""The record has no such field (or it is not a leaf)."""

_UNDECODABLE: Final = _Sentinel("<undecodable>")
"""The data field is present but cannot be decoded; filters naming it never match."""

_NOT_CACHED: Final = _Sentinel("<not cached>")

_Leaf = Callable[[Any], bool]
"""Tests one leaf value (str, int, float, bool or None)."""

_ValueMatcher = Callable[[Any], bool]
"""Tests the value found at a field (any JSON value, or ``_MISSING``)."""

_ObjectMatcher = Callable[[Mapping[str, Any]], bool]
"""Tests one object (a pattern object applied to one record object)."""

_Cache = dict[str, Any]
_Getter = Callable[[Mapping[str, Any], _Cache], Any]
_RootMatcher = Callable[[Mapping[str, Any], _Cache], bool]
"""Tests a whole record; the cache holds the decoded data field(s) for this record."""

_Path = tuple[str | int, ...]

_OR: Final = "$or"
_OPERATORS: Final = frozenset(
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
_NUMERIC_OPERATORS: Final = frozenset({"=", "<", "<=", ">", ">="})

# ---------------------------------------------------------------------------------------
# Error helpers

_PLAIN_KEY = re.compile(r"[^.\[\]\"\s]+")


def _render_path(path: _Path) -> str:
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _PLAIN_KEY.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f"[{_show(step)}]"
    return out


def _show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of a pattern fragment, for error messages."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # pragma: no cover - patterns come from JSON, always serializable
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _Invalid(Exception):
    """Internal: raised while compiling, turned into FilterPatternError at the boundary."""

    def __init__(self, path: _Path, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def _is_number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and not math.isinf(value)


# ---------------------------------------------------------------------------------------
# Leaf rules


def _compile_wildcard(text: str, path: _Path) -> re.Pattern[str]:
    parts: list[str] = []
    literal: list[str] = []
    previous_star = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            escaped = text[i + 1] if i + 1 < len(text) else ""
            if escaped not in ("*", "\\"):
                raise _Invalid(
                    path,
                    f'"wildcard" {_show(text)}: a backslash may only escape "*" or '
                    f'"\\\\" (position {i})',
                )
            literal.append(escaped)
            previous_star = False
            i += 2
            continue
        if char == "*":
            if previous_star:
                raise _Invalid(
                    path,
                    f'"wildcard" {_show(text)}: consecutive wildcard characters are not '
                    f"allowed (position {i})",
                )
            parts.append(re.escape("".join(literal)))
            literal.clear()
            parts.append(".*")
            previous_star = True
        else:
            literal.append(char)
            previous_star = False
        i += 1
    parts.append(re.escape("".join(literal)))
    return re.compile("".join(parts), re.DOTALL)


def _string_or_strings(value: Any, operator: str, path: _Path) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise _Invalid(
        path, f'"{operator}" expects a string or a non-empty array of strings, got {_show(value)}'
    )


def _compile_affix(operator: str, spec: Any, path: _Path) -> _Leaf:
    """``prefix`` / ``suffix``, plain or with ``equals-ignore-case`` inside."""
    test = str.startswith if operator == "prefix" else str.endswith
    if isinstance(spec, str):
        affix = spec
        if operator == "prefix":

            def prefix_leaf(v: Any) -> bool:
                return isinstance(v, str) and v.startswith(affix)

            return prefix_leaf

        def suffix_leaf(v: Any) -> bool:
            return isinstance(v, str) and v.endswith(affix)

        return suffix_leaf
    if isinstance(spec, dict) and list(spec) == ["equals-ignore-case"]:
        inner = spec["equals-ignore-case"]
        if not isinstance(inner, str):
            raise _Invalid(
                path,
                f'"{operator}": {{"equals-ignore-case": ...}} expects a string, got {_show(inner)}',
            )
        folded = inner.casefold()

        def affix_ignore_case_leaf(v: Any) -> bool:
            return isinstance(v, str) and test(v.casefold(), folded)

        return affix_ignore_case_leaf
    raise _Invalid(
        path,
        f'"{operator}" expects a string or {{"equals-ignore-case": "<string>"}}, got {_show(spec)}',
    )


def _compile_numeric(spec: Any, path: _Path) -> _Leaf:
    shape = (
        '"numeric" expects an operator followed by a number (["<", 5]) '
        'or a range ([">", 0, "<=", 5])'
    )
    if not isinstance(spec, list) or len(spec) not in (2, 4):
        raise _Invalid(path, f"{shape}, got {_show(spec)}")
    pairs = [(spec[i], spec[i + 1]) for i in range(0, len(spec), 2)]
    for operator, number in pairs:
        if not isinstance(operator, str) or operator not in _NUMERIC_OPERATORS:
            raise _Invalid(
                path,
                f'"numeric" operator must be one of "=", "<", "<=", ">", ">=", '
                f"got {_show(operator)} in {_show(spec)}",
            )
        if not _is_number(number):
            raise _Invalid(
                path,
                f'"numeric" expects an operator followed by a number, got {_show(spec)}',
            )
    if len(pairs) == 1:
        operator, number = pairs[0]
        return _numeric_leaf(operator, number)
    (low_op, low), (high_op, high) = pairs
    if low_op not in (">", ">=") or high_op not in ("<", "<="):
        raise _Invalid(
            path,
            f'"numeric" range must be a lower bound (">" or ">=") then an upper bound '
            f'("<" or "<="), got {_show(spec)}',
        )
    if low > high or (low == high and (low_op == ">" or high_op == "<")):
        raise _Invalid(path, f'"numeric" range {_show(spec)} can never match')
    return _numeric_range_leaf(low_op, low, high_op, high)


_NUMBERS: Final[frozenset[Any]] = frozenset({int, float})
"""Classes compared by ``numeric`` (exact classes: ``bool`` is not a number here)."""


def _numeric_leaf(operator: str, n: float) -> _Leaf:
    # One small closure per operator: this runs for every record.
    if operator == "=":

        def eq(v: Any) -> bool:
            return v.__class__ in _NUMBERS and bool(v == n)

        return eq
    if operator == ">":

        def gt(v: Any) -> bool:
            return v.__class__ in _NUMBERS and bool(v > n)

        return gt
    if operator == ">=":

        def ge(v: Any) -> bool:
            return v.__class__ in _NUMBERS and bool(v >= n)

        return ge
    if operator == "<":

        def lt(v: Any) -> bool:
            return v.__class__ in _NUMBERS and bool(v < n)

        return lt

    def le(v: Any) -> bool:
        return v.__class__ in _NUMBERS and bool(v <= n)

    return le


def _numeric_range_leaf(low_op: str, low: float, high_op: str, high: float) -> _Leaf:
    if low_op == ">" and high_op == "<":

        def open_open(v: Any) -> bool:
            return v.__class__ in _NUMBERS and bool(low < v < high)

        return open_open
    if low_op == ">":

        def open_closed(v: Any) -> bool:
            return v.__class__ in _NUMBERS and bool(low < v <= high)

        return open_closed
    if high_op == "<":

        def closed_open(v: Any) -> bool:
            return v.__class__ in _NUMBERS and bool(low <= v < high)

        return closed_open

    def closed_closed(v: Any) -> bool:
        return v.__class__ in _NUMBERS and bool(low <= v <= high)

    return closed_closed


def _compile_cidr(spec: Any, path: _Path) -> _Leaf:
    if not isinstance(spec, str) or "/" not in spec:
        raise _Invalid(
            path,
            f'"cidr" expects a CIDR block like "10.0.0.0/24" or "2001:db8::/32", got {_show(spec)}',
        )
    try:
        network = ipaddress.ip_network(spec, strict=False)
    except ValueError as err:
        raise _Invalid(path, f'"cidr" {_show(spec)} is not a valid CIDR block: {err}') from None
    version = network.version

    def cidr_leaf(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            address = ipaddress.ip_address(v)
        except ValueError:
            return False
        return address.version == version and address in network

    return cidr_leaf


def _compile_anything_but(spec: Any, path: _Path) -> _Leaf:
    """``anything-but`` matches every leaf value that the inner rule does not exclude."""
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise _Invalid(
                path,
                '"anything-but" object must have exactly one of "prefix", "suffix", '
                f'"equals-ignore-case", "wildcard", got {_show(spec)}',
            )
        ((operator, inner),) = spec.items()
        excluded: _Leaf
        if operator in ("prefix", "suffix"):
            if not isinstance(inner, str) or not inner:
                raise _Invalid(
                    path,
                    f'"anything-but": {{"{operator}": ...}} expects a non-empty string, '
                    f"got {_show(inner)}",
                )
            excluded = _compile_affix(operator, inner, path)
        elif operator == "equals-ignore-case":
            folded = frozenset(s.casefold() for s in _string_or_strings(inner, operator, path))

            def excluded_ignore_case(v: Any) -> bool:
                return isinstance(v, str) and v.casefold() in folded

            excluded = excluded_ignore_case
        elif operator == "wildcard":
            patterns = [
                _compile_wildcard(s, path) for s in _string_or_strings(inner, operator, path)
            ]

            def excluded_wildcard(v: Any) -> bool:
                return isinstance(v, str) and any(p.fullmatch(v) for p in patterns)

            excluded = excluded_wildcard
        else:
            raise _Invalid(
                path,
                f'"anything-but" does not support {_show(operator)} (use a value, a list, '
                'or one of "prefix", "suffix", "equals-ignore-case", "wildcard")',
            )

        def anything_but_rule(v: Any) -> bool:
            return not excluded(v)

        return anything_but_rule

    values = spec if isinstance(spec, list) else [spec]
    if not values:
        raise _Invalid(path, '"anything-but" list must not be empty')
    strings = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if _is_number(v)]
    if len(strings) + len(numbers) != len(values):
        bad = next(v for v in values if not isinstance(v, str) and not _is_number(v))
        raise _Invalid(
            path,
            f'"anything-but" accepts strings or numbers (or an object), got {_show(bad)}',
        )
    if strings and numbers:
        raise _Invalid(
            path,
            f'"anything-but" list must hold only strings or only numbers, got {_show(spec)}',
        )
    excluded_strings = frozenset(strings)
    excluded_numbers = frozenset(numbers)

    def anything_but_values(v: Any) -> bool:
        if isinstance(v, str):
            return v not in excluded_strings
        if type(v) is int or type(v) is float:
            return v not in excluded_numbers
        return True

    return anything_but_values


class _LeafRules:
    """The rules listed for one field, compiled into a single leaf test."""

    def __init__(self) -> None:
        self.strings: set[str] = set()
        self.numbers: set[int | float] = set()
        self.null = False
        self.true = False
        self.false = False
        self.exists = False
        self.absent = False
        self.predicates: list[_Leaf] = []
        self.ignore_case: set[str] = set()

    def add(self, rule: Any, path: _Path) -> None:
        if isinstance(rule, str):
            self.strings.add(rule)
        elif rule is None:
            self.null = True
        elif rule is True:
            self.true = True
        elif rule is False:
            self.false = True
        elif _is_number(rule):
            self.numbers.add(rule)
        elif isinstance(rule, dict):
            self._add_operator(rule, path)
        elif isinstance(rule, list):
            raise _Invalid(path, f"nested arrays are not allowed in a rule list, got {_show(rule)}")
        else:  # pragma: no cover - orjson yields only JSON types
            raise _Invalid(path, f"unsupported match value {_show(rule)}")

    def _add_operator(self, rule: dict[str, Any], path: _Path) -> None:
        if len(rule) != 1:
            raise _Invalid(
                path,
                "a rule object must hold exactly one operator "
                f"({', '.join(sorted(_OPERATORS))}), got {_show(rule)}",
            )
        ((operator, spec),) = rule.items()
        if operator in {"prefix", "suffix"}:
            self.predicates.append(_compile_affix(operator, spec, path))
        elif operator == "equals-ignore-case":
            if not isinstance(spec, str):
                raise _Invalid(path, f'"equals-ignore-case" expects a string, got {_show(spec)}')
            self.ignore_case.add(spec.casefold())
        elif operator == "wildcard":
            if not isinstance(spec, str):
                raise _Invalid(path, f'"wildcard" expects a string, got {_show(spec)}')
            pattern = _compile_wildcard(spec, path)

            def wildcard_leaf(v: Any) -> bool:
                return isinstance(v, str) and pattern.fullmatch(v) is not None

            self.predicates.append(wildcard_leaf)
        elif operator == "anything-but":
            self.predicates.append(_compile_anything_but(spec, path))
        elif operator == "numeric":
            self.predicates.append(_compile_numeric(spec, path))
        elif operator == "exists":
            if spec is True:
                self.exists = True
            elif spec is False:
                self.absent = True
            else:
                raise _Invalid(path, f'"exists" expects true or false, got {_show(spec)}')
        elif operator == "cidr":
            self.predicates.append(_compile_cidr(spec, path))
        else:
            raise _Invalid(
                path,
                f"unknown operator {_show(operator)} (supported: {', '.join(sorted(_OPERATORS))})",
            )

    def strings_only(self) -> frozenset[str] | None:
        """The exact strings, when they are the only rules (the common, fast case)."""
        if self.exists or self.numbers or self.predicates or self.ignore_case:
            return None
        if self.null or self.true or self.false or not self.strings:
            return None
        return frozenset(self.strings)

    def leaf_test(self) -> _Leaf:
        if self.exists:
            return _any_leaf
        strings = frozenset(self.strings)
        numbers = frozenset(self.numbers)
        null, true, false = self.null, self.true, self.false
        predicates = tuple(self.predicates)
        if self.ignore_case:
            folded = frozenset(self.ignore_case)

            def ignore_case_leaf(v: Any) -> bool:
                return isinstance(v, str) and v.casefold() in folded

            predicates = (ignore_case_leaf, *predicates)

        constants = null or true or false
        if not predicates and not numbers and not constants:
            # The common case: a list of exact strings.
            def strings_leaf(v: Any) -> bool:
                return isinstance(v, str) and v in strings

            return strings_leaf
        if len(predicates) == 1 and not strings and not numbers and not constants:
            return predicates[0]

        def leaf(v: Any) -> bool:
            if isinstance(v, str):
                if v in strings:
                    return True
            elif v is None:
                if null:
                    return True
            elif v is True:
                if true:
                    return True
            elif v is False:
                if false:
                    return True
            elif (v.__class__ is int or v.__class__ is float) and v in numbers:
                return True
            for predicate in predicates:  # noqa: SIM110 - a plain loop is faster than any()
                if predicate(v):
                    return True
            return False

        return leaf


def _any_leaf(v: Any) -> bool:
    return True


def _iter_items(values: Sequence[Any]) -> Iterator[Any]:
    """The non-array items of a (nested) array, without recursion.

    Records may nest arrays as deep as the JSON parser allows, so this walks them with an
    explicit stack. An empty array yields ``_MISSING``: it holds no value.
    """
    if not values:
        yield _MISSING
        return
    stack = [iter(values)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list | tuple):
                if value:
                    stack.append(iter(value))
                    break
                yield _MISSING
            else:
                yield value
        else:
            stack.pop()


def _iter_leaves(values: Sequence[Any]) -> Iterator[Any]:
    """The leaf values of a (nested) array: objects and empty arrays are not leaves."""
    for item in _iter_items(values):
        if item is not _MISSING and not isinstance(item, Mapping):
            yield item


_SCALARS: Final[frozenset[Any]] = frozenset({str, int, float, bool, type(None)})


def _field_matcher(
    test: _Leaf, accepts_missing: bool, strings: frozenset[str] | None = None
) -> _ValueMatcher:
    """Apply a leaf test to whatever the record holds at a field.

    ``strings`` (when the rules are only exact strings) lets the common case skip a call.
    """

    def non_scalar(v: Any) -> bool:
        if v is _MISSING:
            return accepts_missing
        if isinstance(v, list | tuple):
            seen_leaf = False
            for leaf in _iter_leaves(v):
                if test(leaf):
                    return True
                seen_leaf = True
            return False if seen_leaf else accepts_missing
        if isinstance(v, Mapping):  # not a leaf: the field has no value here
            return accepts_missing
        return test(v)

    if strings is not None:

        def strings_field(v: Any) -> bool:
            if v.__class__ is str:
                return v in strings
            return non_scalar(v)

        return strings_field

    def field(v: Any) -> bool:
        if v.__class__ in _SCALARS:
            return test(v)
        return non_scalar(v)

    return field


def _absent_only(v: Any) -> bool:
    """``[{"exists": false}]`` alone: matches when the field has no leaf value."""
    if v is _MISSING:
        return True
    if isinstance(v, list | tuple):
        return next(_iter_leaves(v), _MISSING) is _MISSING
    return isinstance(v, Mapping)


# ---------------------------------------------------------------------------------------
# Objects, $or and the record root


def _compile_rules(rules: Any, path: _Path) -> tuple[_ValueMatcher, bool]:
    if not rules:
        raise _Invalid(path, "empty arrays are not allowed; list at least one value or rule")
    compiled = _LeafRules()
    for i, rule in enumerate(rules):
        compiled.add(rule, (*path, i) if len(rules) > 1 else path)
    if compiled.absent and not (
        compiled.exists
        or compiled.strings
        or compiled.numbers
        or compiled.null
        or compiled.true
        or compiled.false
        or compiled.predicates
        or compiled.ignore_case
    ):
        return _absent_only, True
    test = compiled.leaf_test()
    strings = compiled.strings_only()
    return _field_matcher(test, compiled.absent, strings), compiled.absent


def _compile_value(value: Any, path: _Path, in_or: bool) -> tuple[_ValueMatcher, bool]:
    """Compile the pattern value of one field; returns (matcher, matches-when-missing)."""
    if isinstance(value, list):
        return _compile_rules(value, path)
    if isinstance(value, dict):
        _, match_value, accepts_missing = _compile_object(value, path, in_or)
        return match_value, accepts_missing
    raise _Invalid(
        path,
        'a field must map to an array of values or rules (for example ["x"] or '
        f'[{{"prefix": "x"}}]) or to a nested object, got {_type_name(value)} {_show(value)}',
    )


def _check_depth(path: _Path) -> None:
    if len(path) > MAX_PATTERN_DEPTH:
        raise _Invalid(
            path, f"the pattern is nested too deeply (more than {MAX_PATTERN_DEPTH} levels)"
        )


def _check_key(key: str, path: _Path, in_or: bool) -> None:
    if in_or and key in _OPERATORS:
        raise _Invalid(
            (*path, key),
            f"{_show(key)} is an operator name and cannot be used as a field name inside "
            '"$or"; put operators in a rule list, e.g. {"field": [{"' + key + '": ...}]}',
        )


def _or_branches(value: Any, path: _Path) -> list[tuple[dict[str, Any], _Path]]:
    if not isinstance(value, list) or len(value) < 2:
        raise _Invalid(
            path,
            f'"$or" expects an array of at least 2 pattern objects, got {_show(value)}',
        )
    branches: list[tuple[dict[str, Any], _Path]] = []
    for i, branch in enumerate(value):
        if not isinstance(branch, dict):
            raise _Invalid(
                (*path, i), f'"$or" entries must be pattern objects, got {_show(branch)}'
            )
        branches.append((branch, (*path, i)))
    return branches


def _compile_object(
    obj: dict[str, Any], path: _Path, in_or: bool
) -> tuple[_ObjectMatcher, _ValueMatcher, bool]:
    """Compile a pattern object.

    Returns the matcher for one record object, the matcher for whatever value the record
    holds where the object pattern applies, and whether a missing value matches.
    """
    if not obj:
        raise _Invalid(path, "empty objects are not allowed")
    _check_depth(path)
    fields: list[tuple[str, _ValueMatcher]] = []
    or_groups: list[tuple[_ObjectMatcher, ...]] = []
    accepts_missing = True
    for key, value in obj.items():
        if key == _OR:
            compiled = [
                _compile_object(branch, branch_path, True)
                for branch, branch_path in _or_branches(value, (*path, key))
            ]
            or_groups.append(tuple(matcher for matcher, _, _ in compiled))
            accepts_missing = accepts_missing and any(missing for _, _, missing in compiled)
            continue
        _check_key(key, path, in_or)
        matcher, missing = _compile_value(value, (*path, key), in_or)
        fields.append((key, matcher))
        accepts_missing = accepts_missing and missing
    fields_t = tuple(fields)
    groups_t = tuple(or_groups)

    def match_object(record_object: Mapping[str, Any]) -> bool:
        get = record_object.get
        for key, matcher in fields_t:
            if not matcher(get(key, _MISSING)):
                return False
        for group in groups_t:
            for branch in group:
                if branch(record_object):
                    break
            else:
                return False
        return True

    def match_value(v: Any) -> bool:
        if v.__class__ is dict:  # the common case, inlined: one call less per level
            get = v.get
            for key, matcher in fields_t:
                if not matcher(get(key, _MISSING)):
                    return False
            for group in groups_t:
                for branch in group:
                    if branch(v):
                        break
                else:
                    return False
            return True
        if isinstance(v, list | tuple):
            # Array consistency: one element must satisfy the whole object pattern.
            for item in _iter_items(v):
                if isinstance(item, Mapping):
                    if match_object(item):
                        return True
                elif accepts_missing:  # a scalar or an empty array: no object here
                    return True
            return False
        if isinstance(v, Mapping):
            return match_object(v)
        return accepts_missing

    return match_object, match_value, accepts_missing


# --- per-source data fields ------------------------------------------------------------


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
        return _UNDECODABLE


def _decode_kinesis_data(data: Any) -> Any:
    """Kinesis ``data``: base64, then JSON; anything else cannot be filtered on."""
    if not isinstance(data, str | bytes):
        return _UNDECODABLE
    try:
        return orjson.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):  # JSONDecodeError is a ValueError
        return _UNDECODABLE


def _decode_kafka_bytes(encoded: Any) -> Any:
    """Kafka ``value`` / ``key``: base64, then UTF-8, then JSON or the plain string."""
    if encoded is None:
        return _MISSING
    if not isinstance(encoded, str | bytes):
        return _UNDECODABLE
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return _UNDECODABLE
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _UNDECODABLE


def _plain_getter(key: str) -> _Getter:
    def get(record: Mapping[str, Any], cache: _Cache) -> Any:
        return record.get(key, _MISSING)

    return get


def _kinesis_metadata_getter(key: str) -> _Getter:
    """Kinesis metadata: top-level record keys, or the flat form Lambda's guide shows."""

    def get(record: Mapping[str, Any], cache: _Cache) -> Any:
        value = record.get(key, _MISSING)
        if value is _MISSING:
            inner = record.get("kinesis")
            if isinstance(inner, Mapping):
                return inner.get(key, _MISSING)
        return value

    return get


def _sqs_body(record: Mapping[str, Any], cache: _Cache) -> Any:
    value = cache.get("body", _NOT_CACHED)
    if value is _NOT_CACHED:
        raw = record.get("body", _MISSING)
        value = raw if raw is _MISSING else _decode_sqs_body(raw)
        cache["body"] = value
    return value


def _kinesis_data(record: Mapping[str, Any], cache: _Cache) -> Any:
    value = cache.get("data", _NOT_CACHED)
    if value is _NOT_CACHED:
        inner = record.get("kinesis")
        raw = inner.get("data", _MISSING) if isinstance(inner, Mapping) else _MISSING
        value = raw if raw is _MISSING else _decode_kinesis_data(raw)
        cache["data"] = value
    return value


def _kafka_field_getter(key: str) -> _Getter:
    def get(record: Mapping[str, Any], cache: _Cache) -> Any:
        value = cache.get(key, _NOT_CACHED)
        if value is _NOT_CACHED:
            raw = record.get(key, _MISSING)
            value = raw if raw is _MISSING else _decode_kafka_bytes(raw)
            cache[key] = value
        return value

    return get


_DATA_GETTERS: Final[dict[SourceKind, dict[str, _Getter]]] = {
    SourceKind.SQS: {"body": _sqs_body},
    SourceKind.KINESIS: {"data": _kinesis_data},
    SourceKind.DYNAMODB: {},
    SourceKind.KAFKA: {"value": _kafka_field_getter("value"), "key": _kafka_field_getter("key")},
}

_OBJECT_ONLY_DATA: Final[dict[SourceKind, str]] = {
    SourceKind.KINESIS: "data",
    SourceKind.DYNAMODB: "dynamodb",
}


def _root_getter(source: SourceKind, key: str) -> _Getter:
    data_getter = _DATA_GETTERS[source].get(key)
    if data_getter is not None:
        return data_getter
    if source is SourceKind.KINESIS:
        return _kinesis_metadata_getter(key)
    return _plain_getter(key)


def _check_data_shape(source: SourceKind, key: str, value: Any, path: _Path) -> None:
    if _OBJECT_ONLY_DATA.get(source) == key and not isinstance(value, dict):
        label = "Kinesis" if source is SourceKind.KINESIS else "DynamoDB"
        raise _Invalid(
            (*path, key),
            f"{label} filters match {_show(key)} as JSON, so its pattern must be an object of "
            f'fields (for example {{"{key}": {{"field": ["value"]}}}}), got {_show(value)}',
        )


_METADATA: Final = 0
_DATA_OBJECT: Final = 1
_DATA_VALUE: Final = 2


def _compile_root(obj: Any, path: _Path, source: SourceKind, in_or: bool) -> _RootMatcher:
    if not isinstance(obj, dict):
        raise _Invalid(path, f"the pattern must be a JSON object, got {_type_name(obj)}")
    if not obj:
        raise _Invalid(
            path, "an empty pattern {} is not allowed (to match every record, configure no filters)"
        )
    _check_depth(path)
    data_keys = _DATA_GETTERS[source]
    metadata_fields: list[tuple[_Getter, _ValueMatcher, int]] = []
    data_fields: list[tuple[_Getter, _ValueMatcher, int]] = []
    or_groups: list[tuple[_RootMatcher, ...]] = []
    for key, value in obj.items():
        if key == _OR:
            or_groups.append(
                tuple(
                    _compile_root(branch, branch_path, source, True)
                    for branch, branch_path in _or_branches(value, (*path, key))
                )
            )
            continue
        _check_key(key, path, in_or)
        _check_data_shape(source, key, value, path)
        matcher, _ = _compile_value(value, (*path, key), in_or)
        if key in data_keys:
            shape = _DATA_OBJECT if isinstance(value, dict) else _DATA_VALUE
            data_fields.append((data_keys[key], matcher, shape))
        else:
            metadata_fields.append((_root_getter(source, key), matcher, _METADATA))
    # Cheap metadata checks first: a record they reject is never decoded.
    fields_t = tuple(metadata_fields + data_fields)
    groups_t = tuple(or_groups)

    def match_record(record: Mapping[str, Any], cache: _Cache) -> bool:
        for getter, matcher, shape in fields_t:
            value = getter(record, cache)
            if shape:
                # Lambda's format check on the data field: JSON data needs an object
                # pattern and a plain value needs value rules, else the record is dropped.
                if value is _UNDECODABLE:
                    return False
                if shape == _DATA_OBJECT:
                    if (
                        value.__class__ is not dict
                        and value is not _MISSING
                        and not isinstance(value, Mapping | list | tuple)
                    ):
                        return False
                elif value.__class__ is dict or isinstance(value, Mapping):
                    return False
            if not matcher(value):
                return False
        for group in groups_t:
            for branch in group:
                if branch(record, cache):
                    break
            else:
                return False
        return True

    return match_record


# ---------------------------------------------------------------------------------------
# Public API


class FilterSet:
    """A mapping's compiled ``FilterCriteria``: a record passes if any filter matches.

    Build it with :func:`compile_filter_criteria`. Immutable and safe to share between
    tasks; :meth:`matches` does no I/O and never modifies the record.
    """

    __slots__ = ("_matchers", "_patterns", "_source")

    def __init__(
        self, *, source: SourceKind, patterns: tuple[str, ...], matchers: tuple[_RootMatcher, ...]
    ) -> None:
        self._source = source
        self._patterns = patterns
        self._matchers = matchers

    @property
    def source(self) -> SourceKind:
        """The source kind the patterns were compiled for."""
        return self._source

    @property
    def patterns(self) -> tuple[str, ...]:
        """The pattern strings, as configured."""
        return self._patterns

    @property
    def is_empty(self) -> bool:
        """True when there are no filters: every record matches."""
        return not self._matchers

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` (one Lambda-shaped record of this source) passes the filters.

        The record's data field is decoded at most once, and only if a filter needs it.
        Never raises for a record of JSON-like values, whatever its content or nesting.
        """
        matchers = self._matchers
        if not matchers:
            return True
        cache: _Cache = {}
        for matcher in matchers:  # noqa: SIM110 - hot path, a plain loop beats any(<genexpr>)
            if matcher(record, cache):
                return True
        return False

    def __repr__(self) -> str:
        return f"FilterSet(source={self._source.value!r}, filters={len(self._patterns)})"


def compile_filter_criteria(
    patterns: Sequence[str],
    *,
    source: SourceKind,
    max_filters: int = DEFAULT_MAX_FILTERS,
) -> FilterSet:
    """Validate and compile ``FilterCriteria.Filters[].Pattern`` strings for one mapping.

    ``patterns`` are the JSON pattern strings in configuration order; an empty sequence
    gives a FilterSet that matches every record. ``source`` decides how the record's data
    field is decoded (see the module docstring). ``max_filters`` is the filter quota (5
    by default, up to 10 by settings).

    Raises :class:`FilterPatternError` for the first invalid pattern, naming the place
    inside it (``.where``) and its position in ``patterns`` (``.index``).
    """
    source = SourceKind(source)
    if isinstance(patterns, str):
        raise TypeError("patterns must be a sequence of pattern strings, not one string")
    if len(patterns) > max_filters:
        raise FilterPatternError(
            f"{len(patterns)} filters given, at most {max_filters} are allowed per event "
            "source mapping"
        )
    matchers = tuple(
        _compile_pattern(pattern, source=source, index=index)
        for index, pattern in enumerate(patterns)
    )
    return FilterSet(source=source, patterns=tuple(patterns), matchers=matchers)


def _compile_pattern(pattern: Any, *, source: SourceKind, index: int) -> _RootMatcher:
    if not isinstance(pattern, str):
        raise FilterPatternError(
            f"a pattern must be a JSON string, got {type(pattern).__name__}", index=index
        )
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise FilterPatternError(
            f"the pattern is {len(pattern)} characters long, at most {MAX_PATTERN_LENGTH} "
            "are allowed",
            index=index,
        )
    try:
        parsed = orjson.loads(pattern)
    except orjson.JSONDecodeError as err:
        raise FilterPatternError(f"the pattern is not valid JSON: {err}", index=index) from None
    try:
        return _compile_root(parsed, (), source, False)
    except _Invalid as err:
        raise FilterPatternError(err.reason, where=_render_path(err.path), index=index) from None
