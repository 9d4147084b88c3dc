"""The outcome of one invocation: :class:`Outcome` and :class:`InvocationResult`.

Errors use Lambda's own shape, ``{"errorMessage", "errorType", "requestId",
"stackTrace"}``, and Lambda's error types:

====================  =================================  ===========================
outcome               ``errorType``                      when
====================  =================================  ===========================
``function_error``    the exception's class name         the handler raised
``init_error``        ``Runtime.ImportModuleError``,     the handler could not be
                      ``Runtime.HandlerNotFound``,       loaded (or the module's
                      ``Runtime.UserCodeSyntaxError``,   own code raised while it
                      ``Runtime.MalformedHandlerName``,  was imported)
                      or the exception's class name
``marshal_error``     ``Runtime.MarshalError``           result not JSON-serializable
``response_too_large``  ``Function.ResponseSizeTooLarge``  result over 6 MB
``timeout``           ``Sandbox.Timedout``               ran past ``Timeout``
``oom``               ``Runtime.OutOfMemory``            resident memory over ``MemorySize``
``crash``             ``Runtime.ExitError``              the worker died (signal, exit)
``service_error``     ``Pumphouse.*``                    pumphouse could not run it
====================  =================================  ===========================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pumphouse.runtime.protocol import MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES

__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "InvocationResult",
    "Outcome",
    "billed_ms",
    "lambda_error",
    "service_error",
]



class Outcome(StrEnum):
    SUCCESS = "success"
    FUNCTION_ERROR = "function_error"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "oom"
    CRASH = "crash"
    INIT_ERROR = "init_error"
    MARSHAL_ERROR = "marshal_error"
    RESPONSE_TOO_LARGE = "response_too_large"
    SERVICE_ERROR = "service_error"


@dataclass(frozen=True, kw_only=True)
class InvocationResult:
    """What one invocation produced, and what it cost."""

    request_id: str
    outcome: Outcome
    payload: Any
    """The handler's return value, decoded from JSON (``None`` on error). A handler that
    returns ``bytes`` has them passed through undecoded, as Lambda does."""
    error: dict[str, Any] | None
    """Lambda's error shape, ``None`` on success."""
    function_error: str | None
    """``"Unhandled"`` for any error (Lambda's ``X-Amz-Function-Error``), else ``None``."""
    duration_ms: float
    billed_duration_ms: int
    init_duration_ms: float | None
    """Spawn to ready of the worker, on a cold start only."""
    max_memory_used_mb: int
    memory_size_mb: int
    cold_start: bool
    request_bytes: int = 0
    """Size of the serialized event."""
    response_bytes: int = 0
    """Size of the serialized response."""
    serialize_ms: float = 0.0
    """Time the runtime spent encoding the event in the parent process."""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    @property
    def function_ran(self) -> bool:
        """False only when pumphouse could not run the function at all (spawn failed,
        shutting down, request too large). Such attempts are not retries."""
        return self.outcome is not Outcome.SERVICE_ERROR

    @property
    def error_type(self) -> str | None:
        return None if self.error is None else str(self.error.get("errorType", ""))


def lambda_error(
    error_type: str,
    message: str,
    *,
    request_id: str = "",
    stack_trace: list[str] | None = None,
) -> dict[str, Any]:
    """An error in Lambda's shape."""
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack_trace if stack_trace is not None else [],
    }


def billed_ms(duration_ms: float) -> int:
    """Lambda bills in 1 ms increments, rounding up, at least 1 ms."""
    whole = int(duration_ms)
    return max(1, whole if whole == duration_ms else whole + 1)


def service_error(
    request_id: str, error_type: str, message: str, *, memory_size_mb: int
) -> InvocationResult:
    """A result for an invocation pumphouse could not run (``function_ran`` is False)."""
    return InvocationResult(
        request_id=request_id,
        outcome=Outcome.SERVICE_ERROR,
        payload=None,
        error=lambda_error(error_type, message, request_id=request_id),
        function_error="Unhandled",
        duration_ms=0.0,
        billed_duration_ms=0,
        init_duration_ms=None,
        max_memory_used_mb=0,
        memory_size_mb=memory_size_mb,
        cold_start=False,
    )
