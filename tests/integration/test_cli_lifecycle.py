"""The CLI and the service lifecycle, as subprocesses: what an operator sees."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pumphouse.devstack import free_port, pid_alive

HANDLERS = Path(__file__).resolve().parent.parent / "handlers" / "basic"


def pumphouse(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pumphouse", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,  # type: ignore[call-overload]  # passthrough of subprocess options
    )


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pumphouse.yaml"
    path.write_text(body)
    return path


def sqs_config(tmp_path: Path, *, state_store: str, metrics_port: int, endpoint: str) -> Path:
    return write_config(
        tmp_path,
        f"""
Settings:
  StateStore: {state_store}
  MetricsAddress: 127.0.0.1:{metrics_port}
  ShutdownTimeoutSeconds: 5
  Endpoints: {{Sqs: "{endpoint}"}}
Functions:
  echo:
    Handler: echo.handler
    CodeUri: {HANDLERS}
EventSourceMappings:
  - FunctionName: echo
    EventSourceArn: arn:aws:sqs:us-east-1:000000000000:lifecycle-queue
""",
    )


def test_version() -> None:
    result = pumphouse("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("pumphouse ")


def test_validate_prints_a_summary_of_a_valid_file(tmp_path: Path) -> None:
    path = sqs_config(
        tmp_path, state_store="sqlite:///x.db", metrics_port=1, endpoint="http://127.0.0.1:1"
    )
    result = pumphouse("validate", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "echo.handler" in result.stdout
    assert "sqs" in result.stdout
    assert "valid (1 functions, 1 mappings)" in result.stdout


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Functions: [unclosed\n", "line 1"),
        ("Functions:\n  f:\n    Handler: a.b\n    Timeut: 3\n", "did you mean 'Timeout'"),
        (
            "Functions:\n  f: {Handler: a.b}\nEventSourceMappings:\n"
            "  - {FunctionName: f, EventSourceArn: 'arn:aws:sqs:us-east-1:000000000000:q', "
            "BatchSize: 20000}\n",
            "EventSourceMappings[0].BatchSize",
        ),
    ],
    ids=["yaml-syntax", "unknown-key", "out-of-range"],
)
def test_bad_configuration_is_one_clear_message_not_a_traceback(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = write_config(tmp_path, body)
    for command in ("validate", "run"):
        result = pumphouse(command, "-c", str(path))
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = pumphouse("run", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_redis_at_start_is_one_clear_message(tmp_path: Path) -> None:
    port = free_port()
    path = sqs_config(
        tmp_path,
        state_store=f"redis://127.0.0.1:{port}/0",
        metrics_port=free_port(),
        endpoint="http://127.0.0.1:1",
    )
    result = pumphouse("run", "-c", str(path))
    assert result.returncode == 3, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def _wait_http(url: str, *, status: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                last = response.status
                if response.status == status:
                    return
        except urllib.error.HTTPError as err:
            last = err.code
            if err.code == status:
                return
        except OSError as err:
            last = err
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status} (last: {last})")


def test_sigterm_to_a_running_service_exits_zero_within_the_timeout(
    tmp_path: Path, moto_server, unique_name: str
) -> None:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=moto_server.url, region_name="us-east-1")
    sqs.create_queue(QueueName="lifecycle-queue")
    metrics_port = free_port()
    path = sqs_config(
        tmp_path,
        state_store=f"sqlite:///{tmp_path}/state.db",
        metrics_port=metrics_port,
        endpoint=moto_server.url,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pumphouse", "--log-format", "json", "run", "-c", str(path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{metrics_port}/readyz", status=200, timeout=30)
        proc.send_signal(signal.SIGTERM)
        # ShutdownTimeoutSeconds is 5: communicate() raises if it is not gone well within it.
        _, stderr = proc.communicate(timeout=5 + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert '"stopped"' in stderr
    assert not pid_alive(proc.pid)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_readyz_is_503_until_the_source_answers_then_200(
    tmp_path: Path, moto_server, unique_name: str
) -> None:
    import boto3

    metrics_port = free_port()
    path = sqs_config(
        tmp_path,
        state_store=f"sqlite:///{tmp_path}/state.db",
        metrics_port=metrics_port,
        endpoint=moto_server.url,
    )
    path.write_text(path.read_text().replace("lifecycle-queue", unique_name))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pumphouse", "--log-format", "json", "run", "-c", str(path)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{metrics_port}"
    try:
        _wait_http(f"{base}/healthz", status=200, timeout=30)
        time.sleep(1.0)  # the mapping has tried its queue, which does not exist yet
        assert _status(f"{base}/readyz") == 503
        with urllib.request.urlopen(f"{base}/mappings", timeout=2) as response:
            (view,) = json.loads(response.read())["EventSourceMappings"]
        assert view["LastProcessingResult"].startswith("PROBLEM:")
        sqs = boto3.client("sqs", endpoint_url=moto_server.url, region_name="us-east-1")
        sqs.create_queue(QueueName=unique_name)
        _wait_http(f"{base}/readyz", status=200, timeout=40)  # after the restart backoff
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


def test_metrics_port_in_use_is_one_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = sqs_config(
            tmp_path,
            state_store=f"sqlite:///{tmp_path}/state.db",
            metrics_port=port,
            endpoint="http://127.0.0.1:1",
        )
        result = pumphouse("run", "-c", str(path))
    assert result.returncode == 3, result.stderr
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
