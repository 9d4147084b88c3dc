"""docs/templates.md stays true: its example template validates and converts to exactly
the configuration and the "not used" list the page shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pumphouse.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "templates.md"


def blocks(kind: str) -> list[str]:
    """The fenced blocks of language ``kind`` in the page's example section."""
    text = DOC.read_text().split("### An example", 1)[1].split("### What becomes what", 1)[0]
    fenced = re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    return [body for language, body in fenced if language == kind]


def test_the_example_converts_as_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template_text, converted = blocks("yaml")
    (not_used,) = blocks("")
    template = tmp_path / "orders" / "template.yaml"
    (template.parent / "src").mkdir(parents=True)
    (template.parent / "src" / "app.py").write_text("def handler(event, context):\n    pass\n")
    template.write_text(template_text)

    assert main(["validate", "--template", str(template)]) == 0
    assert not_used in capsys.readouterr().out

    assert main(["convert", "--template", str(template)]) == 0
    header, body = capsys.readouterr().out.split("\n", 1)
    assert header == f"# pumphouse configuration converted from {template}"
    assert body == converted
