"""docs/conformance.md lists every recorded scenario of the fixtures, with its
validation date, and every scenario is reproduced by some test or says why not."""

from __future__ import annotations

from pathlib import Path

from conformance_support import all_scenarios

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"
CHECKS = {"shape", "filter", "config", "response", "policy", "destination", "e2e"}


def test_every_scenario_is_in_the_doc_with_its_evidence() -> None:
    text = DOC.read_text()
    for item in all_scenarios():
        line = next((ln for ln in text.splitlines() if ln.startswith(f"| `{item['id']}` |")), None)
        assert line is not None, f"{item['id']} is not in docs/conformance.md"
        validated = item["evidence"].get("validated")
        if validated:
            assert validated.split("T")[0].split(" ")[0] in line, item["id"]


def test_every_scenario_is_checked_or_says_why_not() -> None:
    checked = 0
    for item in all_scenarios():
        if item["check"] == "not_checked":
            assert item["reason"], item["id"]
            continue
        assert set(item["check"].split("+")) <= CHECKS, item["id"]
        checked += 1
    assert checked >= 40
