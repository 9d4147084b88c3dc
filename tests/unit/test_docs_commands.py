"""Every ``pumphouse`` command line the documentation shows is one the CLI accepts.

Commands are collected from code spans and shell blocks of the README, ``docs/*.md``
and the comments of the example configurations; placeholders (``FILE``, ``RATE``,
``<source>``, ``a\\|b`` alternatives, ``[optional]`` parts) are filled in, and the line is
parsed by the real parser. The "Your first function" page is executed step by step in
``tests/integration/test_first_function.py``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pumphouse.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "config").glob("*.yaml")),
    *sorted((ROOT / "examples").glob("*.yaml")),
]
PLACEHOLDERS = {"FILE": "pumphouse.yaml", "RATE": "5", "N": "3", "R": "2", "...": "x.yaml",
                "<source>": "sqs", "SOURCE": "sqs", "MSGS_PER_S": "10",
                "URL": "http://127.0.0.1:1"}


COMMAND = re.compile(r"^(?:\$ )?(?:\S*/)?pumphouse (.+)$")
"""``pumphouse ...``, ``$ pumphouse ...`` or ``.venv/bin/pumphouse ...``."""


def documented_commands() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in SOURCES:
        lines: list[str] = []
        prose: list[str] = []
        fence: str | None = None  # the language of the open fenced block
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("```"):
                fence = None if fence is not None else line.strip().strip("`")
            elif fence is None:
                prose.append(line)
            elif fence in ("", "sh", "console", "bash", "text"):
                if lines and lines[-1].endswith("\\"):  # a continued shell line
                    lines[-1] = lines[-1][:-1] + line.strip()
                else:
                    lines.append(line)
        lines += re.findall(r"`([^`\n]+)`", "\n".join(prose))
        for line in lines:
            match = COMMAND.match(line.strip().removeprefix("docker run "))
            if match is None:
                continue
            command = match.group(1).split(" #", 1)[0].strip()
            if re.fullmatch(r"[a-z]+( [a-z]+)?", command):
                continue  # the command's name in prose (`pumphouse dev`)
            found.append((path.relative_to(ROOT).as_posix(), command))
    return found


def fill(command: str) -> list[str]:
    command = re.split(r" [>|] ", command, maxsplit=1)[0]  # a shell redirection or pipe
    command = re.sub(r"(\S+?)(\\\|\S+?)+(?=\s|$)", r"\1", command)  # a\|b -> a
    command = command.replace("[", "").replace("]", "")
    return [PLACEHOLDERS.get(word, word) for word in shlex.split(command)]


COMMANDS = documented_commands()


def test_the_docs_show_the_commands_people_need() -> None:
    shown = {command.split()[0] for _, command in COMMANDS}
    assert {"run", "validate", "dev", "invoke", "events", "redrive"} <= shown


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[f"{w}: {c}" for w, c in COMMANDS])
def test_documented_command_is_accepted(where: str, command: str) -> None:
    try:
        build_parser().parse_args(fill(command))
    except SystemExit as exit_:
        pytest.fail(f"{where}: `pumphouse {command}` is refused (exit {exit_.code})")


def test_the_template_placeholders_are_documented_in_help_and_readme() -> None:
    from pumphouse.cli import DEV_EPILOG

    readme = (ROOT / "README.md").read_text()
    for placeholder in ("{{seq}}", "{{choice:", "{{timestamp}}", "{{epoch_ms}}"):
        assert placeholder in DEV_EPILOG
        assert placeholder in readme
    help_text = build_parser()._subparsers._group_actions[0].choices["dev"].format_help()  # type: ignore[union-attr]  # argparse keeps subparsers there
    assert "--produce-template" in help_text and "{{choice:NEW|PAID}}" in help_text
    assert "Dev:" in help_text and "--no-run" in help_text
