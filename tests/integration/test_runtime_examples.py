"""The README's "Handlers in other languages" stays true: its configuration and script are
the example files, and ``pumphouse invoke`` runs each example through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "runtimes"
CONFIG = EXAMPLES / "runtimes.yaml"
TEST_NODE_MODULES = ROOT / "tests" / "handlers" / "ric_node" / "node_modules"
SECTION = (ROOT / "README.md").read_text().split("## Handlers in other languages", 1)[1]
SECTION = SECTION.split("\n## ", 1)[0]


def invoke(config: Path, function: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"Records": [{"body": "a"}, {"body": "b"}]}))
    # `python3` of the ImageConfig example is this interpreter (awslambdaric installed).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "pumphouse", "--log-level", "warning", "invoke", "-c",
         str(config), function, "--event", str(event)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": path},
    )


def test_readme_configuration_is_the_example_file() -> None:
    block = SECTION.split("```yaml\n", 1)[1].split("```", 1)[0]
    documented = yaml.safe_load(block)["Functions"]
    example = yaml.safe_load(CONFIG.read_text())["Functions"]
    assert documented == example


def test_readme_bootstrap_is_the_example_file() -> None:
    block = SECTION.split("```sh\n  #!/bin/sh", 1)[1].split("  ```", 1)[0]
    documented = "#!/bin/sh" + "\n".join(line.removeprefix("  ") for line in block.split("\n"))
    assert documented == (EXAMPLES / "shell" / "bootstrap").read_text()


@pytest.mark.parametrize(("function", "answer"), [
    ("hello-shell", {"batchItemFailures": [], "bytes": 39}),
    ("hello-image", {"batchItemFailures": [], "from": "hello-image"}),
])
def test_invoke_runs_the_example(function: str, answer: dict[str, object],
                                 tmp_path: Path) -> None:
    done = invoke(CONFIG, function, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == answer
    assert "REPORT RequestId: " in done.stderr
    assert "Init Duration: " in done.stderr


def node_config(tmp_path: Path, *, node_modules: Path | None) -> Path:
    code = tmp_path / "node"
    shutil.copytree(EXAMPLES / "node", code, ignore=shutil.ignore_patterns("node_modules"))
    document = yaml.safe_load(CONFIG.read_text())
    document["Functions"]["hello-node"]["CodeUri"] = str(code)
    if node_modules is not None:
        document["Settings"] = {"NodeModulesPath": str(node_modules)}
    config = tmp_path / "runtimes.yaml"
    config.write_text(yaml.safe_dump(document))
    return config


def test_invoke_runs_the_node_example(tmp_path: Path) -> None:
    """aws-lambda-ric found where Settings.NodeModulesPath says (the tests' install)."""
    done = invoke(node_config(tmp_path, node_modules=TEST_NODE_MODULES), "hello-node", tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"batchItemFailures": [], "from": "hello-node"}
    assert "2 records" in done.stderr


def test_missing_node_client_is_a_configuration_error(tmp_path: Path) -> None:
    done = invoke(node_config(tmp_path, node_modules=None), "hello-node", tmp_path)
    assert done.returncode == 2
    assert "Functions.hello-node.Runtime: nodejs20.x runs through AWS's Node.js runtime " \
           "interface client, which is not installed" in done.stderr
    assert "npm install aws-lambda-ric" in done.stderr
