"""The documentation a user reads refers only to what is in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Names of the developers' own notes, which users never see (spelled in two parts, so
#: that this file does not name them either).
FOREIGN = ("ESM" + "-SPEC", "../" + "shared/", "/work/" + "shared")


SKIPPED_DIRS = {".git", ".venv", "node_modules", ".mypy_cache", ".ruff_cache", "build", "dist"}


def tracked_files() -> list[Path]:
    """The repository's files: git's list (tracked and not ignored), or, outside a git
    checkout, every file but those of the usual generated directories."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return [
            path
            for path in ROOT.rglob("*")
            if path.is_file()
            and not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts)
            and not any(part.endswith(".egg-info") for part in path.parts)
        ]
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_nothing_refers_to_a_document_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for word in FOREIGN:
            if word in text:
                offenders.append(f"{path.relative_to(ROOT)}: {word}")
    assert offenders == []


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_behaviour_page_is_linked_from_the_readme_and_numbers_its_sections() -> None:
    assert "](docs/behaviour.md)" in (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (\d)\. ", (ROOT / "docs" / "behaviour.md").read_text(), re.M)
    assert headings == ["1", "2", "3", "4", "5"]


def test_every_parameter_the_behaviour_page_lists_is_one_the_configuration_takes() -> None:
    from pumphouse.config import EventSourceMapping

    section = (ROOT / "docs" / "behaviour.md").read_text().split("## 1.", 1)[1].split("## 2.")[0]
    names = re.findall(r"^\| `([A-Za-z]+)", section, flags=re.M)
    assert len(names) >= 20
    assert sorted(set(names) - set(EventSourceMapping.model_fields)) == []
