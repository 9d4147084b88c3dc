"""The README stays true: every metric the service exports is listed, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from pumphouse.telemetry.metrics import Metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def exported_names() -> set[str]:
    names = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names.add(family.name + suffix)
    return names


def test_readme_lists_every_metric_and_no_other() -> None:
    text = README.read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(pumphouse_[a-z_]+)` \|", section, flags=re.MULTILINE))
    assert listed == exported_names()


def test_readme_shows_the_two_commands_first() -> None:
    head = "\n".join(README.read_text().splitlines()[:20])
    assert "make run" in head
    assert "make test" in head


def test_readme_configuration_example_is_valid() -> None:
    from pumphouse.config import parse_config

    text = README.read_text().split("## Configuration", 1)[1]
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(example, environ={"ORDERS_API_KEY": "from-the-environment"})
    assert [m.source_type.value for m in config.EventSourceMappings] == ["sqs", "kafka"]
    variables = config.Functions["orders-consumer"].Environment
    assert variables is not None and variables.Variables["API_KEY"] == "from-the-environment"


def test_readme_metrics_table_is_the_generated_one() -> None:
    from pumphouse.metrics_table import BEGIN, END, render_table

    text = README.read_text()
    table = text.split(BEGIN + "\n", 1)[1].split(END, 1)[0]
    assert table == render_table(), (
        "README's metrics table is stale: run `python -m pumphouse.metrics_table --write README.md`"
    )


def test_label_values_are_read_from_the_calls_that_emit_them(tmp_path: Path) -> None:
    from pumphouse.metrics_table import emitted_labels

    (tmp_path / "pollers").mkdir()
    (tmp_path / "pollers" / "new_source.py").write_text(
        "def poll(metrics, code):\n"
        "    metrics.source_error('fetch', kind='throttled' if code == 'Slow' else 'error')\n"
        "    metrics.source_error('ack')\n"
        "    metrics.lease_event('handed_over')\n"
    )
    found = emitted_labels(tmp_path)
    assert found[("pumphouse_source_errors_total", "operation")] == ["ack", "fetch"]
    assert found[("pumphouse_source_errors_total", "kind")] == ["error", "throttled"]
    assert found[("pumphouse_lease_events_total", "event")] == ["handed_over"]


def test_the_emitted_outcomes_and_lease_events_are_the_codes_own() -> None:
    from pumphouse.metrics_table import render_table
    from pumphouse.runtime.result import Outcome

    table = render_table()
    row = next(line for line in table.splitlines() if "`pumphouse_invocations_total`" in line)
    assert "outcome: " + ", ".join(o.value for o in Outcome) in row
    row = next(line for line in table.splitlines() if "`pumphouse_lease_events_total`" in line)
    assert "renew_failed" in row and "renewed_failed" not in row


def _listed_values(documentation: str) -> list[str]:
    return [v.strip() for v in documentation.split("(", 1)[1].split(")", 1)[0].split(",")]


def test_label_values_named_in_the_help_are_the_code_s_real_values() -> None:
    from pumphouse.pollers.base import MappingState
    from pumphouse.pollers.positions import PositionReset
    from pumphouse.runtime.result import Outcome

    metrics = Metrics(CollectorRegistry())
    assert _listed_values(metrics.invocations._documentation) == [o.value for o in Outcome]
    assert _listed_values(metrics.position_resets._documentation) == [
        r.value for r in PositionReset
    ]
    assert _listed_values(metrics.mapping_state._documentation) == [s.value for s in MappingState]
