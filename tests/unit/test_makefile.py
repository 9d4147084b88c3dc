"""Each make target installs what its own command needs, and no more."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dry_run(target: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed (the suite runs under `make test`)")
    # -n: print the recipes, run nothing; -B: as on a fresh clone (nothing up to date).
    done = subprocess.run(
        [make, "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_make_run_installs_neither_prometheus_nor_redis() -> None:
    recipe = dry_run("run")
    assert "prometheus" not in recipe
    assert "redis-server" not in recipe
    assert "nodejs" in recipe  # kinesis-mock runs on node
    assert "pumphouse dev -c examples/quickstart.yaml" in recipe


def test_lint_installs_promtool_and_test_installs_the_servers() -> None:
    assert "prometheus" in dry_run("lint-deploy")
    assert "redis-server" in dry_run("system-deps")
