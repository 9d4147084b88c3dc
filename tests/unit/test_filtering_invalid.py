"""Invalid patterns are rejected at configuration time, naming the place and the problem."""

from __future__ import annotations

import pytest

from pumphouse.patterns import (
    DEFAULT_MAX_FILTERS,
    MAX_PATTERN_DEPTH,
    MAX_PATTERN_LENGTH,
    FilterPatternError,
    SourceKind,
    compile_filter_criteria,
)

PREFIX = "Invalid filter pattern definition."

# (pattern, where, a piece of the reason)
INVALID: list[tuple[str, str, str]] = [
    # the pattern as a whole
    ("nope", "", "not valid JSON"),
    ("", "", "not valid JSON"),
    ('{"a": ["x"]', "", "not valid JSON"),
    ("[]", "", "must be a JSON object, got an array"),
    ('"x"', "", "must be a JSON object, got a string"),
    ("1", "", "must be a JSON object, got a number"),
    ("null", "", "must be a JSON object, got null"),
    ("{}", "", "empty pattern"),
    # field values
    ('{"a": "x"}', "a", 'array of values or rules (for example ["x"]'),
    ('{"a": 1}', "a", "got a number 1"),
    ('{"a": null}', "a", "got null"),
    ('{"a": true}', "a", "got a boolean"),
    ('{"a": {}}', "a", "empty objects are not allowed"),
    ('{"a": {"b": {}}}', "a.b", "empty objects are not allowed"),
    ('{"a": []}', "a", "empty arrays are not allowed"),
    ('{"a": {"b": []}}', "a.b", "empty arrays are not allowed"),
    ('{"a": [["x"]]}', "a", "nested arrays are not allowed"),
    ('{"a": ["x", ["y"]]}', "a[1]", "nested arrays are not allowed"),
    ('{"a.b": "x"}', '["a.b"]', "array of values"),
    ('{"a": {"b c": "x"}}', 'a["b c"]', "array of values"),
    # rule objects
    ('{"a": [{}]}', "a", "exactly one operator"),
    ('{"a": [{"prefix": "x", "suffix": "y"}]}', "a", "exactly one operator"),
    ('{"a": [{"contains": "x"}]}', "a", 'unknown operator "contains"'),
    ('{"a": ["ok", {"bogus": 1}]}', "a[1]", 'unknown operator "bogus"'),
    # prefix / suffix / equals-ignore-case / wildcard
    ('{"a": [{"prefix": 1}]}', "a", '"prefix" expects a string'),
    ('{"a": [{"prefix": ["x"]}]}', "a", '"prefix" expects a string'),
    ('{"a": [{"prefix": {"equals-ignore-case": 1}}]}', "a", "expects a string, got 1"),
    ('{"a": [{"prefix": {"wildcard": "x"}}]}', "a", '{"equals-ignore-case": "<string>"}'),
    ('{"a": [{"suffix": null}]}', "a", '"suffix" expects a string'),
    ('{"a": [{"equals-ignore-case": 1}]}', "a", '"equals-ignore-case" expects a string'),
    ('{"a": [{"equals-ignore-case": ["x"]}]}', "a", '"equals-ignore-case" expects a string'),
    ('{"a": [{"wildcard": 1}]}', "a", '"wildcard" expects a string'),
    ('{"a": [{"wildcard": "a**b"}]}', "a", "consecutive wildcard characters"),
    ('{"a": [{"wildcard": "a\\\\b"}]}', "a", "a backslash may only escape"),
    ('{"a": [{"wildcard": "ab\\\\"}]}', "a", "a backslash may only escape"),
    # anything-but
    ('{"a": [{"anything-but": null}]}', "a", '"anything-but" accepts strings or numbers'),
    ('{"a": [{"anything-but": true}]}', "a", '"anything-but" accepts strings or numbers'),
    ('{"a": [{"anything-but": []}]}', "a", "must not be empty"),
    ('{"a": [{"anything-but": [1, "x"]}]}', "a", "only strings or only numbers"),
    ('{"a": [{"anything-but": [null]}]}', "a", "accepts strings or numbers"),
    ('{"a": [{"anything-but": [["x"]]}]}', "a", "accepts strings or numbers"),
    ('{"a": [{"anything-but": {"prefix": ""}}]}', "a", "expects a non-empty string"),
    ('{"a": [{"anything-but": {"suffix": 1}}]}', "a", "expects a non-empty string"),
    ('{"a": [{"anything-but": {"numeric": [">", 1]}}]}', "a", 'does not support "numeric"'),
    ('{"a": [{"anything-but": {"prefix": "a", "suffix": "b"}}]}', "a", "exactly one of"),
    ('{"a": [{"anything-but": {}}]}', "a", "exactly one of"),
    ('{"a": [{"anything-but": {"equals-ignore-case": 1}}]}', "a", "non-empty array of strings"),
    ('{"a": [{"anything-but": {"equals-ignore-case": []}}]}', "a", "non-empty array of strings"),
    ('{"a": [{"anything-but": {"wildcard": [1]}}]}', "a", "non-empty array of strings"),
    ('{"a": [{"anything-but": {"wildcard": "x**"}}]}', "a", "consecutive wildcard"),
    # numeric
    ('{"a": [{"numeric": 5}]}', "a", '"numeric" expects an operator followed by a number'),
    ('{"a": [{"numeric": []}]}', "a", '"numeric" expects an operator followed by a number'),
    ('{"a": [{"numeric": [">"]}]}', "a", '"numeric" expects an operator followed by a number'),
    ('{"a": [{"numeric": [">", 1, "<"]}]}', "a", "or a range"),
    ('{"a": [{"numeric": [">", 1, "<", 5, 6]}]}', "a", "or a range"),
    ('{"a": [{"numeric": [">", "10"]}]}', "a", 'got [">","10"]'),
    ('{"a": [{"numeric": [">", true]}]}', "a", "followed by a number"),
    ('{"a": [{"numeric": [">", null]}]}', "a", "followed by a number"),
    ('{"a": [{"numeric": ["!=", 1]}]}', "a", 'operator must be one of "=", "<", "<=", ">", ">="'),
    ('{"a": [{"numeric": [1, ">"]}]}', "a", "operator must be one of"),
    ('{"a": [{"numeric": [">", 1, ">", 5]}]}', "a", "lower bound"),
    ('{"a": [{"numeric": ["<", 5, ">", 1]}]}', "a", "lower bound"),
    ('{"a": [{"numeric": ["=", 1, "<", 2]}]}', "a", "lower bound"),
    ('{"a": [{"numeric": [">", 5, "<", 1]}]}', "a", "can never match"),
    ('{"a": [{"numeric": [">", 5, "<=", 5]}]}', "a", "can never match"),
    # exists
    ('{"a": [{"exists": "true"}]}', "a", '"exists" expects true or false'),
    ('{"a": [{"exists": 1}]}', "a", '"exists" expects true or false'),
    ('{"a": [{"exists": null}]}', "a", '"exists" expects true or false'),
    # cidr
    ('{"a": [{"cidr": "10.0.0.1"}]}', "a", "expects a CIDR block"),
    ('{"a": [{"cidr": 10}]}', "a", "expects a CIDR block"),
    ('{"a": [{"cidr": "10.0.0.0/33"}]}', "a", "is not a valid CIDR block"),
    ('{"a": [{"cidr": "nope/8"}]}', "a", "is not a valid CIDR block"),
    ('{"a": [{"cidr": "2001:db8::/129"}]}', "a", "is not a valid CIDR block"),
    # $or
    ('{"$or": {"a": ["x"]}}', "$or", "at least 2 pattern objects"),
    ('{"$or": [{"a": ["x"]}]}', "$or", "at least 2 pattern objects"),
    ('{"$or": []}', "$or", "at least 2 pattern objects"),
    ('{"$or": [{"a": ["x"]}, "b"]}', "$or[1]", "must be pattern objects"),
    ('{"$or": [{"a": ["x"]}, {}]}', "$or[1]", "empty pattern"),
    ('{"$or": [{"a": ["x"]}, {"b": "y"}]}', "$or[1].b", "array of values"),
    ('{"$or": [{"numeric": [">", 1]}, {"b": ["y"]}]}', "$or[0].numeric", "operator name"),
    ('{"$or": [{"a": {"prefix": ["y"]}}, {"b": ["y"]}]}', "$or[0].a.prefix", "operator name"),
    ('{"d": {"$or": [{"a": ["x"]}, {"b": {"c": "bad"}}]}}', "d.$or[1].b.c", "array of values"),
    ('{"d": {"$or": [{"a": ["x"]}, {"b": {}}]}}', "d.$or[1].b", "empty objects"),
    (
        '{"$or": [{"a": ["x"]}, {"$or": [{"b": ["y"]}, {"c": [{"numeric": 1}]}]}]}',
        "$or[1].$or[1].c",
        '"numeric" expects',
    ),
    # the example from the brief
    (
        '{"body": {"price": [{"numeric": [">", "10"]}]}}',
        "body.price",
        '"numeric" expects an operator followed by a number, got [">","10"]',
    ),
]


