"""structlog configuration: JSON in production, human-readable on a terminal.

Context (mapping, function, shard, request id) is bound with
``structlog.contextvars.bind_contextvars`` or ``logger.bind`` — never formatted into the
message — so that every line of a batch carries it as fields.

Libraries' own loggers
----------------------
pumphouse's level (``--log-level``, ``Settings.LogLevel``) applies to pumphouse's own
lines only. The client libraries (botocore, aiobotocore, aiokafka, urllib3, asyncio, ...)
log through the standard library at :data:`LIBRARY_LOG_LEVEL_VARIABLE`'s level, WARNING
unless the operator asks for more **separately**: their DEBUG output holds whole request
and response bodies (botocore prints a Secrets Manager ``GetSecretValue`` answer, password
included), so ``LogLevel: DEBUG`` must never turn it on. The variable takes a level for
every library, or ``logger=level`` pairs::

    PUMPHOUSE_LIBRARY_LOG_LEVEL=info
    PUMPHOUSE_LIBRARY_LOG_LEVEL=warning,aiokafka=debug,aiokafka.conn=info

Even then, a line from botocore or aiobotocore that carries a Secrets Manager secret
value is replaced by a notice (:class:`SecretValueFilter`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Literal

import structlog

from pumphouse.errors import ConfigError

LogFormat = Literal["json", "console", "auto"]

LIBRARY_LOG_LEVEL_VARIABLE = "PUMPHOUSE_LIBRARY_LOG_LEVEL"
"""The environment variable that sets the client libraries' log level (module docs)."""
LIBRARY_DEFAULT_LEVEL = logging.WARNING

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def resolve_format(fmt: LogFormat | str | None) -> Literal["json", "console"]:
    """``auto`` (and None) means console on a terminal, JSON otherwise."""
    if fmt == "json":
        return "json"
    if fmt == "console":
        return "console"
    return "console" if sys.stderr.isatty() else "json"


def parse_level(level: str | int | None) -> int:
    if level is None:
        return logging.INFO
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}") from None


def parse_library_levels(text: str | None) -> tuple[int, dict[str, int]]:
    """``"warning,aiokafka=debug"`` → (WARNING, {"aiokafka": DEBUG}): the level of every
    library, then the loggers given their own. Empty or None: WARNING, no overrides."""
    default = LIBRARY_DEFAULT_LEVEL
    named: dict[str, int] = {}
    for part in (text or "").split(","):
        item = part.strip()
        if not item:
            continue
        name, sep, value = item.rpartition("=")
        if not sep:
            default = parse_level(value)
        elif not name.strip():
            raise ValueError(f"{LIBRARY_LOG_LEVEL_VARIABLE}: {item!r} names no logger")
        else:
            named[name.strip()] = parse_level(value.strip())
    return default, named


_overridden: set[str] = set()
_SECRET_MARKERS = ("SecretString", "SecretBinary")
_AWS_CLIENT_LOGGERS = ("botocore", "aiobotocore")


class SecretValueFilter(logging.Filter):
    """Replaces an AWS client's log line that carries a Secrets Manager secret value
    (``SecretString`` / ``SecretBinary`` in a request or response body) by a notice, for
    operators who turned the libraries' DEBUG output on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_AWS_CLIENT_LOGGERS):
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed library line: keep it out rather than guess
            return False
        if any(marker in text for marker in _SECRET_MARKERS):
            record.msg = "(a Secrets Manager secret value: not logged)"
            record.args = None
        return True


def configure_library_logging(
    handler: logging.Handler, *, environ: Mapping[str, str] | None = None
) -> None:
    """Route the libraries' standard-library logging to ``handler`` at the level the
    operator asked for in :data:`LIBRARY_LOG_LEVEL_VARIABLE` (WARNING by default),
    whatever pumphouse's own level is."""
    env = os.environ if environ is None else environ
    try:
        default, named = parse_library_levels(env.get(LIBRARY_LOG_LEVEL_VARIABLE))
    except ValueError as err:
        problem = f"{LIBRARY_LOG_LEVEL_VARIABLE}: {err}"
        raise ConfigError([problem], source="the environment") from None
    handler.addFilter(SecretValueFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(default)
    for name in _overridden - named.keys():  # given a level by an earlier configuration
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name, level in named.items():
        logging.getLogger(name).setLevel(level)
    _overridden.clear()
    _overridden.update(named)


def configure_logging(
    *,
    fmt: LogFormat | str | None = "auto",
    level: str | int | None = "info",
    environ: Mapping[str, str] | None = None,
) -> None:
    """Configure structlog (and route stdlib logging of libraries through it) once.
    ``environ`` (default ``os.environ``) supplies :data:`LIBRARY_LOG_LEVEL_VARIABLE`."""
    renderer: structlog.typing.Processor
    if resolve_format(fmt) == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    numeric = parse_level(level)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiokafka, botocore) log through the standard library: render those the
    # same way, at their own level (see the module docs), never pumphouse's.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    configure_library_logging(handler, environ=environ)
