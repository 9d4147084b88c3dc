"""``pumphouse dev`` with handlers in other languages: a custom runtime and an
``ImageConfig`` function consume the local SQS queue ``--produce`` fills."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_devstack import _LogReader

from pumphouse.devstack import free_port, pid_alive

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "runtimes"


def test_dev_runs_runtime_api_functions(tmp_path: Path) -> None:
    config = tmp_path / "dev.yaml"
    config.write_text(f"""
Settings:
  StateStore: sqlite:///{tmp_path}/state.db
  MetricsAddress: 127.0.0.1:{free_port()}
  ShutdownTimeoutSeconds: 5
  LogLevel: DEBUG
Functions:
  shell:
    Runtime: provided.al2023
    Handler: function.handler
    CodeUri: {EXAMPLES / "shell"}
  image:
    CodeUri: {EXAMPLES / "image"}
    ImageConfig:
      EntryPoint: [{sys.executable}, -m, awslambdaric]
      Command: [app.handler]
EventSourceMappings:
  - FunctionName: shell
    EventSourceArn: arn:aws:sqs:us-east-1:000000000000:dev-shell
  - FunctionName: image
    EventSourceArn: arn:aws:sqs:us-east-1:000000000000:dev-image
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pumphouse", "--log-format", "json", "dev", "-c", str(config),
         "--produce", "5"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    reader = _LogReader(proc.stderr)
    reader.start()

    def report_of(function: str) -> bool:
        return any(e.get("event") == "REPORT" and e.get("function") == function
                   and e.get("outcome") == "success" for e in reader.events)

    try:
        reader.wait_for("resources ready", timeout=60)
        deadline = time.monotonic() + 30
        while not (report_of("shell") and report_of("image")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert report_of("shell") and report_of("image"), "".join(reader.lines[-40:])
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    assert proc.returncode == 0, "".join(reader.lines[-40:])
    workers = [e["pid"] for e in reader.events if e.get("event") == "worker started"]
    assert workers
    assert [pid for pid in workers if pid_alive(pid)] == []
    logged = [e for e in reader.events if e.get("function") == "shell" and e.get("stream")]
    assert any("handling" in e["event"] for e in logged), "the bootstrap's output is logged"
