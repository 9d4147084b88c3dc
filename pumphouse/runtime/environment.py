"""The environment of a worker process: built, never inherited.

A worker gets, in this order (later entries win):

1. ``PATH`` and ``LANG`` from pumphouse's own environment (defaults
   ``/usr/local/bin:/usr/bin:/bin`` and ``en_US.UTF-8``), ``TZ=:UTC``;
2. the variables named in ``pass_environment`` that are set in pumphouse's environment
   (a trailing ``*`` matches a prefix: ``AWS_ENDPOINT_URL_*``). The default list,
   :data:`DEFAULT_PASS_ENVIRONMENT`, is the AWS credential and endpoint variables, so
   that a handler's boto3 client reaches the same (local) endpoints as pumphouse;
3. the function's ``Environment.Variables``;
4. Lambda's reserved variables, which the function cannot override:
   ``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_LAMBDA_FUNCTION_VERSION`` (``$LATEST``),
   ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, ``AWS_LAMBDA_LOG_GROUP_NAME``,
   ``AWS_LAMBDA_LOG_STREAM_NAME``, ``AWS_LAMBDA_INITIALIZATION_TYPE``, ``AWS_REGION``,
   ``AWS_DEFAULT_REGION``, ``AWS_EXECUTION_ENV`` (``AWS_Lambda_python3.11``),
   ``LAMBDA_TASK_ROOT`` (the code directory), ``LAMBDA_RUNTIME_DIR`` (this package's
   directory), ``_HANDLER``;
5. ``TMPDIR`` (also ``TMP`` and ``TEMP``): a directory of the worker's own, Lambda's
   ``/tmp``, removed when the worker exits;
6. ``PYTHONPATH``: the code directory first, then the layers' Python directories (see
   below), then the function's own ``PYTHONPATH`` if it set one, then the directories
   pumphouse itself and orjson were imported from when this process found them through
   its ``sys.path`` rather than a site directory (a source checkout, ``PYTHONPATH``; see
   :func:`import_roots`). The worker runs
   pumphouse's interpreter (``sys.executable``), so site-packages of pumphouse's
   environment (the user's dependencies, installed beside pumphouse) are on its path
   through ``site`` as usual; site directories are never put on ``PYTHONPATH``, where
   they would come before the standard library.

Layers. Lambda extracts a function's layers, in order, into ``/opt``, a later layer's
file replacing an earlier one's of the same path; the runtime then searches ``/opt/python``
and ``/opt/python/lib/python3.X/site-packages`` after ``/var/task``, ``NODE_PATH`` holds
``/opt/nodejs/node_modules``, ``PATH`` ends with ``/opt/bin`` and ``LD_LIBRARY_PATH``
holds ``/opt/lib``. pumphouse leaves each layer in its own directory and puts every
layer's directories on those paths, the last layer first, so that where two layers hold
the same file the later one wins as it does in Lambda: ``PYTHONPATH`` gets each layer's
``python/lib/python3.X/site-packages`` then ``python/`` (3.X: the interpreter workers
run), ``NODE_PATH`` each layer's ``nodejs/node_modules``, ``PATH`` and
``LD_LIBRARY_PATH`` each layer's ``bin/`` and ``lib/`` after what they already hold.
Directories a layer does not have are left out.

Nothing else of pumphouse's environment reaches the function: a secret set for
pumphouse stays out of handler code unless it is passed on purpose.
"""

from __future__ import annotations

import os
import site
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pumphouse.runtime.spec import FunctionSpec

DEFAULT_PASS_ENVIRONMENT: tuple[str, ...] = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_*",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE",
    # Pod and task credentials (IRSA, EKS Pod Identity, ECS task roles).
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_*",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN*",
    "AWS_STS_REGIONAL_ENDPOINTS",
)
"""Variables of pumphouse's environment a worker inherits by default."""

RUNTIME_DIR = Path(__file__).resolve().parent


