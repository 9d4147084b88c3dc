"""docs/first-function.md, executed step by step as a reader would follow it.

The page's steps are read from the Markdown itself:

* ``<!-- file: PATH -->`` before a code block: the block is written to PATH;
* a ``sh`` block: each line runs in a shell in the project directory, with the
  virtualenv's ``bin`` first on ``PATH`` (an active virtualenv), and must exit 0;
* ``<!-- runs until Ctrl-C; the test waits for this output: TEXT -->`` before a ``sh``
  block: the command runs until TEXT appears in its output, then gets SIGINT (Ctrl-C) and
  must exit 0;
* ``<!-- chart: ... -->`` before a ``sh`` block: no container engine here, so instead of
  ``docker build``/``push`` the Dockerfile's ``COPY`` lines stand for the image, and
  ``helm install`` is the chart rendered by Helm's own library with the page's values;
  the configuration the pods would get is then validated, handler check included,
  against the code the image would hold.

The one liberty taken: ``127.0.0.1:9400`` in the configuration becomes a free port, so
that the test never collides with a service running on the machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from deploy_support import REPO, by_kind, manifests, render, rendered_config

from pumphouse.devstack import free_port

PAGE = REPO / "docs" / "first-function.md"
MARKER = re.compile(r"^<!-- (file|runs until Ctrl-C|chart)(.*?)-->$")


@dataclass(frozen=True)
class Step:
    kind: str  # file | sh | until | chart
    text: str
    argument: str = ""


def steps() -> list[Step]:
    found: list[Step] = []
    marker: tuple[str, str] | None = None
    fence: str | None = None
    body: list[str] = []
    for line in PAGE.read_text().splitlines():
        if fence is None:
            match = MARKER.match(line.strip())
            if match is not None:
                marker = (match.group(1), match.group(2).strip(" :;"))
            elif line.startswith("```"):
                fence, body = line[3:].strip(), []
            continue
        if not line.startswith("```"):
            body.append(line)
            continue
        text = "\n".join(body) + "\n"
        if marker is not None and marker[0] == "file":
            found.append(Step("file", text, marker[1]))
        elif fence == "sh":
            if marker is None:
                found.append(Step("sh", text))
            elif marker[0] == "chart":
                found.append(Step("chart", text))
            else:
                found.append(Step("until", text, marker[1].split("output:", 1)[1].strip()))
        fence, marker = None, None
    return found


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PUMPHOUSE"] = str(REPO)
    return env


def run_line(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"`{line}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


def run_until(line: str, expected: str, cwd: Path) -> str:
    process = subprocess.Popen(
        ["bash", "-c", f"exec {line}"],
        cwd=cwd,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(
        target=lambda: output.extend(iter(process.stdout.readline, "")),  # type: ignore[union-attr]  # stdout is a pipe
        daemon=True,
    )
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while expected not in "".join(output):
            assert process.poll() is None, f"`{line}` exited early:\n{''.join(output)}"
            assert time.monotonic() < deadline, f"no {expected!r} from `{line}`:\n{''.join(output)}"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, "".join(output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    return "".join(output)


def deploy(commands: str, project: Path) -> None:
    copies = re.findall(r"^COPY (\S+) (\S+)$", (project / "Dockerfile").read_text(), re.M)
    assert copies, "the Dockerfile copies no code into the image"
    helm = [line for line in commands.splitlines() if line.startswith("helm install ")]
    assert len(helm) == 1
    words = shlex.split(helm[0])
    release, chart, values_file = words[2], words[3], words[words.index("-f") + 1]
    assert Path(os.path.expandvars(chart).replace("$PUMPHOUSE", str(REPO))) == (
        REPO / "deploy" / "helm" / "pumphouse"
    )
    values = yaml.safe_load((project / values_file).read_text())
    objects = manifests(render(values, release=release))
    (deployment,) = by_kind(objects, "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{values['image']['repository']}:{values['image']['tag']}"
    assert any(
        f"registry.example.com/orders-pumphouse:{values['image']['tag']}" in line
        for line in commands.splitlines()
        if line.startswith("docker build")
    )
    config = yaml.safe_load(rendered_config(objects))
    # The image: each CodeUri is where a COPY put the project's code.
    in_image = {dest.rstrip("/"): project / src.rstrip("/") for src, dest in copies}
    for function in config["Functions"].values():
        assert function["CodeUri"] in in_image, f"{function['CodeUri']} is not in the image"
        function["CodeUri"] = str(in_image[function["CodeUri"]])
    config["Settings"]["StateStore"] = f"sqlite:///{project}/deployed-state.db"
    (project / "deployed.yaml").write_text(yaml.safe_dump(config))
    done = run_line("pumphouse validate -c deployed.yaml", project)
    assert "deployed.yaml: valid (1 functions, 1 mappings)" in done.stdout


def test_the_page_has_every_step() -> None:
    kinds = [step.kind for step in steps()]
    assert kinds.count("file") == 6
    assert kinds.count("until") == 1 and kinds.count("chart") == 1
    assert kinds[-1] == "chart"


def test_your_first_function_page_runs_as_written(tmp_path: Path) -> None:
    project = tmp_path / "orders-project"
    project.mkdir()
    port = free_port()
    outputs: list[tuple[str, str]] = []  # (stdout, stderr) of each command
    for step in steps():
        if step.kind == "file":
            path = project / step.argument
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(step.text.replace("127.0.0.1:9400", f"127.0.0.1:{port}"))
        elif step.kind == "sh":
            for line in step.text.splitlines():
                if line.strip():
                    done = run_line(line, project)
                    outputs.append((done.stdout, done.stderr))
        elif step.kind == "until":
            (line,) = [x for x in step.text.splitlines() if x.strip()]
            outputs.append((run_until(line, step.argument, project), ""))
        else:
            deploy(step.text, project)
    validate, _, invoke, (dev, _), tests = outputs
    assert "pumphouse.yaml: valid (1 functions, 1 mappings)" in validate[0]
    assert json.loads(invoke[0]) == {"batchItemFailures": []}
    assert "order o-1 is NEW" in invoke[1] and "REPORT RequestId:" in invoke[1]
    assert dev.startswith("pumphouse dev: started moto ")
    assert re.search(r"order o-\d+ is (NEW|PAID)", dev)
    assert "2 passed" in tests[0]
