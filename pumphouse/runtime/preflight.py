"""What would fail when a function first runs, found before it runs: :func:`check_function`.

``pumphouse validate`` and ``pumphouse run`` (at start) ask, for each function:

* ``CodeUri`` — the code directory exists (it is the worker's working directory and
  first ``sys.path`` entry);
* for a Python runtime, ``Handler`` — the handler module imports and the function
  exists and is callable. This is the function's init phase, run in a short-lived
  worker started exactly as an invocation's worker is (same interpreter, built
  environment, code directory, memory cap) and timed out like an init
  (:data:`~pumphouse.runtime.pool.INIT_TIMEOUT_SECONDS`, or the function's ``Timeout``
  when longer). The module's top-level code therefore runs — in that worker, never in
  the process that asks — as it would in Lambda's init.

Other runtimes (``nodejs*``, ``provided*``, ``ImageConfig``): what starts the runtime
process — the executable ``bootstrap``, ``node`` and AWS's ``aws-lambda-ric``, the image's
``EntryPoint`` — is resolved when the :class:`~pumphouse.runtime.engine.Runtime` is built
(:func:`pumphouse.runtime.launch.check_launches`), so a missing one is refused, by path,
before any handler check runs. A runtime family may add a deeper check (its init) as an
entry in :data:`RUNTIME_CHECKS`; :func:`check_function` dispatches on it.

Each problem is a ``(field, message)`` pair: the caller puts the function's path in front
(``Functions.orders.Handler: Runtime.ImportModuleError: Unable to import module 'app':
No module named 'app'``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from pumphouse.runtime.process import InitKind, InitReport

if TYPE_CHECKING:
    from pumphouse.runtime.engine import Runtime
    from pumphouse.runtime.spec import FunctionSpec

FunctionProblem = tuple[str, str]
"""``(field of the Functions entry, message)``."""

RuntimeCheck = Callable[["Runtime", "FunctionSpec"], Awaitable[list[FunctionProblem]]]


def runtime_family(runtime: str) -> str:
    """``python3.12`` → ``python``, ``nodejs20.x`` → ``nodejs``, ``provided.al2`` →
    ``provided``: the key of :data:`RUNTIME_CHECKS`."""
    return runtime.rstrip("0123456789.x").split(".")[0] or runtime


async def _python_handler(runtime: Runtime, spec: FunctionSpec) -> list[FunctionProblem]:
    try:
        report = await runtime.check_init(spec.name)
    except OSError as err:
        return [("CodeUri", f"cannot start a worker in {spec.code_uri}: {err.strerror or err}")]
    problem = _init_problem(runtime, spec, report)
    return [] if problem is None else [("Handler", problem)]


def _init_problem(runtime: Runtime, spec: FunctionSpec, report: InitReport) -> str | None:
    """What a worker's init report says is wrong with the handler, or None."""
    if report.kind is InitKind.READY:
        if report.handler_callable:
            return None
        return f"{spec.handler!r} is not a function (not callable)"
    if report.kind is InitKind.ERROR:
        error = report.error or {}
        return f"{error.get('errorType', 'Runtime.Unknown')}: {error.get('errorMessage', '')}"
    if report.kind is InitKind.TIMEOUT:
        limit = runtime.init_timeout(spec.name)
        return f"init did not finish within {limit:g} seconds (Sandbox.Timedout)"
    if report.kind is InitKind.DIED:
        from pumphouse.runtime.process import describe_exit

        return f"the worker died during init ({describe_exit(report.returncode)})"
    return None  # STOPPED: the runtime is shutting down; nothing to say about the code


RUNTIME_CHECKS: Mapping[str, RuntimeCheck] = {"python": _python_handler}
"""The handler check of each runtime family. A family without an entry gets only the
``CodeUri`` check."""


async def check_function(
    runtime: Runtime, name: str, *, handler_check: bool = True
) -> list[FunctionProblem]:
    """The problems ``name``'s first invocation would meet, as ``(field, message)``.

    ``handler_check=False`` checks nothing of the code (neither ``CodeUri`` nor the
    handler): for CI systems that validate a configuration before the code is built or
    where it is not (a chart's configuration naming ``/var/task/...`` in an image).
    """
    if not handler_check:
        return []
    spec = runtime.functions[name]
    if not spec.code_uri.is_dir():
        what = "is not a directory" if spec.code_uri.exists() else "directory not found"
        return [("CodeUri", f"{what}: {spec.code_uri}")]
    check = RUNTIME_CHECKS.get(runtime_family(spec.runtime))
    return [] if check is None else await check(runtime, spec)
