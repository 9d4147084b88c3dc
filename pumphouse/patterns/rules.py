"""Leaf rules: the values and operators listed for one field, compiled into one test
of a leaf value (a string, number, boolean or null).

Exact values, ``prefix``, ``suffix``, ``equals-ignore-case``, ``wildcard``,
``anything-but``, ``numeric``, ``exists`` and ``cidr``. Each operator's syntax is checked
here, so an invalid rule is refused at configuration time with the reason; the tests it
compiles to run once per record, so the common cases get their own small closures.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any, Final

from pumphouse.patterns.errors import InvalidPattern, show
from pumphouse.patterns.terms import OPERATORS, Leaf, PatternPath

_NUMERIC_OPERATORS: Final = frozenset({"=", "<", "<=", ">", ">="})


def _is_number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and not math.isinf(value)


def _compile_wildcard(text: str, path: PatternPath) -> re.Pattern[str]:
    parts: list[str] = []
    literal: list[str] = []
    previous_star = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            escaped = text[i + 1] if i + 1 < len(text) else ""
            if escaped not in ("*", "\\"):
                raise InvalidPattern(
                    path,
                    f'"wildcard" {show(text)}: a backslash may only escape "*" or '
                    f'"\\\\" (position {i})',
                )
            literal.append(escaped)
            previous_star = False
            i += 2
            continue
        if char == "*":
            if previous_star:
                raise InvalidPattern(
                    path,
                    f'"wildcard" {show(text)}: consecutive wildcard characters are not '
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


def _string_or_strings(value: Any, operator: str, path: PatternPath) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidPattern(
        path, f'"{operator}" expects a string or a non-empty array of strings, got {show(value)}'
    )


def _compile_affix(operator: str, spec: Any, path: PatternPath) -> Leaf:
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
            raise InvalidPattern(
                path,
                f'"{operator}": {{"equals-ignore-case": ...}} expects a string, got {show(inner)}',
            )
        folded = inner.casefold()

        def affix_ignore_case_leaf(v: Any) -> bool:
            return isinstance(v, str) and test(v.casefold(), folded)

        return affix_ignore_case_leaf
    raise InvalidPattern(
        path,
        f'"{operator}" expects a string or {{"equals-ignore-case": "<string>"}}, got {show(spec)}',
    )


def _compile_numeric(spec: Any, path: PatternPath) -> Leaf:
    shape = (
        '"numeric" expects an operator followed by a number (["<", 5]) '
        'or a range ([">", 0, "<=", 5])'
    )
    if not isinstance(spec, list) or len(spec) not in (2, 4):
        raise InvalidPattern(path, f"{shape}, got {show(spec)}")
    pairs = [(spec[i], spec[i + 1]) for i in range(0, len(spec), 2)]
    for operator, number in pairs:
        if not isinstance(operator, str) or operator not in _NUMERIC_OPERATORS:
            raise InvalidPattern(
                path,
                f'"numeric" operator must be one of "=", "<", "<=", ">", ">=", '
                f"got {show(operator)} in {show(spec)}",
            )
        if not _is_number(number):
            raise InvalidPattern(
                path,
                f'"numeric" expects an operator followed by a number, got {show(spec)}',
            )
    if len(pairs) == 1:
        operator, number = pairs[0]
        return _numeric_leaf(operator, number)
    (low_op, low), (high_op, high) = pairs
    if low_op not in (">", ">=") or high_op not in ("<", "<="):
        raise InvalidPattern(
            path,
            f'"numeric" range must be a lower bound (">" or ">=") then an upper bound '
            f'("<" or "<="), got {show(spec)}',
        )
    if low > high or (low == high and (low_op == ">" or high_op == "<")):
        raise InvalidPattern(path, f'"numeric" range {show(spec)} can never match')
    return _numeric_range_leaf(low_op, low, high_op, high)


_NUMBERS: Final[frozenset[Any]] = frozenset({int, float})
"""Classes compared by ``numeric`` (exact classes: ``bool`` is not a number here)."""


def _numeric_leaf(operator: str, n: float) -> Leaf:
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


def _numeric_range_leaf(low_op: str, low: float, high_op: str, high: float) -> Leaf:
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


def _compile_cidr(spec: Any, path: PatternPath) -> Leaf:
    if not isinstance(spec, str) or "/" not in spec:
        raise InvalidPattern(
            path,
            f'"cidr" expects a CIDR block like "10.0.0.0/24" or "2001:db8::/32", got {show(spec)}',
        )
    try:
        network = ipaddress.ip_network(spec, strict=False)
    except ValueError as err:
        raise InvalidPattern(
            path, f'"cidr" {show(spec)} is not a valid CIDR block: {err}'
        ) from None
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


def _compile_anything_but(spec: Any, path: PatternPath) -> Leaf:
    """``anything-but`` matches every leaf value that the inner rule does not exclude."""
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise InvalidPattern(
                path,
                '"anything-but" object must have exactly one of "prefix", "suffix", '
                f'"equals-ignore-case", "wildcard", got {show(spec)}',
            )
        ((operator, inner),) = spec.items()
        excluded: Leaf
        if operator in ("prefix", "suffix"):
            if not isinstance(inner, str) or not inner:
                raise InvalidPattern(
                    path,
                    f'"anything-but": {{"{operator}": ...}} expects a non-empty string, '
                    f"got {show(inner)}",
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
            raise InvalidPattern(
                path,
                f'"anything-but" does not support {show(operator)} (use a value, a list, '
                'or one of "prefix", "suffix", "equals-ignore-case", "wildcard")',
            )

        def anything_but_rule(v: Any) -> bool:
            return not excluded(v)

        return anything_but_rule

    values = spec if isinstance(spec, list) else [spec]
    if not values:
        raise InvalidPattern(path, '"anything-but" list must not be empty')
    strings = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if _is_number(v)]
    if len(strings) + len(numbers) != len(values):
        bad = next(v for v in values if not isinstance(v, str) and not _is_number(v))
        raise InvalidPattern(
            path,
            f'"anything-but" accepts strings or numbers (or an object), got {show(bad)}',
        )
    if strings and numbers:
        raise InvalidPattern(
            path,
            f'"anything-but" list must hold only strings or only numbers, got {show(spec)}',
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


class LeafRules:
    """The rules listed for one field, compiled into a single leaf test."""

    def __init__(self) -> None:
        self.strings: set[str] = set()
        self.numbers: set[int | float] = set()
        self.null = False
        self.true = False
        self.false = False
        self.exists = False
        self.absent = False
        self.predicates: list[Leaf] = []
        self.ignore_case: set[str] = set()

    def add(self, rule: Any, path: PatternPath) -> None:
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
            raise InvalidPattern(
                path, f"nested arrays are not allowed in a rule list, got {show(rule)}"
            )
        else:  # pragma: no cover - orjson yields only JSON types
            raise InvalidPattern(path, f"unsupported match value {show(rule)}")

    def _add_operator(self, rule: dict[str, Any], path: PatternPath) -> None:  # noqa: PLR0912 - one branch per operator of the language
        if len(rule) != 1:
            raise InvalidPattern(
                path,
                "a rule object must hold exactly one operator "
                f"({', '.join(sorted(OPERATORS))}), got {show(rule)}",
            )
        ((operator, spec),) = rule.items()
        if operator in {"prefix", "suffix"}:
            self.predicates.append(_compile_affix(operator, spec, path))
        elif operator == "equals-ignore-case":
            if not isinstance(spec, str):
                raise InvalidPattern(
                    path, f'"equals-ignore-case" expects a string, got {show(spec)}'
                )
            self.ignore_case.add(spec.casefold())
        elif operator == "wildcard":
            if not isinstance(spec, str):
                raise InvalidPattern(path, f'"wildcard" expects a string, got {show(spec)}')
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
                raise InvalidPattern(path, f'"exists" expects true or false, got {show(spec)}')
        elif operator == "cidr":
            self.predicates.append(_compile_cidr(spec, path))
        else:
            raise InvalidPattern(
                path,
                f"unknown operator {show(operator)} (supported: {', '.join(sorted(OPERATORS))})",
            )

    def strings_only(self) -> frozenset[str] | None:
        """The exact strings, when they are the only rules (the common, fast case)."""
        if self.exists or self.numbers or self.predicates or self.ignore_case:
            return None
        if self.null or self.true or self.false or not self.strings:
            return None
        return frozenset(self.strings)

    def leaf_test(self) -> Leaf:
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

        def leaf(v: Any) -> bool:  # noqa: PLR0911 - runs per record: every test inlined
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
