"""Lint the pumphouse chart with Helm's own library, no ``helm`` binary needed.

    python deploy/helm/lint_chart.py

For the default values and every ``examples/values-*.yaml``: ``helm lint --strict``
(Helm v4's Go SDK through the PyPI package ``helm-python-sdk``), then ``helm template``
and a strict validation of every rendered object against the Kubernetes schemas (PyPI
``kubernetes-validate``). Exits 1 on the first problem. ``make lint`` runs it; the
tests in ``tests/deploy/`` check much more.
"""

from __future__ import annotations

import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parent / "pumphouse"


def main() -> int:
    value_files = [None, *sorted((CHART / "examples").glob("values-*.yaml"))]
    version = kubernetes_validate.latest_version()
    failed = False
    for path in value_files:
        name = "defaults" if path is None else path.name
        values = None if path is None else yaml.safe_load(path.read_text())
        report = helm.lint(str(CHART), values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2] + [
            {"path": "", "error": e} for e in report["errors"]
        ]
        for problem in problems:
            print(f"{name}: {problem['path']}: {problem['error']}")
        failed |= bool(problems)
        with helm.Chart.load(str(CHART)) as chart:
            rendered = chart.render(values, name="pumphouse", namespace="default")
        count = 0
        for template, text in sorted(rendered.items()):
            if template.endswith("NOTES.txt"):
                continue
            for obj in yaml.safe_load_all(text):
                if not obj or obj["apiVersion"].startswith("monitoring.coreos.com/"):
                    continue
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as err:
                    print(f"{name}: {template}: {obj['kind']}: {err.message}")
                    failed = True
                count += 1
        print(
            f"{name}: lint clean, {count} objects valid for Kubernetes {version}"
            if not problems
            else f"{name}: lint failed"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
