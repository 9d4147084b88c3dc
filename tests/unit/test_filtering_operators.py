"""Every filter operator, matching and non-matching, table-driven.

Each case is checked twice: with the event as the record's own fields (metadata
matching) and with the event as the JSON body of an SQS message (data matching after a
JSON round trip). The two must agree.

Sources of the examples: the Lambda event-filtering guide (filter rule syntax table and
examples), the EventBridge event-pattern docs (content filtering, comparison operators)
and the event-ruler README (the engine EventBridge and Lambda share).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pumphouse.patterns import SourceKind, compile_filter_criteria

Case = tuple[str, dict[str, Any], dict[str, Any], bool]


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Match ``pattern`` against ``event`` as metadata and as an SQS JSON body."""
    as_metadata = compile_filter_criteria([orjson.dumps(pattern).decode()], source=SourceKind.SQS)
    as_body = compile_filter_criteria(
        [orjson.dumps({"body": pattern}).decode()], source=SourceKind.SQS
    )
    direct = as_metadata.matches(event)
    via_body = as_body.matches({"body": orjson.dumps(event).decode()})
    assert direct == via_body, "metadata and body matching disagree"
    return direct


def params(cases: list[Case]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        ("pattern", "event", "expected"),
        [pytest.param(p, e, x, id=name) for name, p, e, x in cases],
    )


# --- the Lambda guide's filter rule syntax table -----------------------------------------

