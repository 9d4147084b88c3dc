"""``pumphouse validate`` finds what would fail at run time, and ``run`` says so at start:
a missing CodeUri, a handler module that does not import, a missing or non-callable
handler. The handler's code runs only in a short-lived worker, never in the validating
process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pumphouse.config import load_config
from pumphouse.config.preflight import preflight_problems
from pumphouse.devstack import free_port
from pumphouse.pollers.base import MappingContext
from pumphouse.runtime.preflight import runtime_family
from pumphouse.service import Service
from pumphouse.telemetry.metrics import Metrics


def pumphouse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pumphouse", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_config(tmp_path: Path, *, code_uri: str = "code", handler: str = "app.handler") -> Path:
    path = tmp_path / "pumphouse.yaml"
    path.write_text(
        f"""
Settings:
  StateStore: sqlite:///{tmp_path}/state.db
  MetricsAddress: 127.0.0.1:{free_port()}
Functions:
  orders:
    Handler: {handler}
    CodeUri: {code_uri}
EventSourceMappings:
  - FunctionName: orders
    EventSourceArn: arn:aws:sqs:us-east-1:000000000000:orders
"""
    )
    return path


def write_code(tmp_path: Path, source: str) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "app.py").write_text(source)
    return code


GOOD = "def handler(event, context):\n    return {}\n"


@pytest.mark.parametrize(
    ("source", "handler", "expected"),
    [
        ("import not_installed_anywhere\n", "app.handler",
         "Functions.orders.Handler: Runtime.ImportModuleError: Unable to import module 'app': "
         "No module named 'not_installed_anywhere'"),
        (GOOD, "app.handle",
         "Functions.orders.Handler: Runtime.HandlerNotFound: Handler 'handle' missing on "
         "module 'app'"),
        (GOOD, "missing.handler",
         "Functions.orders.Handler: Runtime.ImportModuleError: Unable to import module "
         "'missing'"),
        ("handler = 42\n", "app.handler",
         "Functions.orders.Handler: 'app.handler' is not a function (not callable)"),
        ("def handler(event, context)\n    return 1\n", "app.handler",
         "Functions.orders.Handler: Runtime.UserCodeSyntaxError"),
        ("raise RuntimeError('database not up')\n", "app.handler",
         "Functions.orders.Handler: RuntimeError: database not up"),
    ],
    ids=["import-error", "function-missing", "module-missing", "not-callable", "syntax", "raises"],
)
def test_validate_names_a_handler_that_cannot_load(
    tmp_path: Path, source: str, handler: str, expected: str
) -> None:
    write_code(tmp_path, source)
    result = pumphouse("validate", "-c", str(write_config(tmp_path, handler=handler)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "1 configuration problem(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_names_a_missing_code_directory(tmp_path: Path) -> None:
    result = pumphouse("validate", "-c", str(write_config(tmp_path, code_uri="handlers/orders")))
    assert result.returncode == 2
    assert (
        f"Functions.orders.CodeUri: directory not found: {tmp_path / 'handlers' / 'orders'}"
        in result.stderr
    )
    # Before the code is built (or for paths inside an image), the file alone is checked.
    skipped = pumphouse(
        "validate", "-c", str(write_config(tmp_path, code_uri="/var/task/orders")),
        "--skip-handler-check",
    )
    assert skipped.returncode == 0, skipped.stderr


def test_skip_handler_check_does_not_import_the_handler(tmp_path: Path) -> None:
    write_code(tmp_path, "import not_installed_anywhere\n")
    path = write_config(tmp_path)
    assert pumphouse("validate", "-c", str(path)).returncode == 2
    result = pumphouse("validate", "-c", str(path), "--skip-handler-check")
    assert result.returncode == 0, result.stderr
    assert "valid (1 functions, 1 mappings)" in result.stdout


def test_a_good_handler_is_valid_and_runs_in_a_worker_not_in_the_validator(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "imported-by"
    write_code(
        tmp_path,
        "import os\n"
        f"open({str(marker)!r}, 'a').write(f\"{{os.getpid()}} {{os.environ.get('AWS_LAMBDA_FUNCTION_NAME')}}\\n\")\n"
        + GOOD,
    )
    config = load_config(write_config(tmp_path))
    assert asyncio.run(preflight_problems(config)) == []
    ((pid, name),) = [line.split() for line in marker.read_text().splitlines()]
    assert int(pid) != os.getpid()
    assert name == "orders"  # the worker's built environment, as an invocation gets
    assert asyncio.run(preflight_problems(config, handler_check=False)) == []
    assert len(marker.read_text().splitlines()) == 1  # not imported again
    missing = load_config(write_config(tmp_path, code_uri="gone"))
    assert asyncio.run(preflight_problems(missing, handler_check=False)) == []


def test_runtime_families() -> None:
    assert runtime_family("python3.12") == "python"
    assert runtime_family("nodejs20.x") == "nodejs"
    assert runtime_family("provided.al2023") == "provided"
    assert runtime_family("java21") == "java"


class _IdlePoller:
    def __init__(self, ctx: MappingContext) -> None:
        self.ctx = ctx

    async def run(self) -> None:
        await self.ctx.stopping.wait()


async def test_run_reports_a_function_that_cannot_load_as_its_mappings_problem_at_start(
    tmp_path: Path,
) -> None:
    write_code(tmp_path, "import not_installed_anywhere\n")
    config = load_config(write_config(tmp_path))
    service = Service(
        config, metrics=Metrics(CollectorRegistry()), factory=lambda source: _IdlePoller
    )
    await service.start()
    try:
        (view,) = service.mapping_views()  # no batch has run: reported at start
        assert view["LastProcessingResult"].startswith(
            "PROBLEM: Functions.orders.Handler: Runtime.ImportModuleError"
        )
        assert "not_installed_anywhere" in view["LastError"]
    finally:
        service.stopping.set()
        await service.shutdown()


async def test_run_starts_a_good_function_without_a_problem(tmp_path: Path) -> None:
    write_code(tmp_path, GOOD)
    config = load_config(write_config(tmp_path))
    service = Service(
        config, metrics=Metrics(CollectorRegistry()), factory=lambda source: _IdlePoller
    )
    await service.start()
    try:
        (view,) = service.mapping_views()
        assert view["LastProcessingResult"] == "No records processed"
        assert view["LastError"] is None
    finally:
        service.stopping.set()
        await service.shutdown()


def test_the_example_configuration_is_valid_as_its_comment_says() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
    assert "pumphouse validate -c config/example.yaml --skip-handler-check" in example.read_text()
    result = pumphouse("validate", "-c", str(example), "--skip-handler-check")
    assert result.returncode == 0, result.stderr
