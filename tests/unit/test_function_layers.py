"""A function's ``Layers`` (directories laid out as Lambda extracts a layer into /opt) and
the handler names Lambda's Python runtime accepts, down to a real worker process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pumphouse.config import Function
from pumphouse.config.model import Settings
from pumphouse.runtime import FunctionSpec
from pumphouse.runtime.environment import build_environment
from pumphouse.runtime.local import invoke_local

VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.mark.parametrize(
    "handler",
    [
        "app.handler",
        "kinesis-consumer-fn.lambda_handler",
        "package/module.handler",
        "package.module.handler",
        "src/my-fn.v2_handler",
    ],
)
def test_handlers_lambda_accepts(handler: str) -> None:
    assert Function(Handler=handler).Handler == handler


@pytest.mark.parametrize(
    "handler", ["handler", "app.", ".handler", "app.1handler", "my app.handler", "/abs.handler"]
)
def test_handlers_lambda_refuses(handler: str) -> None:
    with pytest.raises(ValueError, match="is not a handler"):
        Function(Handler=handler)


def layer(root: Path, *dirs: str) -> Path:
    for sub in dirs:
        (root / sub).mkdir(parents=True)
    return root


def test_layer_directories_on_the_search_paths(tmp_path: Path) -> None:
    first = layer(tmp_path / "first", "python", "bin", "nodejs/node_modules")
    second = layer(tmp_path / "second", "python", f"python/lib/{VERSION}/site-packages", "lib")
    spec = FunctionSpec(
        name="fn",
        handler="app.handler",
        code_uri=tmp_path / "code",
        layers=(first, second, tmp_path / "empty"),
        environment={"NODE_PATH": "/own/node_modules"},
    )
    env = build_environment(
        spec,
        tmpdir="/tmp/w",
        log_stream_name="s",
        parent={"PATH": "/usr/bin:/bin"},
        extra_pythonpath=["/srv/pumphouse"],
    )
    # The last layer first: where two layers hold a file, the later one wins, as in /opt.
    assert env["PYTHONPATH"].split(os.pathsep) == [
        str(tmp_path / "code"),
        str(second / f"python/lib/{VERSION}/site-packages"),
        str(second / "python"),
        str(first / "python"),
        "/srv/pumphouse",
    ]
    assert env["NODE_PATH"].split(os.pathsep) == [
        str(first / "nodejs/node_modules"),
        "/own/node_modules",
    ]
    assert env["PATH"].split(os.pathsep) == ["/usr/bin", "/bin", str(first / "bin")]
    assert env["LD_LIBRARY_PATH"] == str(second / "lib")


def test_layers_in_a_configuration_resolve_against_its_directory(tmp_path: Path) -> None:
    function = Function(Handler="app.handler", Layers=["layers/a", str(tmp_path / "b")])
    function._base_dir = tmp_path  # as Config sets it
    spec = function.to_spec("fn", Settings())
    assert spec.layers == ((tmp_path / "layers/a").resolve(), (tmp_path / "b").resolve())


def test_more_than_five_layers_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 5 items"):
        Function(Handler="app.handler", Layers=[f"l{i}" for i in range(6)])


async def test_a_worker_imports_from_its_layers_later_layer_first(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "my-handler.py").write_text(
        "import shared, only_first, dependency\n"
        "def handler(event, context):\n"
        "    return [shared.WHO, only_first.WHO, dependency.WHO]\n"
    )
    first = layer(tmp_path / "first", "python")
    (first / "python" / "shared.py").write_text("WHO = 'first'\n")
    (first / "python" / "only_first.py").write_text("WHO = 'first'\n")
    second = layer(tmp_path / "second", f"python/lib/{VERSION}/site-packages")
    site = second / f"python/lib/{VERSION}/site-packages"
    (site / "shared.py").write_text("WHO = 'second'\n")
    (site / "dependency.py").write_text("WHO = 'second'\n")
    spec = FunctionSpec(
        name="layered", handler="my-handler.handler", code_uri=code, layers=(first, second)
    )
    result = await invoke_local(spec, {})
    assert result.ok, result.error
    assert result.payload == ["second", "first", "second"]