LAMBDA_SYNTAX_TABLE: list[Case] = [
    ("null", {"UserID": [None]}, {"UserID": None}, True),
    ("null-vs-string", {"UserID": [None]}, {"UserID": "null"}, False),
    ("null-vs-missing", {"UserID": [None]}, {}, False),
    ("empty", {"LastName": [""]}, {"LastName": ""}, True),
    ("empty-vs-null", {"LastName": [""]}, {"LastName": None}, False),
    ("empty-vs-text", {"LastName": [""]}, {"LastName": "Doe"}, False),
    ("equals", {"Name": ["Alice"]}, {"Name": "Alice"}, True),
    ("equals-is-case-sensitive", {"Name": ["Alice"]}, {"Name": "alice"}, False),
    (
        "and",
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Monday"},
        True,
    ),
    (
        "and-one-fails",
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Tuesday"},
        False,
    ),
    (
        "and-field-missing",
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York"},
        False,
    ),
    ("or-first", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Credit"}, True),
    ("or-second", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, True),
    ("or-neither", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Cash"}, False),
    ("not", {"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Sunny"}, True),
    ("not-excluded", {"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Raining"}, False),
    ("numeric-equals", {"Price": [{"numeric": ["=", 100]}]}, {"Price": 100}, True),
    ("numeric-equals-other", {"Price": [{"numeric": ["=", 100]}]}, {"Price": 101}, False),
    ("numeric-range-in", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20}, True),
    ("numeric-range-low", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 10}, False),
    ("numeric-range-high", {"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20.5}, False),
    ("exists", {"ProductName": [{"exists": True}]}, {"ProductName": "Widget"}, True),
    ("exists-missing", {"ProductName": [{"exists": True}]}, {"Other": 1}, False),
    ("not-exists", {"ProductName": [{"exists": False}]}, {"Other": 1}, True),
    ("not-exists-present", {"ProductName": [{"exists": False}]}, {"ProductName": "W"}, False),
    ("begins-with", {"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"}, True),
    ("begins-with-other", {"Region": [{"prefix": "us-"}]}, {"Region": "eu-west-1"}, False),
]


@params(LAMBDA_SYNTAX_TABLE)
def test_lambda_filter_rule_syntax_table(
    pattern: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    assert matches(pattern, event) is expected


# --- exact values -------------------------------------------------------------------------

EXACT: list[Case] = [
    ("string", {"a": ["x"]}, {"a": "x"}, True),
    ("string-other", {"a": ["x"]}, {"a": "y"}, False),
    ("string-missing", {"a": ["x"]}, {"b": "x"}, False),
    ("string-vs-number", {"a": ["1"]}, {"a": 1}, False),
    ("number-vs-string", {"a": [1]}, {"a": "1"}, False),
    ("number-int", {"a": [300]}, {"a": 300}, True),
    ("number-equal-float", {"a": [300]}, {"a": 300.0}, True),
    ("number-float-pattern", {"a": [3.0e2]}, {"a": 300}, True),
    ("number-other", {"a": [300]}, {"a": 301}, False),
    ("negative-float", {"a": [-1.5]}, {"a": -1.5}, True),
    ("true", {"a": [True]}, {"a": True}, True),
    ("true-vs-false", {"a": [True]}, {"a": False}, False),
    ("true-is-not-one", {"a": [True]}, {"a": 1}, False),
    ("one-is-not-true", {"a": [1]}, {"a": True}, False),
    ("zero-is-not-false", {"a": [0]}, {"a": False}, False),
    ("false", {"a": [False]}, {"a": False}, True),
    ("true-vs-string", {"a": [True]}, {"a": "true"}, False),
    ("mixed-list-number", {"a": [1, "x", None]}, {"a": 1}, True),
    ("mixed-list-string", {"a": [1, "x", None]}, {"a": "x"}, True),
    ("mixed-list-null", {"a": [1, "x", None]}, {"a": None}, True),
    ("mixed-list-none", {"a": [1, "x", None]}, {"a": "1"}, False),
    ("nested", {"a": {"b": {"c": ["x"]}}}, {"a": {"b": {"c": "x"}}}, True),
    ("nested-other", {"a": {"b": {"c": ["x"]}}}, {"a": {"b": {"c": "y"}}}, False),
    ("nested-parent-scalar", {"a": {"b": ["x"]}}, {"a": "x"}, False),
    ("nested-parent-missing", {"a": {"b": ["x"]}}, {}, False),
    ("value-rule-vs-object", {"a": ["x"]}, {"a": {"b": "x"}}, False),
    ("unicode", {"a": ["żółw 🐢"]}, {"a": "żółw 🐢"}, True),
    ("dotted-key", {"a.b": ["x"]}, {"a.b": "x"}, True),
    ("other-fields-ignored", {"a": ["x"]}, {"a": "x", "b": {"c": [1, 2]}, "d": None}, True),
]


@params(EXACT)
def test_exact_values(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, event) is expected


def test_duplicate_keys_last_one_wins() -> None:
    # Lambda documents that only the last value of a duplicated key is used.
    filters = compile_filter_criteria(['{"a": ["x"], "a": ["y"]}'], source=SourceKind.SQS)
    assert filters.matches({"a": "y"})
    assert not filters.matches({"a": "x"})


# --- arrays in the event ------------------------------------------------------------------

EMPLOYEES = {
    "employees": [
        {"firstName": "John", "lastName": "Doe"},
        {"firstName": "Anna", "lastName": "Smith"},
        {"firstName": "Peter", "lastName": "Jones"},
    ]
}
EMPLOYEES_NESTED = {
    "employees": [
        [{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"}],
        [{"firstName": "Peter", "lastName": "Jones"}],
    ]
}
EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "012345679012",
    "time": "2017-10-02T16:24:49Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
    "detail": {
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.33",
        "instance-id": "i-000000aaaaaa00000",
        "state": "running",
    },
}

ARRAYS: list[Case] = [
    ("any-element", {"a": ["x"]}, {"a": ["y", "x"]}, True),
    ("no-element", {"a": ["x"]}, {"a": ["y", "z"]}, False),
    ("empty-array", {"a": ["x"]}, {"a": []}, False),
    ("nested-arrays", {"a": [3]}, {"a": [[1, 2], [[3]]]}, True),
    ("intersection", {"a": ["x", "q"]}, {"a": ["p", "q"]}, True),
    ("objects-in-array", {"employees": {"firstName": ["Anna"]}}, EMPLOYEES, True),
    ("objects-in-array-none", {"employees": {"firstName": ["Zoe"]}}, EMPLOYEES, False),
    (
        "array-consistent-same-element",
        {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}},
        EMPLOYEES,
        True,
    ),
    (
        "array-consistent-different-elements",
        {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}},
        EMPLOYEES,
        False,
    ),
    ("multi-level-arrays", {"employees": {"firstName": ["Peter"]}}, EMPLOYEES_NESTED, True),
    (
        "resources",
        {
            "detail-type": ["EC2 Instance State-change Notification"],
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
            "detail": {"state": ["initializing", "running"]},
        },
        EC2_EVENT,
        True,
    ),
    ("array-of-scalars-vs-object-pattern", {"a": {"b": ["x"]}}, {"a": ["x", 1]}, False),
]


@params(ARRAYS)
def test_arrays(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, event) is expected


# --- prefix, suffix, equals-ignore-case, wildcard ------------------------------------------

STRING_OPERATORS: list[Case] = [
    ("prefix", {"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-02T18:43:48Z"}, True),
    ("prefix-other", {"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-03T00:00Z"}, False),
    ("prefix-whole", {"a": [{"prefix": "abc"}]}, {"a": "abc"}, True),
    ("prefix-longer-than-value", {"a": [{"prefix": "abc"}]}, {"a": "ab"}, False),
    ("prefix-number", {"a": [{"prefix": "1"}]}, {"a": 12}, False),
    ("prefix-empty", {"a": [{"prefix": ""}]}, {"a": "anything"}, True),
    ("prefix-case", {"a": [{"prefix": "Event"}]}, {"a": "eventbridge"}, False),
    (
        "prefix-ignore-case",
        {"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}},
        {"detail": {"service": "EVENTBRIDGE"}},
        True,
    ),
    (
        "prefix-ignore-case-other",
        {"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}},
        {"detail": {"service": "xeventbridge"}},
        False,
    ),
    ("suffix", {"FileName": [{"suffix": ".png"}]}, {"FileName": "image.png"}, True),
    ("suffix-case", {"FileName": [{"suffix": ".png"}]}, {"FileName": "image.PNG"}, False),
    ("suffix-other", {"FileName": [{"suffix": ".png"}]}, {"FileName": "image.jpg"}, False),
    (
        "suffix-ignore-case",
        {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]},
        {"FileName": "IMAGE.PNG"},
        True,
    ),
    (
        "suffix-ignore-case-other",
        {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]},
        {"FileName": "image.gif"},
        False,
    ),
    ("ignore-case", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "ALICE"}, True),
    ("ignore-case-mixed", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "aLiCe"}, True),
    ("ignore-case-other", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "alicia"}, False),
    ("ignore-case-number", {"a": [{"equals-ignore-case": "1"}]}, {"a": 1}, False),
    (
        "wildcard",
        {"source": [{"wildcard": "Simple*Service"}]},
        {"source": "SimpleQueueService"},
        True,
    ),
    ("wildcard-empty-run", {"a": [{"wildcard": "Simple*Service"}]}, {"a": "SimpleService"}, True),
    ("wildcard-other", {"a": [{"wildcard": "Simple*Service"}]}, {"a": "SimpleQueue"}, False),
    ("wildcard-anchored", {"a": [{"wildcard": "*.png"}]}, {"a": "a.png.bak"}, False),
    ("wildcard-star-only", {"a": [{"wildcard": "*"}]}, {"a": ""}, True),
    ("wildcard-not-number", {"a": [{"wildcard": "*"}]}, {"a": 5}, False),
    ("wildcard-several", {"a": [{"wildcard": "a*b*c"}]}, {"a": "a-x-b-y-c"}, True),
    ("wildcard-several-order", {"a": [{"wildcard": "a*b*c"}]}, {"a": "a-c-b"}, False),
    ("wildcard-regex-chars", {"a": [{"wildcard": "a.c*"}]}, {"a": "abcd"}, False),
    ("wildcard-regex-chars-literal", {"a": [{"wildcard": "a.c*"}]}, {"a": "a.cd"}, True),
    ("wildcard-newline", {"a": [{"wildcard": "a*c"}]}, {"a": "a\nb\nc"}, True),
    ("wildcard-escaped-star", {"a": [{"wildcard": "a\\*b"}]}, {"a": "a*b"}, True),
    ("wildcard-escaped-star-is-literal", {"a": [{"wildcard": "a\\*b"}]}, {"a": "axb"}, False),
    ("wildcard-escaped-backslash", {"a": [{"wildcard": "a\\\\*"}]}, {"a": "a\\xyz"}, True),
    ("wildcard-escaped-backslash-needs-it", {"a": [{"wildcard": "a\\\\*"}]}, {"a": "axyz"}, False),
]