@pytest.mark.parametrize(("pattern", "where", "reason"), INVALID, ids=[p for p, _, _ in INVALID])
def test_invalid_pattern_is_rejected_naming_the_place(
    pattern: str, where: str, reason: str
) -> None:
    with pytest.raises(FilterPatternError) as caught:
        compile_filter_criteria([pattern], source=SourceKind.SQS)
    error = caught.value
    assert error.where == where
    assert reason in error.reason
    assert error.index == 0
    message = str(error)
    assert message.startswith(PREFIX)
    if where:
        assert message == f"{PREFIX} {where}: {error.reason}"
    else:
        assert error.reason.lower() in message.lower()


def test_error_is_a_value_error_with_the_brief_message_shape() -> None:
    with pytest.raises(ValueError, match=r"^Invalid filter pattern definition\. body\.price: "):
        compile_filter_criteria(
            ['{"body": {"price": [{"numeric": [">", "10"]}]}}'], source=SourceKind.SQS
        )


def test_error_names_the_offending_filter_index() -> None:
    patterns = ['{"a": ["x"]}', '{"b": ["y"]}', '{"c": "z"}']
    with pytest.raises(FilterPatternError) as caught:
        compile_filter_criteria(patterns, source=SourceKind.SQS)
    assert caught.value.index == 2
    assert caught.value.where == "c"


