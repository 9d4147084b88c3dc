"""Property-based tests of the filter semantics (hypothesis)."""

from __future__ import annotations

import copy
import math
from typing import Any

import orjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pumphouse.patterns import (
    MAX_PATTERN_LENGTH,
    FilterSet,
    SourceKind,
    compile_filter_criteria,
)

SETTINGS = settings(max_examples=150, deadline=None)

# --- JSON events -----------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8)
keys = texts.filter(lambda k: k != "$or")
numbers = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)
    ),
    max_leaves=10,
)
events = st.dictionaries(keys, json_values, min_size=1, max_size=4)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    if isinstance(value, dict):
        return []
    return [value]


def _rule_for(leaf: Any, data: st.DataObject) -> Any:
    """A rule built from the leaf's own value that must match it."""
    choices: list[Any] = [leaf, {"exists": True}]
    if isinstance(leaf, str):
        cut = data.draw(st.integers(min_value=0, max_value=len(leaf)))
        choices += [
            {"prefix": leaf[:cut]},
            {"suffix": leaf[cut:]},
            {"wildcard": leaf[:cut].replace("\\", "\\\\").replace("*", "\\*") + "*"},
            {"anything-but": leaf + "!"},
        ]
        if leaf.isascii():
            choices += [
                {"equals-ignore-case": leaf.swapcase()},
                {"prefix": {"equals-ignore-case": leaf[:cut].upper()}},
            ]
    elif isinstance(leaf, int | float) and not isinstance(leaf, bool):
        choices += [
            {"numeric": ["=", leaf]},
            {"numeric": [">=", leaf, "<=", leaf]},
            {"anything-but": [leaf + 1]} if abs(leaf) < 2**52 else leaf,
        ]
    return data.draw(st.sampled_from(choices))


def _pattern_for(obj: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """A pattern made only of the object's own leaf values (fields with no leaf skipped)."""
    pattern: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            nested = _pattern_for(value, data)
            if nested:
                pattern[key] = nested
            continue
        leaves = _leaves(value)
        if leaves:
            leaf = data.draw(st.sampled_from(leaves))
            pattern[key] = [_rule_for(leaf, data)]
        elif isinstance(value, list):
            objects = [item for item in value if isinstance(item, dict)]
            nested = _pattern_for(objects[0], data) if objects else {}
            if nested:
                pattern[key] = nested
    return pattern


def _compile(source: SourceKind, *patterns: dict[str, Any]) -> FilterSet:
    texts_ = [orjson.dumps(p).decode() for p in patterns]
    assume(all(len(t) <= MAX_PATTERN_LENGTH for t in texts_))
    return compile_filter_criteria(texts_, source=source, max_filters=10)


@SETTINGS
@given(event=events, data=st.data())
def test_a_pattern_of_the_events_own_leaf_values_matches_it(
    event: dict[str, Any], data: st.DataObject
) -> None:
    pattern = _pattern_for(event, data)
    assume(pattern)
    before = copy.deepcopy(event)
    as_metadata = _compile(SourceKind.DYNAMODB, pattern)
    assert as_metadata.matches(event)
    as_body = _compile(SourceKind.SQS, {"body": pattern})
    assert as_body.matches({"body": orjson.dumps(event).decode()})
    assert event == before  # matching never modifies the record


# --- anything-but ------------------------------------------------------------------------------


def _same_value(a: Any, b: Any) -> bool:
    """Equal as filters compare: strings by text, numbers by value."""
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)


finite_numbers = numbers.filter(lambda n: not (isinstance(n, float) and math.isinf(n)))
excluded_values = st.one_of(texts, finite_numbers)


@SETTINGS
@given(value=excluded_values, other=excluded_values)
def test_anything_but_never_matches_the_excluded_value(value: Any, other: Any) -> None:
    as_list = _compile(SourceKind.SQS, {"a": [{"anything-but": [value]}]})
    as_single = _compile(SourceKind.SQS, {"a": [{"anything-but": value}]})
    for filters in (as_list, as_single):
        assert not filters.matches({"a": value})
        assert not filters.matches({"a": [value, value]})
        assert filters.matches({"a": other}) is not _same_value(other, value)


@SETTINGS
@given(value=texts)
def test_anything_but_prefix_never_matches_a_value_with_that_prefix(value: str) -> None:
    assume(value)
    filters = _compile(SourceKind.SQS, {"a": [{"anything-but": {"prefix": value[:1]}}]})
    assert not filters.matches({"a": value})


# --- OR of filters is the union -------------------------------------------------------------

small_strings = st.sampled_from(["", "x", "xy", "y", "X"])
small_numbers = st.sampled_from([0, 1, 2.5, 3, -1])
small_values = st.one_of(small_strings, small_numbers, st.none(), st.booleans())
small_rules = st.one_of(
    small_values,
    small_strings.map(lambda s: {"prefix": s}),
    small_strings.map(lambda s: {"suffix": s}),
    small_strings.map(lambda s: {"equals-ignore-case": s}),
    small_strings.map(lambda s: {"anything-but": s}),
    small_numbers.map(lambda n: {"anything-but": [n]}),
    st.tuples(st.sampled_from(["<", "<=", ">", ">=", "="]), small_numbers).map(
        lambda t: {"numeric": list(t)}
    ),
    st.booleans().map(lambda b: {"exists": b}),
    st.sampled_from(["x*", "*y", "*"]).map(lambda w: {"wildcard": w}),
)
field_names = st.sampled_from(["a", "b", "c"])
leaf_patterns = st.lists(small_rules, min_size=1, max_size=3)
small_patterns = st.recursive(
    st.dictionaries(field_names, leaf_patterns, min_size=1, max_size=2),
    lambda children: st.one_of(
        st.dictionaries(
            st.sampled_from(["a", "n"]), st.one_of(leaf_patterns, children), min_size=1, max_size=2
        ),
        st.lists(children, min_size=2, max_size=2).map(lambda branches: {"$or": branches}),
    ),
    max_leaves=4,
)
small_events = st.recursive(
    st.dictionaries(
        field_names,
        st.one_of(small_values, st.lists(small_values, max_size=2)),
        max_size=3,
    ),
    lambda children: st.dictionaries(
        st.sampled_from(["a", "b", "n"]),
        st.one_of(small_values, children, st.lists(children, max_size=2)),
        max_size=3,
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(first=small_patterns, second=small_patterns, event=small_events)
def test_two_filters_match_exactly_the_union(
    first: dict[str, Any], second: dict[str, Any], event: dict[str, Any]
) -> None:
    one = _compile(SourceKind.SQS, first).matches(event)
    two = _compile(SourceKind.SQS, second).matches(event)
    both = _compile(SourceKind.SQS, first, second).matches(event)
    assert both is (one or two)
    as_or = _compile(SourceKind.SQS, {"$or": [first, second]}).matches(event)
    assert as_or is (one or two)


@settings(max_examples=300, deadline=None)
@given(first=small_patterns, second=small_patterns, event=small_events)
def test_fields_of_one_pattern_are_anded(
    first: dict[str, Any], second: dict[str, Any], event: dict[str, Any]
) -> None:
    # Put the two patterns side by side under distinct keys: both must hold.
    combined = {"p": first, "q": second}
    record = {"p": event, "q": event}
    one = _compile(SourceKind.SQS, {"p": first}).matches(record)
    two = _compile(SourceKind.SQS, {"q": second}).matches(record)
    assert _compile(SourceKind.SQS, combined).matches(record) is (one and two)
