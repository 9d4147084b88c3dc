"""The rules of a function's runtime: ``Runtime``, ``Handler`` and ``ImageConfig``.

Lambda's own: a zip-package function names its ``Handler``; a container-image function
(``ImageConfig``) may leave it out, its ``Command[0]`` is the handler then. Whether the
process can actually start (a ``bootstrap`` in ``CodeUri``, ``node`` and
``aws-lambda-ric`` installed) is checked when the runtime is built, on the machine that
runs it (:mod:`pumphouse.runtime.launch`), not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pumphouse.config.model import Function
    from pumphouse.config.validation import Problem

__all__ = ["runtime_problems"]


def runtime_problems(function: Function) -> list[Problem]:
    """Problems of ``function``'s Handler / ImageConfig combination, by path."""
    image = function.ImageConfig
    problems: list[Problem] = []
    if image is None:
        if function.Handler is None:
            problems.append((("Handler",), "required but missing (or ImageConfig.Command)"))
        return problems
    for name in ("EntryPoint", "Command"):
        value = getattr(image, name)
        if value is not None and not value:
            problems.append((("ImageConfig", name), "must not be empty when set"))
        for index, part in enumerate(value or ()):
            if not part:
                problems.append((("ImageConfig", name, index), "must not be empty"))
    if image.WorkingDirectory is not None and not image.WorkingDirectory:
        problems.append((("ImageConfig", "WorkingDirectory"), "must not be empty when set"))
    if (
        not image.EntryPoint
        and not image.Command
        and function.Handler is None
        and not function.Runtime.startswith("provided")
    ):
        problems.append(
            (
                ("ImageConfig", "Command"),
                f"a {function.Runtime} function needs a handler: Command: [module.function] "
                "(or Handler, or an EntryPoint that runs its own)",
            )
        )
    return problems