@params(STRING_OPERATORS)
def test_string_operators(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, event) is expected


# --- anything-but ---------------------------------------------------------------------------

ANYTHING_BUT: list[Case] = [
    ("string", {"state": [{"anything-but": "initializing"}]}, {"state": "running"}, True),
    (
        "string-excluded",
        {"state": [{"anything-but": "initializing"}]},
        {"state": "initializing"},
        False,
    ),
    ("string-missing-field", {"state": [{"anything-but": "initializing"}]}, {}, False),
    ("string-vs-number", {"state": [{"anything-but": "5"}]}, {"state": 5}, True),
    ("string-vs-null", {"state": [{"anything-but": "x"}]}, {"state": None}, True),
    ("number", {"x-limit": [{"anything-but": 123}]}, {"x-limit": 124}, True),
    ("number-excluded", {"x-limit": [{"anything-but": 123}]}, {"x-limit": 123}, False),
    ("number-excluded-float", {"x-limit": [{"anything-but": 123}]}, {"x-limit": 123.0}, False),
    ("number-vs-string", {"x-limit": [{"anything-but": 123}]}, {"x-limit": "123"}, True),
    (
        "string-list",
        {"state": [{"anything-but": ["stopped", "overloaded"]}]},
        {"state": "running"},
        True,
    ),
    (
        "string-list-excluded",
        {"state": [{"anything-but": ["stopped", "overloaded"]}]},
        {"state": "overloaded"},
        False,
    ),
    ("number-list", {"x": [{"anything-but": [100, 200, 300]}]}, {"x": 150}, True),
    ("number-list-excluded", {"x": [{"anything-but": [100, 200, 300]}]}, {"x": 200}, False),
    ("prefix", {"state": [{"anything-but": {"prefix": "init"}}]}, {"state": "running"}, True),
    (
        "prefix-excluded",
        {"state": [{"anything-but": {"prefix": "init"}}]},
        {"state": "initializing"},
        False,
    ),
    ("prefix-number", {"state": [{"anything-but": {"prefix": "1"}}]}, {"state": 12}, True),
    ("suffix", {"FileName": [{"anything-but": {"suffix": ".png"}}]}, {"FileName": "a.jpg"}, True),
    (
        "suffix-excluded",
        {"FileName": [{"anything-but": {"suffix": ".png"}}]},
        {"FileName": "a.png"},
        False,
    ),
    (
        "ignore-case",
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "running"},
        True,
    ),
    (
        "ignore-case-excluded",
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "INITIALIZING"},
        False,
    ),
    (
        "ignore-case-list",
        {"state": [{"anything-but": {"equals-ignore-case": ["stopped", "Overloaded"]}}]},
        {"state": "OVERLOADED"},
        False,
    ),
    (
        "ignore-case-list-other",
        {"state": [{"anything-but": {"equals-ignore-case": ["stopped", "Overloaded"]}}]},
        {"state": "running"},
        True,
    ),
    (
        "wildcard",
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/bin/python"},
        True,
    ),
    (
        "wildcard-excluded",
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/lib/python"},
        False,
    ),
    (
        "wildcard-list",
        {"FilePath": [{"anything-but": {"wildcard": ["*/lib/*", "*/bin/*"]}}]},
        {"FilePath": "/usr/bin/python"},
        False,
    ),
    (
        "wildcard-list-other",
        {"FilePath": [{"anything-but": {"wildcard": ["*/lib/*", "*/bin/*"]}}]},
        {"FilePath": "/opt/python"},
        True,
    ),
    ("array-some-other", {"a": [{"anything-but": "x"}]}, {"a": ["x", "y"]}, True),
    ("array-all-excluded", {"a": [{"anything-but": "x"}]}, {"a": ["x", "x"]}, False),
    ("object-is-not-a-value", {"a": [{"anything-but": "x"}]}, {"a": {"b": "y"}}, False),
]


