"""structlog configuration: JSON in production, human-readable on a terminal.

Context (mapping, function, shard, request id) is bound with
``structlog.contextvars.bind_contextvars`` or ``logger.bind`` — never formatted into the
message — so that every line of a batch carries it as fields.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["json", "console", "auto"]

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


def configure_logging(
    *, fmt: LogFormat | str | None = "auto", level: str | int | None = "info"
) -> None:
    """Configure structlog (and route stdlib logging of libraries through it) once."""
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
    # same way, at WARNING and above unless we are debugging.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
