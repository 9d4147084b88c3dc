"""``${NAME}`` references in configuration values, so that secrets stay out of files.

Every string value of the parsed YAML (not the keys) is scanned:

* ``${NAME}`` is replaced by the environment variable ``NAME``; when it is not set, that
  is a configuration problem at the value's path;
* ``${NAME:-default}`` is replaced by ``NAME`` when it is set and not empty, else by
  ``default`` (which cannot contain ``}``);
* ``$${`` is a literal ``${`` (so ``$${NAME}`` stays ``${NAME}``).

A ``$`` followed by anything else is kept as is. :func:`escape` is the inverse used when
writing a configuration back out: ``substitute(escape(s), env={}) == s`` for every ``s``.

A value taken from the environment may be a secret: ``used`` collects each variable
substituted with its value, so that a configuration problem at that place names the
variable instead of echoing the value (see
:func:`pumphouse.config.messages.hide_substituted`).

>>> substitute("redis://${HOST:-localhost}:6379", {"HOST": "cache"})
('redis://cache:6379', [])
>>> substitute("$${literal}", {})
('${literal}', [])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Substitution", "escape", "substitute"]


@dataclass(frozen=True)
class Substitution:
    """A configuration string that took (part of) its value from the environment."""

    value: str
    """The string after substitution."""
    variables: tuple[tuple[str, str], ...]
    """Each variable substituted from the environment, with its value."""

    @property
    def label(self) -> str:
        """How a message names the value: ``the value of ${NAME}`` when the variable is
        the whole string, else ``the value built from ${A}, ${B}``."""
        names = ", ".join(f"${{{name}}}" for name in dict(self.variables))
        if len(self.variables) == 1 and self.variables[0][1] == self.value:
            return f"the value of {names}"
        return f"the value built from {names}"

_REFERENCE = re.compile(
    r"\$\$\{"  # escaped: a literal ${
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<bad>\$\{[^}]*\}?)"  # anything else that opens ${ is malformed
)


def substitute(
    text: str,
    environ: Mapping[str, str],
    *,
    used: list[tuple[str, str]] | None = None,
) -> tuple[str, list[str]]:
    """Replace ``${...}`` references in ``text``; return the result and the problems
    (undefined variables, malformed references). Each variable whose (non-empty) value
    was substituted is appended to ``used`` as ``(name, value)``."""
    if "${" not in text:
        return text, []
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        bad = match.group("bad")
        if bad is not None:
            problems.append(
                f"malformed reference {bad!r}: use ${{NAME}} or ${{NAME:-default}} "
                "(write $${ for a literal ${)"
            )
            return bad
        name = match.group("name")
        default = match.group("default")
        value = environ.get(name)
        if value and used is not None:
            used.append((name, value))
        if default is not None:
            return value if value else default
        if value is None:
            problems.append(
                f"environment variable {name} is not set (set it, or give a default: "
                f"${{{name}:-default}})"
            )
            return match.group(0)
        return value

    return _REFERENCE.sub(replace, text), problems


def escape(text: str) -> str:
    """Protect ``text`` from substitution: every ``${`` becomes ``$${``."""
    return text.replace("${", "$${")