@params(ANYTHING_BUT)
def test_anything_but(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, event) is expected


# --- numeric ---------------------------------------------------------------------------------

NUMERIC: list[Case] = [
    ("gt-in", {"c": [{"numeric": [">", 0, "<=", 5]}]}, {"c": 0.1}, True),
    ("gt-bound", {"c": [{"numeric": [">", 0, "<=", 5]}]}, {"c": 0}, False),
    ("le-bound", {"c": [{"numeric": [">", 0, "<=", 5]}]}, {"c": 5}, True),
    ("le-over", {"c": [{"numeric": [">", 0, "<=", 5]}]}, {"c": 5.000001}, False),
    ("ge-lt-low", {"c": [{"numeric": [">=", 5, "<", 10]}]}, {"c": 5}, True),
    ("ge-lt-high", {"c": [{"numeric": [">=", 5, "<", 10]}]}, {"c": 10}, False),
    ("ge-le-equal", {"c": [{"numeric": [">=", 5, "<=", 5]}]}, {"c": 5}, True),
    ("gt-lt", {"c": [{"numeric": [">", 5, "<", 10]}]}, {"c": 7}, True),
    ("gt-lt-edge", {"c": [{"numeric": [">", 5, "<", 10]}]}, {"c": 5}, False),
    ("lt", {"d": [{"numeric": ["<", 10]}]}, {"d": 9.99}, True),
    ("lt-edge", {"d": [{"numeric": ["<", 10]}]}, {"d": 10}, False),
    ("le", {"d": [{"numeric": ["<=", 10]}]}, {"d": 10}, True),
    ("gt", {"d": [{"numeric": [">", -1]}]}, {"d": -0.5}, True),
    ("ge", {"d": [{"numeric": [">=", 10]}]}, {"d": 9.999}, False),
    ("eq-float", {"x": [{"numeric": ["=", 3.018e2]}]}, {"x": 301.8}, True),
    ("eq-int-vs-exponent", {"x": [{"numeric": ["=", 300]}]}, {"x": 3.0e2}, True),
    ("eq-other", {"x": [{"numeric": ["=", 300]}]}, {"x": 300.5}, False),
    ("never-string", {"x": [{"numeric": [">", 0]}]}, {"x": "5"}, False),
    ("never-bool", {"x": [{"numeric": [">", 0]}]}, {"x": True}, False),
    ("never-null", {"x": [{"numeric": ["<", 0]}]}, {"x": None}, False),
    ("missing", {"x": [{"numeric": ["<", 0]}]}, {}, False),
    ("array", {"x": [{"numeric": [">", 10]}]}, {"x": [1, 20]}, True),
    ("array-none", {"x": [{"numeric": [">", 10]}]}, {"x": [1, 2]}, False),
    ("large", {"x": [{"numeric": [">", 5e9]}]}, {"x": 5000000001}, True),
    ("negative-range", {"x": [{"numeric": [">=", -10, "<", -5]}]}, {"x": -7}, True),
    (
        "combined-with-exact",
        {"x": ["none", {"numeric": [">", 100]}]},
        {"x": "none"},
        True,
    ),
]