def passed_variables(
    names: Iterable[str], source: Mapping[str, str]
) -> dict[str, str]:
    """The variables of ``source`` named in ``names`` (``PREFIX*`` matches a prefix)."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for name in names:
        if name.endswith("*"):
            prefixes.append(name[:-1])
        else:
            exact.add(name)
    return {
        key: value
        for key, value in source.items()
        if key in exact or any(key.startswith(p) for p in prefixes)
    }


def import_roots() -> list[str]:
    """Directories the worker needs on ``PYTHONPATH`` to import its bootstrap: where
    pumphouse and orjson were imported from, when that was through a ``sys.path`` entry
    of this process (a source checkout, ``PYTHONPATH``) and not a site directory, which
    the worker has anyway. A package found by a ``site``-installed finder (an editable
    install) needs nothing."""
    import orjson

    import pumphouse

    site_dirs = {os.path.realpath(d) for d in site.getsitepackages()}
    user_site = site.getusersitepackages()
    if user_site:
        site_dirs.add(os.path.realpath(user_site))
    on_path = {os.path.realpath(entry or os.getcwd()) for entry in sys.path}
    roots: list[str] = []
    for module_file in (pumphouse.__file__, orjson.__file__):
        if not module_file:
            continue
        root = os.path.realpath(Path(module_file).parent.parent)
        if root in on_path and root not in site_dirs and root not in roots:
            roots.append(root)
    return roots


def build_environment(
    spec: FunctionSpec,
    *,
    pass_environment: Sequence[str] = DEFAULT_PASS_ENVIRONMENT,
    tmpdir: str,
    log_stream_name: str,
    initialization_type: str = "on-demand",
    parent: Mapping[str, str] | None = None,
    extra_pythonpath: Sequence[str] = (),
) -> dict[str, str]:
    """The complete environment of one worker of ``spec`` (see the module docstring)."""
    source = os.environ if parent is None else parent
    env: dict[str, str] = {
        "PATH": source.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": source.get("LANG", "en_US.UTF-8"),
        "TZ": ":UTC",
    }
    env.update(passed_variables(pass_environment, source))
    env.update(spec.environment)
    code_dir = str(spec.code_uri)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
            "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": code_dir,
            "LAMBDA_RUNTIME_DIR": str(RUNTIME_DIR),
            "_HANDLER": spec.command[0] if spec.command else spec.handler,
            "TMPDIR": tmpdir,
            "TMP": tmpdir,
            "TEMP": tmpdir,
        }
    )
    path = [code_dir, *layer_directories(spec.layers, "python")]
    for variable, kind in (("NODE_PATH", "nodejs"), ("PATH", "bin"), ("LD_LIBRARY_PATH", "lib")):
        found = layer_directories(spec.layers, kind)
        if found:
            before = [p for p in env.get(variable, "").split(os.pathsep) if p]
            if variable == "NODE_PATH":  # layers first: Lambda's NODE_PATH starts with /opt
                before, found = found, before
            env[variable] = os.pathsep.join(dict.fromkeys([*before, *found]))
    own = spec.environment.get("PYTHONPATH")
    if own:
        path.extend(p for p in own.split(os.pathsep) if p)
    path.extend(extra_pythonpath)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return env


def layer_directories(layers: Sequence[Path], kind: str) -> list[str]:
    """The directories of ``layers`` (a function's order) that Lambda puts on the search
    path of ``kind`` (``python``, ``nodejs``, ``bin``, ``lib``), the last layer first (a
    later layer's file wins, as in ``/opt``), leaving out directories that do not exist."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    relative = {
        "python": (f"python/lib/{version}/site-packages", "python"),
        "nodejs": ("nodejs/node_modules",),
        "bin": ("bin",),
        "lib": ("lib",),
    }[kind]
    found = []
    for layer in reversed(layers):
        for sub in relative:
            candidate = layer / sub
            if candidate.is_dir():
                found.append(str(candidate))
    return found
