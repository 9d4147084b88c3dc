"""The building blocks of the configuration models: the base class they all share, and
the field types with their checks (numbers that refuse booleans, names, URLs, topics,
times). A check raises ``ValueError`` with the message the user reads after the field's
path."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from pumphouse.config.sources import is_valid_topic, parse_host_port


def _reject_bool(value: Any) -> Any:
    # pydantic's lax mode reads true/false as 1/0 for numbers; YAML users mean otherwise.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_reject_bool)]


Float = Annotated[float, BeforeValidator(_reject_bool), Field(allow_inf_nan=False)]


def regex_check(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


_LAMBDA_RESERVED_VARIABLES: Final = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
"""Variables the runtime sets itself (Lambda refuses them in ``Environment.Variables``).
Credentials (``AWS_ACCESS_KEY_ID``, ...) are allowed: there is no execution role to take
them from."""


def _check_variable_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError(
            f"{name!r} is not a valid environment variable name (a letter, then letters, "
            "digits or '_')"
        )
    if name in _LAMBDA_RESERVED_VARIABLES:
        raise ValueError(f"{name} is reserved: the runtime sets it")
    return name


def _check_host_port(value: str) -> str:
    parse_host_port(value)
    return value


def check_url_port(value: str, parts: SplitResult) -> None:
    """Refuse a URL whose port is not a number from 0 to 65535 (``parts`` is its split)."""
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None


def _check_endpoint_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    check_url_port(value, parts)
    return value


def check_function_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ValueError(
            f"{value!r} is not a valid function name (1-64 letters, digits, '-' or '_')"
        )
    return value


def _check_topic(value: str) -> str:
    if not is_valid_topic(value):
        raise ValueError(
            f"{value!r} is not a valid Kafka topic name (1-249 letters, digits, '.', '_' or '-')"
        )
    return value


def _check_record_age(value: int) -> int:
    if value != -1 and not 60 <= value <= 604800:
        raise ValueError(f"{value} is not allowed: use -1 (no limit) or 60 to 604800 seconds")
    return value


def _epoch_seconds(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected epoch seconds or an ISO-8601 time, got {value}")
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is neither epoch seconds nor an ISO-8601 time "
                "(e.g. 2024-05-01T12:00:00Z)"
            ) from None
        return _epoch_seconds(parsed)
    return value


FunctionNameKey = Annotated[str, AfterValidator(check_function_name)]


VariableName = Annotated[str, AfterValidator(_check_variable_name)]


HostPort = Annotated[str, AfterValidator(_check_host_port)]


EndpointUrl = Annotated[str, AfterValidator(_check_endpoint_url)]


KafkaTopic = Annotated[str, AfterValidator(_check_topic)]


PassedVariable = Annotated[
    str, regex_check(r"[A-Za-z_][A-Za-z0-9_]*\*?", "a variable name (or PREFIX*)")
]


Milliseconds = Annotated[Int, Field(ge=1)]


ByteCount = Annotated[Int, Field(ge=1)]


PositiveSeconds = Annotated[Float, Field(gt=0)]


EpochSeconds = Annotated[
    Float,
    BeforeValidator(_epoch_seconds),
    Field(ge=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "format": "date-time"},
            ],
            "description": "Epoch seconds or an ISO-8601 time (UTC when no offset is given).",
        }
    ),
]


RecordAge = Annotated[
    Int,
    AfterValidator(_check_record_age),
    WithJsonSchema(
        {"anyOf": [{"const": -1}, {"type": "integer", "minimum": 60, "maximum": 604800}]}
    ),
]


class ConfigModel(BaseModel):
    """Base of every configuration model: frozen, no unknown keys, numbers accepted where
    a string is expected (YAML reads ``Topics: [2024]`` as a number)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        coerce_numbers_to_str=True,
        revalidate_instances="always",
    )