@params(NUMERIC)
def test_numeric(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, event) is expected


# --- exists ----------------------------------------------------------------------------------

EXISTS: list[Case] = [
    ("true-string", {"a": [{"exists": True}]}, {"a": "x"}, True),
    ("true-null-is-a-value", {"a": [{"exists": True}]}, {"a": None}, True),
    ("true-false-is-a-value", {"a": [{"exists": True}]}, {"a": False}, True),
    ("true-missing", {"a": [{"exists": True}]}, {}, False),
    ("true-intermediate-node", {"a": [{"exists": True}]}, {"a": {"b": 1}}, False),
    ("true-empty-array", {"a": [{"exists": True}]}, {"a": []}, False),
    ("true-array", {"a": [{"exists": True}]}, {"a": [1]}, True),
    ("false-missing", {"a": [{"exists": False}]}, {"b": 1}, True),
    ("false-present", {"a": [{"exists": False}]}, {"a": 1}, False),
    ("false-null-present", {"a": [{"exists": False}]}, {"a": None}, False),
    ("false-intermediate-node", {"a": [{"exists": False}]}, {"a": {"b": 1}}, True),
    ("false-empty-array", {"a": [{"exists": False}]}, {"a": []}, True),
    (
        "false-nested-parent-missing",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail-type": "x"},
        True,
    ),
    (
        "false-nested-present",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"c-count": 5}},
        False,
    ),
    (
        # The event-ruler README example: c-count is not a leaf here, so it "does not exist".
        "false-nested-not-leaf",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"state": ["initializing", "running"], "c-count": {"c1": 100}}},
        True,
    ),
    ("false-or-value-missing", {"a": ["x", {"exists": False}]}, {}, True),
    ("false-or-value-value", {"a": ["x", {"exists": False}]}, {"a": "x"}, True),
    ("false-or-value-other", {"a": ["x", {"exists": False}]}, {"a": "y"}, False),
    (
        "false-with-and",
        {"a": [{"exists": False}], "b": ["x"]},
        {"b": "x"},
        True,
    ),
    (
        "false-with-and-other-fails",
        {"a": [{"exists": False}], "b": ["x"]},
        {"b": "y"},
        False,
    ),
]


