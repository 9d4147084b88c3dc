"""CloudFormation dynamic references to Secrets Manager:
``{{resolve:secretsmanager:secret-id:SecretString:json-key:version-stage:version-id}}``.

CloudFormation resolves them when it deploys; pumphouse resolves them when ``run`` or
``dev`` starts from a template, through the configured Secrets Manager endpoint (the one
the Kafka secrets use), and never before: ``validate`` checks their form and ``convert``
writes them as they are. Every part after the secret id is optional (``SecretString`` is
the only kind); without a JSON key the whole secret string is used.

The resolved values are secrets: a problem found after resolving never shows them (they
are replaced by ``***`` in every message).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from pumphouse.config.templates.intrinsics import Loc, TemplateProblem

__all__ = ["SecretReference", "find_references", "redact", "substitute_references"]

_REFERENCE: Final = re.compile(r"\{\{resolve:([a-z-]+):([^}]*)\}\}")


@dataclass(frozen=True)
class SecretReference:
    """One parsed ``{{resolve:secretsmanager:...}}``."""

    text: str
    """The reference as written."""
    secret_id: str
    json_key: str | None = None
    version_stage: str | None = None
    version_id: str | None = None

    @classmethod
    def parse(cls, text: str, service: str, body: str, loc: Loc) -> SecretReference:
        if service != "secretsmanager":
            raise TemplateProblem(
                loc,
                f"{{{{resolve:{service}:...}}}} is not resolvable locally: pumphouse resolves "
                "only Secrets Manager references",
            )
        # The secret id may be a full ARN, which has colons of its own.
        if body.startswith("arn:"):
            parts = body.split(":")
            secret_id, rest = ":".join(parts[:7]), parts[7:]
        else:
            secret_id, *rest = body.split(":")
        if not secret_id:
            raise TemplateProblem(loc, f"{text}: no secret id")
        kind, key, stage, version = (*rest, "", "", "", "")[:4]
        if kind not in ("", "SecretString") or len(rest) > 4:
            raise TemplateProblem(
                loc,
                f"{text}: expected secretsmanager:secret-id:SecretString:json-key:"
                "version-stage:version-id",
            )
        return cls(
            text=text,
            secret_id=secret_id,
            json_key=key or None,
            version_stage=stage or None,
            version_id=version or None,
        )


def find_references(
    data: Any, loc: Loc = (), *, problems: list[TemplateProblem] | None = None
) -> list[tuple[Loc, SecretReference]]:
    """Every dynamic reference in the strings of ``data``, with its path. A malformed one
    is raised, or added to ``problems`` when given (and the search goes on)."""
    found: list[tuple[Loc, SecretReference]] = []
    if isinstance(data, str):
        for match in _REFERENCE.finditer(data):
            service, body = match.group(1), match.group(2)
            try:
                found.append((loc, SecretReference.parse(match.group(0), service, body, loc)))
            except TemplateProblem as problem:
                if problems is None:
                    raise
                problems.append(problem)
    elif isinstance(data, dict):
        for key, value in data.items():
            found.extend(find_references(value, (*loc, key), problems=problems))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.extend(find_references(value, (*loc, index), problems=problems))
    return found


async def substitute_references(
    data: Any, fetch: Callable[[SecretReference], Awaitable[str]]
) -> tuple[Any, list[str]]:
    """``data`` with every reference replaced by ``fetch``'s answer (each distinct
    reference fetched once), and the values substituted (to :func:`redact` them)."""
    values: dict[str, str] = {}
    for _, reference in find_references(data):
        if reference.text not in values:
            values[reference.text] = await fetch(reference)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _REFERENCE.sub(lambda m: values.get(m.group(0), m.group(0)), value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(data), [v for v in values.values() if v]


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with each secret value replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
