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


def test_readme_lists_each_metric_with_its_real_labels_and_help() -> None:
    text = README.read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = {
        match[0]: (match[1].strip(), match[2].strip())
        for match in re.findall(
            r"^\| `(pumphouse_[a-z_]+)` \| [a-z]+ \| ([^|]*) \| (.*) \|$",
            section,
            flags=re.MULTILINE,
        )
    }
    metrics = Metrics(CollectorRegistry())
    for collector in metrics.registry._collector_to_names:
        names = metrics.registry._collector_to_names[collector]
        labels = ", ".join(getattr(collector, "_labelnames", ()))
        documentation = getattr(collector, "_documentation", "")
        listed = [rows[name] for name in names if name in rows]
        assert listed, names
        if labels:  # an Info's labels are its keys, given when it is set
            assert listed[0][0] == labels, names
        assert listed[0][1] == documentation, names


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