# --- per-source shape rules -----------------------------------------------------------------

SOURCE_INVALID: list[tuple[SourceKind, str, str]] = [
    (SourceKind.KINESIS, '{"data": ["x"]}', "data"),
    (SourceKind.KINESIS, '{"data": [{"exists": true}]}', "data"),
    (SourceKind.KINESIS, '{"data": [{"prefix": "{"}]}', "data"),
    (SourceKind.KINESIS, '{"$or": [{"data": ["x"]}, {"partitionKey": ["1"]}]}', "$or[0].data"),
    (SourceKind.DYNAMODB, '{"dynamodb": ["x"]}', "dynamodb"),
    (SourceKind.DYNAMODB, '{"dynamodb": [{"exists": true}], "eventName": ["INSERT"]}', "dynamodb"),
]


@pytest.mark.parametrize(("source", "pattern", "where"), SOURCE_INVALID)
def test_stream_data_patterns_must_be_objects(source: SourceKind, pattern: str, where: str) -> None:
    # Lambda: "Non-JSON" filter pattern for data properties -> exception at ESM creation.
    with pytest.raises(FilterPatternError) as caught:
        compile_filter_criteria([pattern], source=source)
    assert caught.value.where == where
    assert "must be an object of fields" in caught.value.reason


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        (SourceKind.SQS, '{"body": [{"prefix": "Result: "}]}'),
        (SourceKind.KAFKA, '{"value": [{"anything-but": ["error"]}]}'),
        (SourceKind.KAFKA, '{"key": ["k1"]}'),
        (SourceKind.SQS, '{"data": ["x"]}'),
        (SourceKind.KINESIS, '{"body": ["x"]}'),
        (SourceKind.DYNAMODB, '{"data": ["x"], "eventName": ["INSERT"]}'),
    ],
)
def test_plain_value_rules_on_data_are_valid_where_lambda_allows_them(
    source: SourceKind, pattern: str
) -> None:
    filters = compile_filter_criteria([pattern], source=source)
    assert not filters.is_empty