@params(EXISTS)
def test_exists(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, event) is expected


# --- cidr ------------------------------------------------------------------------------------

CIDR: list[Case] = [
    ("v4-in", {"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}, EC2_EVENT, True),
    ("v4-out", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.1.1"}, False),
    ("v4-wide", {"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": "10.200.3.4"}, True),
    ("v4-host-bits-set", {"ip": [{"cidr": "10.0.0.7/24"}]}, {"ip": "10.0.0.200"}, True),
    ("v4-single", {"ip": [{"cidr": "192.0.2.1/32"}]}, {"ip": "192.0.2.1"}, True),
    ("v4-not-an-ip", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.x"}, False),
    ("v4-not-a-string", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": 167772161}, False),
    ("v4-vs-v6", {"ip": [{"cidr": "0.0.0.0/0"}]}, {"ip": "::1"}, False),
    ("v6-in", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8::1"}, True),
    ("v6-in-long-form", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:0db8:0:0:0:0:0:1"}, True),
    ("v6-out", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db9::1"}, False),
    ("v6-vs-v4", {"ip": [{"cidr": "::/0"}]}, {"ip": "10.0.0.1"}, False),
]


@params(CIDR)
def test_cidr(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, event) is expected


# --- $or -------------------------------------------------------------------------------------

OR_SIMPLE = {
    "source": ["aws.cloudwatch"],
    "$or": [
        {"metricName": ["CPUUtilization", "ReadLatency"]},
        {"namespace": ["AWS/EC2", "AWS/ES"]},
    ],
}
OR_AND_INSIDE = {
    "source": ["aws.cloudwatch"],
    "$or": [
        {"metricName": ["CPUUtilization", "ReadLatency"]},
        {"metricType": ["MetricType"], "namespace": ["AWS/EC2", "AWS/ES"]},
        {"scope": ["Service"]},
    ],
}
OR_NESTED = {
    "source": ["aws.cloudwatch"],
    "$or": [
        {"metricName": ["CPUUtilization", "ReadLatency"]},
        {
            "metricType": ["MetricType"],
            "namespace": ["AWS/EC2", "AWS/ES"],
            "$or": [{"metricId": [1234]}, {"spaceId": [1000]}],
        },
        {"scope": ["Service"]},
    ],
}
OR_PARALLEL = {
    "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
    "detail": {
        "$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["CloudWatch Alarm State Change"]}]
    },
}
CW = "aws.cloudwatch"

OR_CASES: list[Case] = [
    ("simple-first", OR_SIMPLE, {"source": CW, "metricName": "ReadLatency"}, True),
    ("simple-second", OR_SIMPLE, {"source": CW, "namespace": "AWS/ES"}, True),
    ("simple-neither", OR_SIMPLE, {"source": CW, "namespace": "AWS/S3"}, False),
    ("simple-and-fails", OR_SIMPLE, {"source": "aws.ec2", "metricName": "ReadLatency"}, False),
    (
        "and-inside",
        OR_AND_INSIDE,
        {"source": CW, "metricType": "MetricType", "namespace": "AWS/EC2"},
        True,
    ),
    ("and-inside-partial", OR_AND_INSIDE, {"source": CW, "namespace": "AWS/EC2"}, False),
    ("and-inside-third", OR_AND_INSIDE, {"source": CW, "scope": "Service"}, True),
    (
        "nested",
        OR_NESTED,
        {"source": CW, "metricType": "MetricType", "namespace": "AWS/ES", "spaceId": 1000},
        True,
    ),
    (
        "nested-inner-fails",
        OR_NESTED,
        {"source": CW, "metricType": "MetricType", "namespace": "AWS/ES", "spaceId": 1},
        False,
    ),
    (
        "parallel",
        OR_PARALLEL,
        {"namespace": "AWS/EC2", "detail": {"detail-type": "CloudWatch Alarm State Change"}},
        True,
    ),
    (
        "parallel-one-side-fails",
        OR_PARALLEL,
        {"namespace": "AWS/EC2", "detail": {"detail-type": "Other"}},
        False,
    ),
    (
        "branch-exists-false",
        {"$or": [{"a": [{"exists": False}]}, {"a": ["x"]}]},
        {},
        True,
    ),
    (
        "branch-exists-false-other",
        {"$or": [{"a": [{"exists": False}]}, {"a": ["x"]}]},
        {"a": "y"},
        False,
    ),
    (
        "in-array-element",
        {"items": {"$or": [{"sku": ["A"]}, {"qty": [{"numeric": [">", 5]}]}]}},
        {"items": [{"sku": "B", "qty": 1}, {"sku": "C", "qty": 9}]},
        True,
    ),
]


@params(OR_CASES)
def test_or(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, event) is expected


# --- complete documented examples --------------------------------------------------------------


def test_event_ruler_complex_example() -> None:
    pattern = {
        "time": [{"prefix": "2017-10-02"}],
        "detail": {
            "state": [{"anything-but": "initializing"}],
            "c-count": [{"numeric": [">", 0, "<=", 5]}],
            "d-count": [{"numeric": ["<", 10]}],
            "x-limit": [{"anything-but": [100, 200, 300]}],
            "source-ip": [{"cidr": "10.0.0.0/8"}],
        },
    }
    assert matches(pattern, EC2_EVENT)
    initializing = {**EC2_EVENT, "detail": {**EC2_EVENT["detail"], "state": "initializing"}}
    assert not matches(pattern, initializing)
    wrong_day = {**EC2_EVENT, "time": "2017-10-03T00:00:00Z"}
    assert not matches(pattern, wrong_day)


def test_lambda_guide_examples() -> None:
    # Kinesis guide (data shown decoded): partitionKey metadata + Location data.
    kinesis_like = {"partitionKey": "1", "data": {"Location": "Los Angeles", "Temperature": 55}}
    assert matches({"partitionKey": ["1"], "data": {"Location": ["Los Angeles"]}}, kinesis_like)
    assert matches({"data": {"Temperature": [{"numeric": [">", 50, "<=", 60]}]}}, kinesis_like)
    assert not matches({"data": {"Temperature": [{"numeric": [">", 60]}]}}, kinesis_like)
    # Multi-level filtering on DynamoDB typed values.
    ddb_like = {
        "dynamodb": {
            "Keys": {"Id": {"N": "101"}},
            "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
        }
    }
    assert matches({"dynamodb": {"Keys": {"Id": {"N": ["101"]}}}}, ddb_like)
    assert not matches({"dynamodb": {"Keys": {"Id": {"N": ["102"]}}}}, ddb_like)
    # Console example: a is 1 or 2.
    assert matches({"a": [1, 2]}, {"a": 2})
    assert not matches({"a": [1, 2]}, {"a": 3})
