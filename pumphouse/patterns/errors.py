"""Errors of the pattern language.

:class:`FilterPatternError` is what callers see. While compiling, the rules raise the
internal :class:`InvalidPattern` with the place as a path of keys and indexes; the
boundary (:func:`pumphouse.patterns.compile_filter_criteria`) renders that path
(``body.price``, ``$or[1].a``) into the public error.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from pumphouse.patterns.terms import PatternPath


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


_PLAIN_KEY = re.compile(r"[^.\[\]\"\s]+")


def render_path(path: PatternPath) -> str:
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _PLAIN_KEY.fullmatch(step):
            out += f".{step}" if out else step
        else:
            out += f"[{show(step)}]"
    return out


def show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of a pattern fragment, for error messages."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # pragma: no cover - patterns come from JSON, always serializable
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value: Any) -> str:
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


class InvalidPattern(Exception):
    """Internal: raised while compiling, turned into FilterPatternError at the boundary."""

    def __init__(self, path: PatternPath, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason
