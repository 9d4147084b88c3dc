"""The execution layer: worker processes with Lambda semantics, and concurrency slots.

It knows nothing about event sources: it takes a function's :class:`FunctionSpec` and an
event (a JSON-able value) and returns an :class:`InvocationResult`. Modules:

* ``spec`` — :class:`FunctionSpec`; ``result`` — :class:`Outcome`,
  :class:`InvocationResult`;
* ``engine`` — :class:`Runtime`, the front the service and the pollers use;
* ``slots`` — concurrency limits (global, per function, per caller) and fair waiting;
* ``pool`` — the warm workers of one function; ``process`` — one worker, seen from
  the parent; ``worker`` — the bootstrap running inside a worker;
* ``launch`` — which process runs a function (Python's bootstrap, or a runtime process
  for ``nodejs*``, ``provided*`` and ``ImageConfig``); ``runtime_process`` — one runtime
  process, seen from the parent; ``runtime_api`` — Lambda's Runtime API, one per process;
* ``protocol`` / ``channel`` — the framed control pipes; ``context`` — the handler's
  ``context``; ``environment`` — the worker's built environment;
* ``local`` — :func:`invoke_local` and :func:`format_report` for ``pumphouse invoke``.

The names below are imported lazily: worker processes import this package on their
cold-start path and must not pay for the service side (asyncio, structlog, metrics).
"""

from __future__ import annotations

import importlib

# Not ``typing.TYPE_CHECKING``: importing typing costs a worker's cold start milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pumphouse.runtime.engine import Runtime, UnknownFunction
    from pumphouse.runtime.environment import DEFAULT_PASS_ENVIRONMENT
    from pumphouse.runtime.local import format_report, invoke_local
    from pumphouse.runtime.process import FunctionLogLine
    from pumphouse.runtime.result import InvocationResult, Outcome
    from pumphouse.runtime.slots import CallerSlots, RuntimeStopped, Slot
    from pumphouse.runtime.spec import FunctionSpec

__all__ = [
    "DEFAULT_PASS_ENVIRONMENT",
    "CallerSlots",
    "FunctionLogLine",
    "FunctionSpec",
    "InvocationResult",
    "Outcome",
    "Runtime",
    "RuntimeStopped",
    "Slot",
    "UnknownFunction",
    "format_report",
    "invoke_local",
]

_HOMES = {
    "DEFAULT_PASS_ENVIRONMENT": "environment",
    "CallerSlots": "slots",
    "FunctionLogLine": "process",
    "FunctionSpec": "spec",
    "InvocationResult": "result",
    "Outcome": "result",
    "Runtime": "engine",
    "RuntimeStopped": "slots",
    "Slot": "slots",
    "UnknownFunction": "engine",
    "format_report": "local",
    "invoke_local": "local",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
