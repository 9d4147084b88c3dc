"""A mapping's ``FilterCriteria``: the pattern strings parsed, their root compiled
against the source's record shape, and the :class:`FilterSet` the pollers ask per record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from pumphouse.patterns.errors import FilterPatternError, InvalidPattern, render_path, type_name
from pumphouse.patterns.fields import check_depth, check_key, compile_value, or_branches
from pumphouse.patterns.records import DATA_GETTERS, check_data_shape, root_getter
from pumphouse.patterns.terms import (
    DEFAULT_MAX_FILTERS,
    MAX_PATTERN_LENGTH,
    MISSING,
    OR_KEY,
    UNDECODABLE,
    Cache,
    Getter,
    PatternPath,
    RootMatcher,
    SourceKind,
    ValueMatcher,
)

# How a root field is matched: metadata as it is; the data field with an object pattern
# (the data must be JSON) or with value rules (the data must be a plain value).
_METADATA: Final = 0
_DATA_OBJECT: Final = 1
_DATA_VALUE: Final = 2


def _compile_root(obj: Any, path: PatternPath, source: SourceKind, in_or: bool) -> RootMatcher:
    if not isinstance(obj, dict):
        raise InvalidPattern(path, f"the pattern must be a JSON object, got {type_name(obj)}")
    if not obj:
        raise InvalidPattern(
            path, "an empty pattern {} is not allowed (to match every record, configure no filters)"
        )
    check_depth(path)
    data_keys = DATA_GETTERS[source]
    metadata_fields: list[tuple[Getter, ValueMatcher, int]] = []
    data_fields: list[tuple[Getter, ValueMatcher, int]] = []
    or_groups: list[tuple[RootMatcher, ...]] = []
    for key, value in obj.items():
        if key == OR_KEY:
            or_groups.append(
                tuple(
                    _compile_root(branch, branch_path, source, True)
                    for branch, branch_path in or_branches(value, (*path, key))
                )
            )
            continue
        check_key(key, path, in_or)
        check_data_shape(source, key, value, path)
        matcher, _ = compile_value(value, (*path, key), in_or)
        if key in data_keys:
            shape = _DATA_OBJECT if isinstance(value, dict) else _DATA_VALUE
            data_fields.append((data_keys[key], matcher, shape))
        else:
            metadata_fields.append((root_getter(source, key), matcher, _METADATA))
    # Cheap metadata checks first: a record they reject is never decoded.
    fields_t = tuple(metadata_fields + data_fields)
    groups_t = tuple(or_groups)

    def match_record(record: Mapping[str, Any], cache: Cache) -> bool:
        for getter, matcher, shape in fields_t:
            value = getter(record, cache)
            if shape:
                # Lambda's format check on the data field: JSON data needs an object
                # pattern and a plain value needs value rules, else the record is dropped.
                if value is UNDECODABLE:
                    return False
                if shape == _DATA_OBJECT:
                    if (
                        value.__class__ is not dict
                        and value is not MISSING
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
        self, *, source: SourceKind, patterns: tuple[str, ...], matchers: tuple[RootMatcher, ...]
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
        cache: Cache = {}
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


def _compile_pattern(pattern: Any, *, source: SourceKind, index: int) -> RootMatcher:
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
    except InvalidPattern as err:
        raise FilterPatternError(err.reason, where=render_path(err.path), index=index) from None