# --- limits ----------------------------------------------------------------------------------


def _pattern_of_length(length: int) -> str:
    head = '{"a": ["'
    tail = '"]}'
    pattern = head + "x" * (length - len(head) - len(tail)) + tail
    assert len(pattern) == length
    return pattern


def test_pattern_of_4096_characters_is_accepted() -> None:
    filters = compile_filter_criteria(
        [_pattern_of_length(MAX_PATTERN_LENGTH)], source=SourceKind.SQS
    )
    assert filters.matches({"a": "x" * (MAX_PATTERN_LENGTH - 11)})


def test_pattern_longer_than_4096_characters_is_rejected() -> None:
    with pytest.raises(FilterPatternError) as caught:
        compile_filter_criteria([_pattern_of_length(MAX_PATTERN_LENGTH + 1)], source=SourceKind.SQS)
    assert caught.value.where == ""
    assert "4097 characters long, at most 4096" in caught.value.reason
    assert caught.value.index == 0


def test_length_is_counted_in_characters_not_bytes() -> None:
    pattern = '{"a": ["' + "ż" * 4000 + '"]}'
    assert len(pattern) <= MAX_PATTERN_LENGTH < len(pattern.encode())
    assert not compile_filter_criteria([pattern], source=SourceKind.SQS).is_empty


def test_default_filter_quota_is_five() -> None:
    patterns = [f'{{"a": ["{i}"]}}' for i in range(DEFAULT_MAX_FILTERS)]
    assert compile_filter_criteria(patterns, source=SourceKind.SQS).matches({"a": "4"})
    with pytest.raises(FilterPatternError) as caught:
        compile_filter_criteria([*patterns, '{"a": ["5"]}'], source=SourceKind.SQS)
    assert caught.value.index is None
    assert "6 filters given, at most 5" in str(caught.value)


def test_filter_quota_can_be_raised_to_ten() -> None:
    patterns = [f'{{"a": ["{i}"]}}' for i in range(10)]
    filters = compile_filter_criteria(patterns, source=SourceKind.SQS, max_filters=10)
    assert filters.matches({"a": "9"})
    with pytest.raises(FilterPatternError, match="11 filters given, at most 10"):
        compile_filter_criteria([*patterns, '{"a": ["x"]}'], source=SourceKind.SQS, max_filters=10)


def test_a_pattern_must_be_a_string() -> None:
    with pytest.raises(FilterPatternError) as caught:
        compile_filter_criteria(['{"a": ["x"]}', {"a": ["x"]}], source=SourceKind.SQS)  # type: ignore[list-item]  # deliberately wrong type
    assert caught.value.index == 1
    assert "must be a JSON string, got dict" in caught.value.reason


def test_a_single_string_is_not_a_list_of_patterns() -> None:
    with pytest.raises(TypeError):
        compile_filter_criteria('{"a": ["x"]}', source=SourceKind.SQS)


def test_unknown_source_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="'mq' is not a valid SourceKind"):
        compile_filter_criteria([], source="mq")  # type: ignore[arg-type]  # deliberately wrong


def _nested_pattern(levels: int) -> str:
    """The root object plus ``levels`` nested objects, then a value rule."""
    return '{"a":' * (levels + 1) + '["x"]' + "}" * (levels + 1)


def test_deeply_nested_pattern_is_rejected_not_crashing() -> None:
    filters = compile_filter_criteria([_nested_pattern(MAX_PATTERN_DEPTH)], source=SourceKind.SQS)
    record: dict[str, object] = {"a": "x"}
    for _ in range(MAX_PATTERN_DEPTH):
        record = {"a": record}
    assert filters.matches(record)
    with pytest.raises(FilterPatternError) as caught:
        compile_filter_criteria([_nested_pattern(MAX_PATTERN_DEPTH + 1)], source=SourceKind.SQS)
    assert "nested too deeply" in caught.value.reason
    assert caught.value.where == ".".join(["a"] * (MAX_PATTERN_DEPTH + 1))
