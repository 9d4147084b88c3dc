"""The configuration checks that need the file system and a worker: run-time problems
found before run time.

:func:`preflight_problems` is what ``pumphouse validate`` adds to the schema and
cross-field rules (``--skip-handler-check`` leaves it out), and what
``pumphouse run`` asks at start through :func:`check_functions` with its own runtime.
Every problem is named by its path, like the other configuration problems::

    Functions.orders.CodeUri: directory not found: /srv/app/handlers/orders
    Functions.orders.Handler: Runtime.ImportModuleError: Unable to import module 'app': ...

The checks themselves are :func:`pumphouse.runtime.preflight.check_function`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from pumphouse.config.validation import render

if TYPE_CHECKING:
    from pumphouse.config.model import Config
    from pumphouse.runtime import Runtime

CHECKS_AT_ONCE = 4
"""Workers started at the same time by a check of many functions."""


async def check_functions(
    runtime: Runtime, names: Collection[str], *, handler_check: bool = True
) -> dict[str, list[str]]:
    """Each function's problems as ``Functions.<name>.<Field>: message`` lines; only
    functions with a problem are keys."""
    from pumphouse.runtime.preflight import check_function

    limit = asyncio.Semaphore(CHECKS_AT_ONCE)

    async def one(name: str) -> tuple[str, list[str]]:
        async with limit:
            problems = await check_function(runtime, name, handler_check=handler_check)
        return name, render(
            (((field,), message) for field, message in problems), ("Functions", name)
        )

    found = await asyncio.gather(*(one(name) for name in names))
    return {name: lines for name, lines in found if lines}


async def preflight_problems(config: Config, *, handler_check: bool = True) -> list[str]:
    """Every function's run-time problems, in file order, from a runtime of its own that
    is stopped before returning. What the functions print during their init is dropped."""
    from pumphouse.runtime import Runtime
    from pumphouse.telemetry.metrics import Metrics

    if not config.Functions or not handler_check:
        return []
    specs = {name: fn.to_spec(name, config.Settings) for name, fn in config.Functions.items()}
    kwargs: dict[str, Any] = {}
    if config.Settings.PassEnvironment is not None:
        kwargs["pass_environment"] = list(config.Settings.PassEnvironment)
    runtime = Runtime(
        specs, max_concurrency=CHECKS_AT_ONCE, metrics=Metrics(), log_sink=lambda _: None, **kwargs
    )
    try:
        found = await check_functions(runtime, list(specs), handler_check=handler_check)
    finally:
        await runtime.stop(timeout=0)
    return [line for name in specs for line in found.get(name, [])]
