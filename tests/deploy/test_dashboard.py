"""The Grafana dashboard's JSON, statically: structure, metric names, variables, coverage.

(``test_dashboard_live.py`` runs every query against a live Prometheus.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from deploy_support import (
    DASHBOARD,
    PROMQL_METRIC,
    alert_rules,
    dashboard_targets,
    exported_metric_names,
)
from prometheus_client.metrics import MetricWrapperBase

from pumphouse.telemetry.metrics import Metrics

SELECTOR = re.compile(r"\b(pumphouse_[a-z0-9_]+)(\{[^}]*\})?")


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def _label_names() -> dict[str, tuple[str, ...]]:
    """Exported series name -> its labels."""
    names: dict[str, tuple[str, ...]] = {}
    for value in vars(Metrics()).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels, kind = value._name, tuple(value._labelnames), value._type
        if kind == "counter":
            names[f"{name}_total"] = labels
        elif kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[f"{name}{suffix}"] = labels
        elif kind == "info":
            names[f"{name}_info"] = labels
        else:
            names[name] = labels
    return names


def test_structure() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "pumphouse-overview"
    assert dashboard["title"] == "pumphouse"
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    # No two panels overlap on Grafana's 24-column grid.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & area, panel["title"]
        cells |= area
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_variables() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("mapping", "function"):
        assert variables[name]["type"] == "query"
        assert variables[name]["multi"] and variables[name]["includeAll"]
        assert variables[name]["allValue"] == ".*"
        assert variables[name]["query"]["query"].startswith("label_values(pumphouse_")


def test_queries_use_only_exported_metrics() -> None:
    exported = exported_metric_names()
    used = {m for _, expr in dashboard_targets(_dashboard()) for m in PROMQL_METRIC.findall(expr)}
    assert used <= exported, used - exported


def test_every_selector_follows_the_mapping_and_function_variables() -> None:
    labels = _label_names()
    for title, expr in dashboard_targets(_dashboard()):
        for metric, matchers in SELECTOR.findall(expr):
            selector = matchers or "{}"
            names = labels[metric]
            if "mapping" in names:
                assert 'mapping=~"$mapping"' in selector, (title, expr)
            if "function" in names:
                assert 'function=~"$function"' in selector, (title, expr)
            if metric.startswith("pumphouse_slots_") and 'scope="function"' in selector:
                assert 'name=~"$function"' in selector, (title, expr)


def test_every_metric_is_on_the_dashboard_or_in_an_alert() -> None:
    used = {m for _, expr in dashboard_targets(_dashboard()) for m in PROMQL_METRIC.findall(expr)}
    used |= {m for rule in alert_rules() for m in PROMQL_METRIC.findall(rule["expr"])}
    # A histogram is charted through its buckets (quantiles); _sum and _count add nothing.
    exported = {name for name in exported_metric_names() if not name.endswith(("_sum", "_count"))}
    assert exported - used == set()


def test_the_panels_the_issue_asks_for() -> None:
    by_metric: dict[str, list[str]] = {}
    for _title, expr in dashboard_targets(_dashboard()):
        for metric in PROMQL_METRIC.findall(expr):
            by_metric.setdefault(metric, []).append(expr)
    for metric in (
        "pumphouse_polled_events_total",
        "pumphouse_invoked_events_total",
        "pumphouse_failed_invoke_events_total",
        "pumphouse_dropped_events_total",
        "pumphouse_iterator_age_seconds",
        "pumphouse_kafka_offset_lag_records",
        "pumphouse_slots_in_use",
        "pumphouse_slots_limit",
        "pumphouse_throttles_total",
        "pumphouse_cold_starts_total",
        "pumphouse_destination_deliveries_total",
        "pumphouse_sqs_queue_messages",
    ):
        assert metric in by_metric, metric
    # Throughput per mapping, duration percentiles per function.
    assert any("sum by (mapping)" in e for e in by_metric["pumphouse_polled_events_total"])
    quantiles = {
        float(q)
        for e in by_metric["pumphouse_invocation_duration_seconds_bucket"]
        for q in re.findall(r"histogram_quantile\(([0-9.]+)", e)
    }
    assert quantiles == {0.5, 0.9, 0.99}
