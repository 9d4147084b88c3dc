"""Fields and objects: a field's rule list or nested object pattern, applied to
whatever the record holds at that field -- a leaf, an array, an object, or nothing.

Arrays match when any of their leaves matches; an object pattern applied to an array of
objects must be satisfied by one single element (array consistency). ``"$or"`` OR-s
sub-patterns at the level where it appears.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from pumphouse.patterns.errors import InvalidPattern, show, type_name
from pumphouse.patterns.rules import LeafRules
from pumphouse.patterns.terms import (
    MAX_PATTERN_DEPTH,
    MISSING,
    OPERATORS,
    OR_KEY,
    Leaf,
    ObjectMatcher,
    PatternPath,
    ValueMatcher,
)


def _iter_items(values: Sequence[Any]) -> Iterator[Any]:
    """The non-array items of a (nested) array, without recursion.

    Records may nest arrays as deep as the JSON parser allows, so this walks them with an
    explicit stack. An empty array yields ``MISSING``: it holds no value.
    """
    if not values:
        yield MISSING
        return
    stack = [iter(values)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list | tuple):
                if value:
                    stack.append(iter(value))
                    break
                yield MISSING
            else:
                yield value
        else:
            stack.pop()


def _iter_leaves(values: Sequence[Any]) -> Iterator[Any]:
    """The leaf values of a (nested) array: objects and empty arrays are not leaves."""
    for item in _iter_items(values):
        if item is not MISSING and not isinstance(item, Mapping):
            yield item


_SCALARS: Final[frozenset[Any]] = frozenset({str, int, float, bool, type(None)})


def _field_matcher(
    test: Leaf, accepts_missing: bool, strings: frozenset[str] | None = None
) -> ValueMatcher:
    """Apply a leaf test to whatever the record holds at a field.

    ``strings`` (when the rules are only exact strings) lets the common case skip a call.
    """

    def non_scalar(v: Any) -> bool:
        if v is MISSING:
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
    if v is MISSING:
        return True
    if isinstance(v, list | tuple):
        return next(_iter_leaves(v), MISSING) is MISSING
    return isinstance(v, Mapping)


# ---------------------------------------------------------------------------------------
# Objects and $or


def _compile_rules(rules: Any, path: PatternPath) -> tuple[ValueMatcher, bool]:
    if not rules:
        raise InvalidPattern(path, "empty arrays are not allowed; list at least one value or rule")
    compiled = LeafRules()
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


def compile_value(value: Any, path: PatternPath, in_or: bool) -> tuple[ValueMatcher, bool]:
    """Compile the pattern value of one field; returns (matcher, matches-when-missing)."""
    if isinstance(value, list):
        return _compile_rules(value, path)
    if isinstance(value, dict):
        _, match_value, accepts_missing = _compile_object(value, path, in_or)
        return match_value, accepts_missing
    raise InvalidPattern(
        path,
        'a field must map to an array of values or rules (for example ["x"] or '
        f'[{{"prefix": "x"}}]) or to a nested object, got {type_name(value)} {show(value)}',
    )


def check_depth(path: PatternPath) -> None:
    if len(path) > MAX_PATTERN_DEPTH:
        raise InvalidPattern(
            path, f"the pattern is nested too deeply (more than {MAX_PATTERN_DEPTH} levels)"
        )


def check_key(key: str, path: PatternPath, in_or: bool) -> None:
    if in_or and key in OPERATORS:
        raise InvalidPattern(
            (*path, key),
            f"{show(key)} is an operator name and cannot be used as a field name inside "
            '"$or"; put operators in a rule list, e.g. {"field": [{"' + key + '": ...}]}',
        )


def or_branches(value: Any, path: PatternPath) -> list[tuple[dict[str, Any], PatternPath]]:
    if not isinstance(value, list) or len(value) < 2:
        raise InvalidPattern(
            path,
            f'"$or" expects an array of at least 2 pattern objects, got {show(value)}',
        )
    branches: list[tuple[dict[str, Any], PatternPath]] = []
    for i, branch in enumerate(value):
        if not isinstance(branch, dict):
            raise InvalidPattern(
                (*path, i), f'"$or" entries must be pattern objects, got {show(branch)}'
            )
        branches.append((branch, (*path, i)))
    return branches


def _compile_object(
    obj: dict[str, Any], path: PatternPath, in_or: bool
) -> tuple[ObjectMatcher, ValueMatcher, bool]:
    """Compile a pattern object.

    Returns the matcher for one record object, the matcher for whatever value the record
    holds where the object pattern applies, and whether a missing value matches.
    """
    if not obj:
        raise InvalidPattern(path, "empty objects are not allowed")
    check_depth(path)
    fields: list[tuple[str, ValueMatcher]] = []
    or_groups: list[tuple[ObjectMatcher, ...]] = []
    accepts_missing = True
    for key, value in obj.items():
        if key == OR_KEY:
            compiled = [
                _compile_object(branch, branch_path, True)
                for branch, branch_path in or_branches(value, (*path, key))
            ]
            or_groups.append(tuple(matcher for matcher, _, _ in compiled))
            accepts_missing = accepts_missing and any(missing for _, _, missing in compiled)
            continue
        check_key(key, path, in_or)
        matcher, missing = compile_value(value, (*path, key), in_or)
        fields.append((key, matcher))
        accepts_missing = accepts_missing and missing
    fields_t = tuple(fields)
    groups_t = tuple(or_groups)

    def match_object(record_object: Mapping[str, Any]) -> bool:
        get = record_object.get
        for key, matcher in fields_t:
            if not matcher(get(key, MISSING)):
                return False
        for group in groups_t:
            for branch in group:
                if branch(record_object):
                    break
            else:
                return False
        return True

    def match_value(v: Any) -> bool:  # noqa: PLR0911, PLR0912 - runs per record: the dict case inlined
        if v.__class__ is dict:  # the common case, inlined: one call less per level
            get = v.get
            for key, matcher in fields_t:
                if not matcher(get(key, MISSING)):
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
