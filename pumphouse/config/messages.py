"""pydantic's validation errors, said the way a configuration problem should be said.

``('EventSourceMappings', 1, 'BatchSize')`` with ``less_than_equal`` becomes
``EventSourceMappings[1].BatchSize: 20000 is above the maximum 10000``; an unknown key
gets a "did you mean" hint from the fields of the model it was found in.

A value that came from the environment (``${VAR}``) is never echoed:
:func:`hide_substituted` names the variable instead
(``Functions.f.Timeout: expected a whole number, got the value of ${TIMEOUT}``).
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Annotated, Any, Final, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from pumphouse.config.envvars import Substitution
from pumphouse.config.validation import Loc, Problem, did_you_mean

__all__ = [
    "describe_value",
    "hide_substituted",
    "problems_from_validation_error",
    "unknown_key_message",
]

_HINT_LIST_LIMIT = 12


def describe_value(value: Any) -> str:  # noqa: PLR0911 - one return per kind of YAML value
    """A value as the YAML user wrote it: ``'abc'``, ``20000``, ``true``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def unknown_key_message(key: object, known: list[str]) -> str:
    hint = did_you_mean(str(key), known)
    if hint is not None:
        return f"unknown key (did you mean {hint!r}?)"
    if known and len(known) <= _HINT_LIST_LIMIT:
        return f"unknown key (expected one of: {', '.join(known)})"
    return "unknown key"


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is Union or origin is types.UnionType:
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _type_at(root: type[BaseModel], loc: Loc) -> Any:
    """The annotation found by following ``loc`` from ``root`` (None when lost)."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = current.model_fields
            if not isinstance(part, str) or part not in fields:
                return None
            current = fields[part].annotation
            continue
        origin = get_origin(current)
        args = get_args(current)
        if origin in (list, tuple) and isinstance(part, int) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
    return _unwrap(current)


def _known_fields(root: type[BaseModel], loc: Loc) -> list[str]:
    model = _type_at(root, loc)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


class _Context(dict[str, Any]):
    """An error's ``ctx`` for a message template: a value it lacks reads as None."""

    def __missing__(self, key: str) -> None:
        return None


_TEMPLATES: Final[dict[str, str]] = {
    "missing": "required but missing",
    "less_than_equal": "{shown} is above the maximum {le}",
    "greater_than_equal": "{shown} is below the minimum {ge}",
    "greater_than": "{shown} must be greater than {gt}",
    "less_than": "{shown} must be less than {lt}",
    "int_parsing": "expected a whole number, got {shown}",
    "int_type": "expected a whole number, got {shown}",
    "int_from_float": "expected a whole number, got {shown}",
    "float_parsing": "expected a number, got {shown}",
    "float_type": "expected a number, got {shown}",
    "finite_number": "expected a finite number, got {shown}",
    "bool_parsing": "expected true or false, got {shown}",
    "bool_type": "expected true or false, got {shown}",
    "too_short": "needs at least {min_length} item(s), got {actual_length}",
    "too_long": "has {actual_length} items, above the maximum {max_length}",
    "list_type": "expected a list, got {shown}",
    "dict_type": "expected a mapping, got {shown}",
    "model_type": "expected a mapping, got {shown}",
    "model_attributes_type": "expected a mapping, got {shown}",
}
"""pydantic error types whose message is the value and the error's ``ctx`` in a sentence."""


def _message(error: ErrorDetails, root: type[BaseModel], loc: Loc) -> str:
    kind = error["type"]
    template = _TEMPLATES.get(kind)
    if template is not None:
        context = _Context(error.get("ctx") or {})
        context["shown"] = describe_value(error.get("input"))
        return template.format_map(context)
    explain = _EXPLAINED.get(kind)
    if explain is not None:
        return explain(error, root, loc)
    return error["msg"]


def _unknown_key(error: ErrorDetails, root: type[BaseModel], loc: Loc) -> str:
    return unknown_key_message(loc[-1] if loc else "", _known_fields(root, loc[:-1]))


def _not_a_string(error: ErrorDetails, root: type[BaseModel], loc: Loc) -> str:
    value = error.get("input")
    shown = describe_value(value)
    if isinstance(value, bool):
        return f"expected a string, got {shown} (quote it: '{shown}')"
    return f"expected a string, got {shown}"


def _string_too_short(error: ErrorDetails, root: type[BaseModel], loc: Loc) -> str:
    least = (error.get("ctx") or {}).get("min_length")
    return "must not be empty" if least == 1 else f"must be at least {least} characters"


def _string_too_long(error: ErrorDetails, root: type[BaseModel], loc: Loc) -> str:
    value = error.get("input")
    length = len(value) if isinstance(value, str) else "?"
    most = (error.get("ctx") or {}).get("max_length")
    return f"is {length} characters long, above the maximum {most}"


