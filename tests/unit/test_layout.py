"""The packages depend on each other in one direction only: the pattern language stands
alone, the configuration sits above it and below the pollers, and the operator tools
do not reach into the service's pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pumphouse"


def imported_packages(part: str) -> dict[str, set[str]]:
    """For each module under ``pumphouse/<part>``, the ``pumphouse`` subpackages and
    top-level modules it imports (at any depth: lazy and TYPE_CHECKING imports count)."""
    found: dict[str, set[str]] = {}
    for path in sorted((PACKAGE / part).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == "pumphouse" and len(parts) > 1:
                    names.add(parts[1])
        found[str(path.relative_to(PACKAGE))] = names
    assert found, f"no modules under pumphouse/{part}"
    return found


@pytest.mark.parametrize(
    ("part", "allowed"),
    [
        ("patterns", {"patterns"}),
        # runtime: Function.to_spec builds the runtime's FunctionSpec (a lazy import), and
        # config.preflight (validate's handler check) starts a short-lived runtime with
        # its own metrics registry (telemetry).
        ("config", {"config", "patterns", "errors", "runtime", "telemetry"}),
        ("tools", {"tools", "config", "aws", "errors"}),
    ],
)
def test_imports_point_down_only(part: str, allowed: set[str]) -> None:
    upward = {
        module: sorted(names - allowed)
        for module, names in imported_packages(part).items()
        if names - allowed
    }
    assert upward == {}
