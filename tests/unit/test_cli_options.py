"""Global options are accepted before and after the command."""

from __future__ import annotations

import pytest

from pumphouse.cli import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-format", "json", "--log-level", "debug", "validate", "-c", "f.yaml"],
        ["validate", "-c", "f.yaml", "--log-format", "json", "--log-level", "debug"],
        ["--log-format", "json", "validate", "--log-level", "debug", "-c", "f.yaml"],
    ],
    ids=["before", "after", "mixed"],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.log_format, args.log_level) == ("json", "debug")


def test_global_options_after_a_nested_command() -> None:
    args = build_parser().parse_args(["events", "generate", "sqs", "--log-level", "warning"])
    assert args.log_level == "warning" and args.log_format is None


def test_absent_global_options_stay_unset() -> None:
    args = build_parser().parse_args(["run", "-c", "f.yaml"])
    assert (args.log_format, args.log_level) == (None, None)