def _not_a_member(error: ErrorDetails, root: type[BaseModel], loc: Loc) -> str:
    value = error.get("input")
    expected = (error.get("ctx") or {}).get("expected")
    message = f"{describe_value(value)} is not one of {expected}"
    enum_type = _type_at(root, loc)
    if isinstance(enum_type, type) and issubclass(enum_type, Enum) and isinstance(value, str):
        hint = did_you_mean(value, [str(member.value) for member in enum_type])
        if hint is not None:
            message += f" (did you mean {hint!r}?)"
    return message


def _check_failed(error: ErrorDetails, root: type[BaseModel], loc: Loc) -> str:
    """A check of ours raised: its own message says it best."""
    ctx = error.get("ctx") or {}
    return str(ctx["error"]) if "error" in ctx else error["msg"]


_EXPLAINED: Final[dict[str, Callable[[ErrorDetails, type[BaseModel], Loc], str]]] = {
    "extra_forbidden": _unknown_key,
    "string_type": _not_a_string,
    "string_too_short": _string_too_short,
    "string_too_long": _string_too_long,
    "enum": _not_a_member,
    "value_error": _check_failed,
    "assertion_error": _check_failed,
}
"""pydantic error types whose message needs more than a template."""


def problems_from_validation_error(err: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """``(loc, message)`` for every error; locs are relative to ``root``."""
    errors = err.errors(include_url=False)
    # A misspelt required key is reported once, as unknown with its hint, not also as
    # the required key missing.
    hinted: set[Loc] = set()
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden" and loc:
            hint = did_you_mean(str(loc[-1]), _known_fields(root, loc[:-1]))
            if hint is not None:
                hinted.add((*loc[:-1], hint))
    problems: list[Problem] = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "missing" and loc in hinted:
            continue
        if loc and loc[-1] == "[key]":  # a dict key failed (e.g. a function name)
            loc = loc[:-1]
        problems.append((loc, _message(error, root, loc)))
    return problems


_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_SHORTEST_HIDDEN_ELSEWHERE = 4
"""A short variable value ("1", "us") is hidden only in the problems at its own path:
replacing it in every message would garble unrelated numbers and words."""


def _related(loc: Loc, site: Loc) -> bool:
    shorter = min(len(loc), len(site))
    return loc[:shorter] == site[:shorter]


def _hidden_forms(site: Substitution) -> list[tuple[str, str]]:
    """(text, replacement) pairs for one substituted value, longest text first."""
    label = site.label
    forms: list[tuple[str, str]] = []
    for text, name in [(site.value, label)] + [
        (value, f"the value of ${{{name}}}") for name, value in site.variables
    ]:
        if not text:
            continue
        forms.append((describe_value(text), name))  # as pydantic's messages quote it
        forms.append((repr(text), name))
        forms.append((text, name))
    return sorted(set(forms), key=lambda form: -len(form[0]))


def _hide_fragments(message: str, site: Substitution) -> str:
    """Quoted pieces of the value (``'123456789012'`` of an ARN's account) at its path."""
    secrets = [site.value, *(value for _, value in site.variables)]

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        if len(inner) >= 3 and any(inner in secret for secret in secrets):
            return f"(part of {site.label})"
        return match.group(0)

    return _QUOTED.sub(replace, message)


def _pattern(forms: list[tuple[str, str]]) -> re.Pattern[str]:
    """One alternation of every form, longest first; a short one only as a whole word."""
    parts = []
    for text, _ in forms:
        escaped = re.escape(text)
        if len(text) < _SHORTEST_HIDDEN_ELSEWHERE:
            escaped = rf"(?<![\w.-]){escaped}(?![\w.])"
        parts.append(escaped)
    return re.compile("|".join(parts))


def hide_substituted(problems: list[Problem], sites: Mapping[Loc, Substitution]) -> list[Problem]:
    """The problems with every value taken from the environment replaced by the name of
    its variable. At (or above, or below) the path of a substituted value, everything of
    it is hidden, quoted fragments included; elsewhere (a rule across fields that quotes
    another field) the whole value and each variable's value of 4 characters or more."""
    if not sites:
        return problems
    return [(loc, _hide_in(message, loc, sites)) for loc, message in problems]


def _namer(names: Mapping[str, str]) -> Callable[[re.Match[str]], str]:
    def name(match: re.Match[str]) -> str:
        return names[match.group(0)]

    return name


def _hide_in(message: str, loc: Loc, sites: Mapping[Loc, Substitution]) -> str:
    for site_loc, site in sites.items():
        related = _related(loc, site_loc)
        forms = [
            form
            for form in _hidden_forms(site)
            if related or len(form[0]) >= _SHORTEST_HIDDEN_ELSEWHERE
        ]
        if forms:
            message = _pattern(forms).sub(_namer(dict(forms)), message)
        if related:
            message = _hide_fragments(message, site)
    return message
