"""One invocation outside the service: ``pumphouse invoke`` and tests.

:func:`invoke_local` runs the function once in a fresh worker (a cold start, as the
first invocation in Lambda), with the same environment, limits and error handling as
the service, and stops the worker afterwards. :func:`format_report` renders the result
as Lambda's ``REPORT`` log line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pumphouse.runtime.engine import Runtime
from pumphouse.runtime.environment import DEFAULT_PASS_ENVIRONMENT
from pumphouse.runtime.process import FunctionLogLine
from pumphouse.runtime.result import InvocationResult, Outcome
from pumphouse.runtime.spec import FunctionSpec
from pumphouse.telemetry.metrics import Metrics


async def invoke_local(
    spec: FunctionSpec,
    event: Any,
    *,
    pass_environment: Sequence[str] = DEFAULT_PASS_ENVIRONMENT,
    on_log: Callable[[str], None] | None = None,
    node_modules: Sequence[str | Path] = (),
) -> InvocationResult:
    """Invoke ``spec``'s handler once with ``event`` in a new worker process.

    ``on_log`` receives each line the function writes (stdout and stderr); without it
    they are structlog events, as in the service. Metrics go to a private registry.
    ``node_modules``: where else to look for AWS's Node.js runtime interface client (see
    :class:`~pumphouse.runtime.engine.Runtime`).
    """
    sink = None
    if on_log is not None:
        callback = on_log

        def sink(line: FunctionLogLine) -> None:
            callback(line.message)

    runtime = Runtime(
        {spec.name: spec},
        max_concurrency=1,
        pass_environment=pass_environment,
        metrics=Metrics(),
        log_sink=sink,
        node_modules=node_modules,
    )
    try:
        return await runtime.invoke(spec.name, event)
    finally:
        await runtime.stop(timeout=0)


def format_report(result: InvocationResult) -> str:
    """Lambda's REPORT line for ``result``, e.g. ``REPORT RequestId: 8f5c...\\t
    Duration: 1.23 ms\\tBilled Duration: 2 ms\\tMemory Size: 128 MB\\tMax Memory
    Used: 40 MB\\tInit Duration: 80.10 ms``, plus ``Status`` on a timeout or crash."""
    parts = [
        f"REPORT RequestId: {result.request_id}",
        f"Duration: {result.duration_ms:.2f} ms",
        f"Billed Duration: {result.billed_duration_ms} ms",
        f"Memory Size: {result.memory_size_mb} MB",
        f"Max Memory Used: {result.max_memory_used_mb} MB",
    ]
    if result.init_duration_ms is not None:
        parts.append(f"Init Duration: {result.init_duration_ms:.2f} ms")
    if result.outcome is Outcome.TIMEOUT:
        parts.append("Status: timeout")
    elif result.outcome in (Outcome.CRASH, Outcome.OUT_OF_MEMORY, Outcome.INIT_ERROR):
        parts.append(f"Status: error\tError Type: {result.error_type}")
    return "\t".join(parts)
