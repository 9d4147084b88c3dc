"""Which process runs a function (Runtime, ImageConfig), and the configuration errors
when it cannot start."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pumphouse.errors import ConfigError
from pumphouse.runtime import FunctionSpec
from pumphouse.runtime.environment import build_environment
from pumphouse.runtime.launch import LaunchError, check_launches, resolve_launch


def spec(tmp_path: Path, **options: object) -> FunctionSpec:
    options.setdefault("handler", "index.handler")
    return FunctionSpec(name="fn", code_uri=tmp_path, **options)  # type: ignore[arg-type]  # test options


def fake_node_client(node_modules: Path) -> Path:
    script = node_modules / "aws-lambda-ric" / "bin" / "index.mjs"
    script.parent.mkdir(parents=True)
    script.write_text("")
    return script


def fake_node(tmp_path: Path) -> dict[str, str]:
    """A PATH with an executable named node."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = bin_dir / "node"
    node.write_text("#!/bin/sh\n")
    node.chmod(0o755)
    return {"PATH": str(bin_dir)}


def test_python_runs_the_in_process_bootstrap(tmp_path: Path) -> None:
    assert resolve_launch(spec(tmp_path, handler="app.handler")) is None
    assert resolve_launch(spec(tmp_path, handler="", command=("app.handler",))) is None


def test_python_image_command_is_the_handler(tmp_path: Path) -> None:
    env = build_environment(spec(tmp_path, handler="", command=("app.handler",)),
                            tmpdir=str(tmp_path), log_stream_name="s")
    assert env["_HANDLER"] == "app.handler"


def test_image_entry_point_and_command(tmp_path: Path) -> None:
    launch = resolve_launch(spec(
        tmp_path, handler="", entry_point=(sys.executable, "-m", "awslambdaric"),
        command=("app.handler", "--flag"), working_directory=tmp_path / "work",
    ))
    assert launch is not None
    assert launch.argv == (sys.executable, "-m", "awslambdaric", "app.handler", "--flag")
    assert (launch.cwd, launch.handler) == (tmp_path / "work", "app.handler")


def test_image_entry_point_found_on_path(tmp_path: Path) -> None:
    launch = resolve_launch(spec(tmp_path, entry_point=("sh", "-c", "true")))
    assert launch is not None
    assert Path(launch.argv[0]).name == "sh" and os.path.isabs(launch.argv[0])
    assert launch.handler == "index.handler"


def test_missing_entry_point(tmp_path: Path) -> None:
    with pytest.raises(LaunchError) as info:
        resolve_launch(spec(tmp_path, entry_point=("./no-such-binary",)))
    assert info.value.field == "ImageConfig"
    assert str(info.value) == (
        f"EntryPoint './no-such-binary' is not an executable on PATH or in {tmp_path}"
    )


def test_provided_runs_bootstrap(tmp_path: Path) -> None:
    bootstrap = tmp_path / "bootstrap"
    bootstrap.write_text("#!/bin/sh\n")
    bootstrap.chmod(0o755)
    launch = resolve_launch(spec(tmp_path, runtime="provided.al2023", handler="function.handler"))
    assert launch is not None
    assert (launch.argv, launch.cwd, launch.handler) == (
        (str(bootstrap),), tmp_path, "function.handler"
    )


@pytest.mark.parametrize("runtime", ["nodejs18.x", "nodejs20.x", "nodejs22.x"])
def test_node_client_from_code_uri_first(tmp_path: Path, runtime: str) -> None:
    code = tmp_path / "code"
    own = fake_node_client(code / "node_modules")
    fake_node_client(tmp_path / "shared" / "node_modules")
    launch = resolve_launch(spec(code, runtime=runtime),
                            node_modules=[tmp_path / "shared" / "node_modules"],
                            environ=fake_node(tmp_path))
    assert launch is not None
    assert launch.argv == (str(tmp_path / "bin" / "node"), str(own), "index.handler")
    assert launch.cwd == code


def test_node_client_from_the_settings_location(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    shared = fake_node_client(tmp_path / "shared" / "node_modules")
    launch = resolve_launch(spec(code, runtime="nodejs20.x"),
                            node_modules=[tmp_path / "shared" / "node_modules"],
                            environ=fake_node(tmp_path))
    assert launch is not None and launch.argv[1] == str(shared)


def test_missing_node_client_names_what_to_install(tmp_path: Path) -> None:
    specs = {
        "node-fn": spec(tmp_path, runtime="nodejs20.x"),
        "custom": spec(tmp_path, runtime="provided"),
        "python": spec(tmp_path, handler="app.handler"),
    }
    with pytest.raises(ConfigError) as info:
        check_launches(specs, node_modules=[tmp_path / "elsewhere"])
    assert info.value.problems == [
        "Functions.node-fn.Runtime: nodejs20.x runs through AWS's Node.js runtime interface "
        f"client, which is not installed: no aws-lambda-ric in {tmp_path / 'node_modules'}, "
        f"{tmp_path / 'elsewhere'}. Install it with 'npm install aws-lambda-ric' in "
        f"{tmp_path} (or in a directory named by Settings.NodeModulesPath)",
        "Functions.custom.CodeUri: a provided function needs an executable 'bootstrap' in "
        f"{tmp_path} (chmod +x bootstrap)",
    ]


def test_no_node_on_path(tmp_path: Path) -> None:
    with pytest.raises(LaunchError) as info:
        resolve_launch(spec(tmp_path, runtime="nodejs22.x"), environ={"PATH": str(tmp_path)})
    assert str(info.value) == f"nodejs22.x needs Node.js: no 'node' on PATH ({tmp_path})"
