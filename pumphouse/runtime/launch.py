"""Which process runs a function: :func:`resolve_launch`.

Lambda's own conventions, by ``Runtime`` and ``ImageConfig``:

* ``ImageConfig.EntryPoint`` set: the process is ``EntryPoint + Command`` (a container
  image's ``ENTRYPOINT`` and ``CMD``), started in ``WorkingDirectory`` (default
  ``CodeUri``). It speaks the Runtime API (``python3 -m awslambdaric app.handler``, a
  compiled Go or Rust binary, ...).
* ``provided``, ``provided.al2``, ``provided.al2023``: the executable ``bootstrap`` in
  ``CodeUri`` (a custom runtime), with ``Command`` as its arguments when there is one.
* ``nodejsNN.x`` (any version): the ``node`` installed here running AWS's runtime
  interface client, the npm package ``aws-lambda-ric``, with the handler as its
  argument; the client is looked for in ``CodeUri/node_modules``, then in each extra
  ``node_modules`` directory the settings name.
* ``python3.X``: pumphouse's own in-process bootstrap (no Runtime API: framed pipes).

In every case ``_HANDLER`` is ``Command[0]`` when there is a ``Command``, else
``Handler``. Problems (a missing ``bootstrap``, no ``node``, no ``aws-lambda-ric``)
are configuration errors, found when the runtime is built, before anything runs.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pumphouse.errors import ConfigError
from pumphouse.runtime.spec import FunctionSpec

__all__ = [
    "NODE_CLIENT",
    "NODE_RUNTIME",
    "PROVIDED_RUNTIMES",
    "Launch",
    "LaunchError",
    "check_launches",
    "resolve_launch",
]

PROVIDED_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
NODE_RUNTIME = re.compile(r"nodejs\d{1,2}\.x")
"""Every ``nodejsNN.x``: the function runs on the ``node`` installed here, whatever its
version (Lambda's own list changes every year; a template naming an older or newer one
still runs)."""
NODE_CLIENT = "aws-lambda-ric"
"""The npm package of AWS's Node.js runtime interface client."""
_NODE_CLIENT_SCRIPT = Path(NODE_CLIENT, "bin", "index.mjs")


@dataclass(frozen=True, kw_only=True)
class Launch:
    """How to start one runtime process of a function."""

    argv: tuple[str, ...]
    cwd: Path
    handler: str
    """``_HANDLER``."""


class LaunchError(Exception):
    """The function cannot be started as configured. ``field`` is the configuration
    field at fault (``Runtime``, ``CodeUri``, ``ImageConfig``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _executable(name: str, *, cwd: Path, path: str) -> str | None:
    if os.sep in name:
        candidate = Path(name) if Path(name).is_absolute() else cwd / name
        return str(candidate) if os.access(candidate, os.X_OK) and candidate.is_file() else None
    return shutil.which(name, path=path)


def resolve_launch(
    spec: FunctionSpec,
    *,
    node_modules: Sequence[Path] = (),
    environ: Mapping[str, str] | None = None,
) -> Launch | None:
    """The process of ``spec``, or None for pumphouse's Python bootstrap.

    :param node_modules: ``node_modules`` directories searched for ``aws-lambda-ric``
        after the function's own ``CodeUri/node_modules``.
    :param environ: where ``PATH`` comes from (default: this process's environment).
    :raises LaunchError: the process cannot be started as configured.
    """
    path = (os.environ if environ is None else environ).get("PATH", os.defpath)
    cwd = spec.working_directory or spec.code_uri
    command = tuple(spec.command)
    handler = command[0] if command else spec.handler
    if spec.entry_point:
        program = _executable(spec.entry_point[0], cwd=cwd, path=path)
        if program is None:
            raise LaunchError(
                "ImageConfig",
                f"EntryPoint {spec.entry_point[0]!r} is not an executable on PATH or in "
                f"{cwd}",
            )
        return Launch(argv=(program, *spec.entry_point[1:], *command), cwd=cwd, handler=handler)
    if spec.runtime in PROVIDED_RUNTIMES:
        bootstrap = spec.code_uri / "bootstrap"
        if not (bootstrap.is_file() and os.access(bootstrap, os.X_OK)):
            raise LaunchError(
                "CodeUri",
                f"a {spec.runtime} function needs an executable 'bootstrap' in {spec.code_uri} "
                "(chmod +x bootstrap)",
            )
        return Launch(argv=(str(bootstrap), *command), cwd=cwd, handler=handler)
    if NODE_RUNTIME.fullmatch(spec.runtime):
        node = shutil.which("node", path=path)
        if node is None:
            raise LaunchError(
                "Runtime", f"{spec.runtime} needs Node.js: no 'node' on PATH ({path})"
            )
        searched = [spec.code_uri / "node_modules", *node_modules]
        for directory in searched:
            script = directory / _NODE_CLIENT_SCRIPT
            if script.is_file():
                args = command if command else (handler,)
                return Launch(argv=(node, str(script), *args), cwd=cwd, handler=handler)
        where = ", ".join(str(d) for d in searched)
        raise LaunchError(
            "Runtime",
            f"{spec.runtime} runs through AWS's Node.js runtime interface client, which is "
            f"not installed: no {NODE_CLIENT} in {where}. Install it with "
            f"'npm install {NODE_CLIENT}' in {spec.code_uri} (or in a directory named by "
            "Settings.NodeModulesPath)",
        )
    if command and not spec.runtime.startswith("python"):
        raise LaunchError("Runtime", f"unknown runtime {spec.runtime!r}")
    return None


def check_launches(
    specs: Mapping[str, FunctionSpec],
    *,
    node_modules: Sequence[Path] = (),
) -> dict[str, Launch | None]:
    """:func:`resolve_launch` for every function; every problem at once, by path, as a
    :class:`~pumphouse.errors.ConfigError`."""
    launches: dict[str, Launch | None] = {}
    problems: list[str] = []
    for name, spec in specs.items():
        try:
            launches[name] = resolve_launch(spec, node_modules=node_modules)
        except LaunchError as err:
            problems.append(f"Functions.{name}.{err.field}: {err}")
    if problems:
        raise ConfigError(problems)
    return launches
