"""``pumphouse dev`` runs the servers installed beside pumphouse, and says which."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pumphouse.devstack import MotoServer, free_port, installed_program

BESIDE = Path(sys.executable).parent
HANDLERS = Path(__file__).resolve().parent.parent / "handlers" / "basic"


@pytest.fixture
def decoy_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A different ``moto_server`` first on PATH, as a pyenv shim or a system copy is."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    decoy = bin_dir / "moto_server"
    decoy.write_text("#!/bin/sh\necho 'not this one' >&2\nexit 1\n")
    decoy.chmod(decoy.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return decoy


def test_the_servers_beside_the_interpreter_win_over_path(decoy_on_path: Path) -> None:
    assert installed_program("moto_server") == str(BESIDE / "moto_server")
    assert MotoServer().command()[0] == str(BESIDE / "moto_server")
    # A program that is not beside the interpreter still comes from PATH.
    assert installed_program("sh") is not None


def test_dev_names_the_servers_it_started_with_path_and_version_first(
    decoy_on_path: Path, tmp_path: Path
) -> None:
    from importlib.metadata import version

    config = tmp_path / "dev.yaml"
    config.write_text(
        f"""
Settings:
  StateStore: sqlite:///{tmp_path}/state.db
  MetricsAddress: 127.0.0.1:{free_port()}
Functions:
  echo: {{Handler: echo.handler, CodeUri: {HANDLERS}}}
EventSourceMappings:
  - FunctionName: echo
    EventSourceArn: arn:aws:sqs:us-east-1:000000000000:dev-first-lines
"""
    )
    result = subprocess.run(
        [sys.executable, "-m", "pumphouse", "dev", "-c", str(config), "--no-run"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"pumphouse dev: started moto {version('moto')} ")
    assert f"({BESIDE / 'moto_server'})" in first
    assert "not this one" not in result.stderr
    assert "moto" in json.loads(result.stdout)["servers"]
