"""A function's init and invoke errors are logged at error level, with the function, the
request id and the error type: where an operator looks first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from pumphouse.runtime import FunctionSpec, Runtime
from pumphouse.runtime.engine import structlog_sink
from pumphouse.runtime.process import FunctionLogLine
from pumphouse.telemetry.metrics import Metrics


async def _invoke_once(code: Path, handler: str) -> tuple[Any, list[dict[str, Any]]]:
    spec = FunctionSpec(name="fn", handler=handler, code_uri=code)
    runtime = Runtime({"fn": spec}, metrics=Metrics(), max_concurrency=1)
    try:
        with structlog.testing.capture_logs() as events:
            result = await runtime.invoke("fn", {})
    finally:
        await runtime.stop(timeout=1)
    return result, events


def _errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["log_level"] == "error"]


async def test_an_import_error_is_logged_at_error_level(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import not_installed_anywhere\n")
    result, events = await _invoke_once(tmp_path, "app.handler")
    assert result.error_type == "Runtime.ImportModuleError"
    summary = [e for e in _errors(events) if e["event"] == "function error"]
    assert len(summary) == 1
    assert summary[0]["function"] == "fn"
    assert summary[0]["request_id"] == result.request_id
    assert summary[0]["error_type"] == "Runtime.ImportModuleError"
    assert "not_installed_anywhere" in summary[0]["error_message"]
    # The worker's own [ERROR] line reaches the log at error level too.
    lines = [e for e in _errors(events) if str(e["event"]).startswith("[ERROR] Runtime.")]
    assert len(lines) == 1 and lines[0]["function"] == "fn"


async def test_an_exception_in_the_handler_is_logged_at_error_level(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "def handler(event, context):\n    raise KeyError('orderId')\n"
    )
    result, events = await _invoke_once(tmp_path, "app.handler")
    assert result.error_type == "KeyError"
    summary = [e for e in _errors(events) if e["event"] == "function error"]
    assert [(e["function"], e["request_id"], e["error_type"]) for e in summary] == [
        ("fn", result.request_id, "KeyError")
    ]
    lines = [e for e in _errors(events) if str(e["event"]).startswith("[ERROR] KeyError")]
    assert len(lines) == 1 and lines[0]["request_id"] == result.request_id


async def test_a_successful_invocation_logs_nothing_at_error_level(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(event, context):\n    print('hi')\n")
    result, events = await _invoke_once(tmp_path, "app.handler")
    assert result.ok
    assert _errors(events) == []
    assert [e["log_level"] for e in events if e["event"] == "hi"] == ["info"]


def test_function_lines_keep_their_lambda_level() -> None:
    def level_of(message: str) -> str:
        with structlog.testing.capture_logs() as events:
            structlog_sink(FunctionLogLine("fn", "rid", "stdout", message, 1))
        assert events[0]["function"] == "fn" and events[0]["request_id"] == "rid"
        return str(events[0]["log_level"])

    assert level_of("[ERROR]\t2024-01-01T00:00:00Z\trid\tboom") == "error"
    assert level_of("[WARNING]\t2024-01-01T00:00:00Z\trid\tcareful") == "warning"
    assert level_of("[DEBUG]\t2024-01-01T00:00:00Z\trid\tdetail") == "debug"
    assert level_of("[INFO]\t2024-01-01T00:00:00Z\trid\tnews") == "info"
    assert level_of("a plain print") == "info"
