"""The Prometheus alert rules: ``promtool check rules``, and every alert's expression run by
``promtool test rules`` against synthetic series that must and must not trigger it.

(The live test, ``test_dashboard_live.py``, loads the same file into a real Prometheus
scraping a real pumphouse and checks the alerts that the run provokes.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    ALERTS,
    DOCS,
    PROMQL_METRIC,
    alert_rules,
    exported_metric_names,
    promtool,
    run,
)

EXPECTED_ALERTS = {
    "PumphouseIteratorAgeHigh",
    "PumphouseKafkaOffsetLagGrowing",
    "PumphouseFailedInvocationRatioHigh",
    "PumphouseDestinationDeliveryFailing",
    "PumphouseEventsDropped",
    "PumphouseMappingProblem",
    "PumphouseMappingStalled",
    "PumphouseNoPollers",
    "PumphouseThrottlingSustained",
    "PumphouseStateStoreDown",
}

M = 'function="f", source="kinesis"'


def _series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


#: alert -> (input series, expected samples of its expression at 20m). Every scenario has
#: series that must trigger the alert and series that must not.
SCENARIOS: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]]]] = {
    "PumphouseIteratorAgeHigh": (
        [
            _series("pumphouse_iterator_age_seconds", f'mapping="late", {M}, shard="a"', "600x30"),
            _series("pumphouse_iterator_age_seconds", f'mapping="late", {M}, shard="b"', "5x30"),
            _series("pumphouse_iterator_age_seconds", f'mapping="fine", {M}, shard="a"', "100x30"),
        ],
        [{"labels": f'{{mapping="late", {M}}}', "value": 600}],
    ),
    "PumphouseKafkaOffsetLagGrowing": (
        [
            _series(
                "pumphouse_kafka_offset_lag_records",
                'mapping="growing", function="f", source="kafka", partition="0"',
                "0+100x30",
            ),
            _series(
                "pumphouse_kafka_offset_lag_records",
                'mapping="shrinking", function="f", source="kafka", partition="0"',
                "5000-10x30",
            ),
            _series(
                "pumphouse_kafka_offset_lag_records",
                'mapping="small", function="f", source="kafka", partition="0"',
                "10+1x30",
            ),
        ],
        [{"labels": '{mapping="growing", function="f"}', "value": 2000}],
    ),
    "PumphouseFailedInvocationRatioHigh": (
        [
            _series("pumphouse_invocations_total", 'function="bad", outcome="success"', "0+90x30"),
            _series(
                "pumphouse_invocations_total", 'function="bad", outcome="function_error"', "0+6x30"
            ),
            _series("pumphouse_invocations_total", 'function="bad", outcome="timeout"', "0+4x30"),
            _series("pumphouse_invocations_total", 'function="good", outcome="success"', "0+99x30"),
            _series(
                "pumphouse_invocations_total", 'function="good", outcome="function_error"', "0+1x30"
            ),
        ],
        [{"labels": '{function="bad"}', "value": 0.1}],
    ),
    "PumphouseDestinationDeliveryFailing": (
        [
            _series(
                "pumphouse_destination_delivery_failures_total",
                f'mapping="broken", {M}, destination_type="sqs"',
                "0+1x30",
            ),
            _series(
                "pumphouse_destination_delivery_failures_total",
                f'mapping="recovered", {M}, destination_type="sqs"',
                "5x30",
            ),
        ],
        [{"labels": '{mapping="broken", function="f", destination_type="sqs"}', "value": 10}],
    ),
    "PumphouseEventsDropped": (
        [
            _series("pumphouse_dropped_events_total", f'mapping="lossy", {M}', "0+2x30"),
            _series("pumphouse_dropped_events_total", f'mapping="old-loss", {M}', "3x30"),
            # Started 6 minutes before the evaluation and had dropped 4 records before its
            # first scrape: no increase to see, but the loss is recent.
            _series("pumphouse_dropped_events_total", f'mapping="new-loss", {M}', "_x14 4x15"),
        ],
        [
            {"labels": f'{{mapping="lossy", {M}}}', "value": 20},
            {"labels": f'{{mapping="new-loss", {M}}}', "value": 4},
        ],
    ),
    "PumphouseMappingProblem": (
        [
            _series("pumphouse_mapping_problem", f'mapping="sick", {M}', "1x30"),
            _series("pumphouse_mapping_problem", f'mapping="healthy", {M}', "0x30"),
        ],
        [{"labels": f'{{mapping="sick", {M}}}', "value": 1}],
    ),
    "PumphouseMappingStalled": (
        [
            _series("pumphouse_mapping_stalled", f'mapping="stuck", {M}', "1x30"),
            _series("pumphouse_mapping_stalled", f'mapping="flowing", {M}', "0x30"),
            # Stalled once, briefly, long ago: recovered.
            _series("pumphouse_mapping_stalled", f'mapping="recovered", {M}', "1x3 0x27"),
        ],
        [{"labels": f'{{mapping="stuck", {M}}}', "value": 1}],
    ),
    "PumphouseNoPollers": (
        [
            _series("pumphouse_pollers_active", f'mapping="idle", {M}', "0x30"),
            _series("pumphouse_mapping_state", f'mapping="idle", {M}, state="Enabled"', "1x30"),
            _series("pumphouse_pollers_active", f'mapping="disabled", {M}', "0x30"),
            _series("pumphouse_mapping_state", f'mapping="disabled", {M}, state="Enabled"', "0x30"),
            _series(
                "pumphouse_mapping_state", f'mapping="disabled", {M}, state="Disabled"', "1x30"
            ),
            # Two replicas: one owns no shard, the other owns both.
            _series("pumphouse_pollers_active", f'mapping="split", {M}, instance="a"', "0x30"),
            _series("pumphouse_pollers_active", f'mapping="split", {M}, instance="b"', "2x30"),
            _series(
                "pumphouse_mapping_state",
                f'mapping="split", {M}, state="Enabled", instance="a"',
                "1x30",
            ),
        ],
        [{"labels": f'{{mapping="idle", {M}}}', "value": 0}],
    ),
    "PumphouseThrottlingSustained": (
        [
            _series("pumphouse_throttled_seconds_total", 'function="busy", caller="m"', "0+60x30"),
            _series("pumphouse_throttled_seconds_total", 'function="calm", caller="m"', "0+6x30"),
        ],
        [{"labels": '{function="busy"}', "value": 1}],
    ),
    "PumphouseStateStoreDown": (
        [
            _series(
                "pumphouse_state_store_up", 'store="redis", instance="a:9400", pod="a"', "0x30"
            ),
            _series(
                "pumphouse_state_store_up", 'store="redis", instance="b:9400", pod="b"', "1x30"
            ),
        ],
        [{"labels": '{instance="a:9400", pod="a", store="redis"}', "value": 0}],
    ),
}


def test_promtool_check_rules() -> None:
    result = run([promtool(), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_the_alerts_the_issue_asks_for() -> None:
    assert {rule["alert"] for rule in alert_rules()} == EXPECTED_ALERTS


def test_every_alert_has_labels_annotations_and_a_runbook() -> None:
    docs = DOCS.read_text()
    headings = {line.lstrip("#").strip() for line in docs.splitlines() if line.startswith("#")}
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook"] == f"docs/deploying.md#{name.lower()}", name
        assert name in headings, f"docs/deploying.md has no '#### {name}' runbook section"


def test_rules_use_only_metrics_pumphouse_exports() -> None:
    exported = exported_metric_names()
    used = {name for rule in alert_rules() for name in PROMQL_METRIC.findall(rule["expr"])}
    assert used, "no metric found in the rules"
    assert used <= exported, used - exported


def test_alert_expressions_on_synthetic_series(tmp_path: Path) -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(SCENARIOS) == set(rules)
    tests = []
    for name, (series, expected) in SCENARIOS.items():
        tests.append(
            {
                "name": name,
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {"expr": rules[name]["expr"], "eval_time": "20m", "exp_samples": expected}
                ],
            }
        )
    path = tmp_path / "alerts_test.yaml"
    path.write_text(
        yaml.safe_dump(
            {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    result = run([promtool(), "test", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_thresholds_are_in_the_runbook(rule: dict[str, Any]) -> None:
    """The runbook section names the alert's `for:` duration, so operators know how long
    the condition lasted before they were paged."""
    docs = DOCS.read_text()
    section = docs.split(f"#### {rule['alert']}\n", 1)[1].split("\n#", 1)[0]
    duration = rule.get("for", "0m")
    assert re.search(rf"\b{re.escape(duration)}\b", section) or duration == "0m", (
        rule["alert"],
        duration,
    )
