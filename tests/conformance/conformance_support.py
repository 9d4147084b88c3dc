"""The recorded scenarios (``fixtures/*.json``) and helpers the conformance tests share.

Every scenario carries its evidence (repository, commit, file, snapshot key, validation
date), a ``setup`` saying what the recorded test did, and the ``facts`` AWS produced.
``check`` says how pumphouse reproduces it: ``shape`` / ``filter`` / ``config`` /
``response`` / ``policy`` through the pure functions, ``e2e`` on the real local servers,
``not_checked`` with a ``reason``. Not a test module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SOURCES = ("sqs", "kinesis", "dynamodb", "kafka")


@cache
def _load(source: str) -> tuple[dict[str, Any], ...]:
    document = json.loads((FIXTURES / f"{source}.json").read_text())
    return tuple(document["scenarios"])


def all_scenarios() -> Iterator[dict[str, Any]]:
    for source in SOURCES:
        yield from _load(source)


def scenario(scenario_id: str) -> dict[str, Any]:
    for item in all_scenarios():
        if item["id"] == scenario_id:
            return item
    raise KeyError(scenario_id)


def params(check: str, *, source: str | None = None, prefix: str = "") -> list[Any]:
    """pytest params (id = scenario id) of the scenarios whose ``check`` mentions
    ``check``."""
    return [
        pytest.param(item, id=item["id"])
        for item in all_scenarios()
        if check in item["check"].split("+")
        and (source is None or item["id"].startswith(source + "."))
        and item["id"].startswith(prefix)
    ]


def same_keys(recorded: list[str], ours: list[str]) -> None:
    """The key set must match; the order too, unless the recording had sorted the keys
    (several recorded tests sort them before snapshotting, which loses AWS's order)."""
    assert sorted(ours) == sorted(recorded)
    if recorded != sorted(recorded):
        assert ours == recorded
