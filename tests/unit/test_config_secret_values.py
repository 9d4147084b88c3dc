"""A configuration problem never echoes a value that came from ``${VAR}``: it names the
variable instead (the value may be a secret put in the wrong field)."""

from __future__ import annotations

import logging
import textwrap

import pytest

from pumphouse.config import ConfigError, parse_config
from pumphouse.config.envvars import Substitution
from pumphouse.config.messages import hide_substituted
from pumphouse.telemetry.logging import (
    LIBRARY_LOG_LEVEL_VARIABLE,
    configure_library_logging,
    parse_library_levels,
)

SECRET = "CfgErr-Secret-42"


def problems_of(text: str, environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), environ=environ)
    assert all(value not in str(caught.value) for value in environ.values())
    return caught.value.problems


def test_a_secret_in_a_number_field_is_named_not_shown() -> None:
    problems = problems_of(
        """\
        Functions:
          f:
            Handler: app.handler
            Timeout: ${KAFKA_PASSWORD}
        """,
        {"KAFKA_PASSWORD": SECRET},
    )
    assert problems == [
        "Functions.f.Timeout: expected a whole number, got the value of ${KAFKA_PASSWORD}"
    ]


def test_a_value_built_from_a_variable_hides_the_whole_value_and_its_parts() -> None:
    problems = problems_of(
        """\
        Settings:
          StateStore: redis://user:${REDIS_PASSWORD}@cache:notaport/0
          Region: ${REGION}
        """,
        {"REDIS_PASSWORD": SECRET, "REGION": "eu-west-1"},
    )
    assert len(problems) == 1
    assert problems[0].startswith("Settings.StateStore: the value built from ${REDIS_PASSWORD}")
    assert SECRET not in problems[0]


def test_a_long_secret_cut_short_in_the_message_is_still_hidden() -> None:
    long_secret = "X" * 60 + SECRET + "Y" * 40
    problems = problems_of(
        "Settings:\n  MaxConcurrency: ${TOKEN}\n", {"TOKEN": long_secret}
    )
    assert problems == [
        "Settings.MaxConcurrency: expected a whole number, got the value of ${TOKEN}"
    ]


def test_a_rule_across_fields_that_quotes_another_field_hides_it_too() -> None:
    problems = problems_of(
        """\
        Functions:
          f:
            Handler: app.handler
        EventSourceMappings:
          - FunctionName: ${FUNCTION}
            EventSourceArn: arn:aws:sqs:us-east-1:000000000000:q
        """,
        {"FUNCTION": "secret-function-name"},
    )
    assert problems == [
        "EventSourceMappings[0].FunctionName: no function the value of ${FUNCTION} in "
        "Functions (configured: f)"
    ]


def test_values_written_in_the_file_are_still_shown() -> None:
    problems = problems_of(
        """\
        Functions:
          f:
            Handler: app.handler
            Timeout: twelve
            MemorySize: ${MEMORY}
        """,
        {"MEMORY": "lots"},
    )
    assert problems == [
        "Functions.f.MemorySize: expected a whole number, got the value of ${MEMORY}",
        "Functions.f.Timeout: expected a whole number, got 'twelve'",
    ]


def test_short_values_are_hidden_only_at_their_own_path() -> None:
    sites = {("Settings", "Region"): Substitution(value="-1", variables=(("R", "-1"),))}
    problems = [
        (("Settings", "Region"), "'-1' is not a region"),
        (("Functions", "f", "Timeout"), "-1 is below the minimum 1"),
    ]
    assert hide_substituted(problems, sites) == [
        (("Settings", "Region"), "the value of ${R} is not a region"),
        (("Functions", "f", "Timeout"), "-1 is below the minimum 1"),
    ]


def test_quoted_fragments_of_a_substituted_value_are_hidden_at_its_path() -> None:
    value = "arn:aws:sqs:us-east-1:12345:q"
    sites = {("M", 0, "Arn"): Substitution(value=value, variables=(("ARN", value),))}
    problems = [(("M", 0, "Arn"), "the account must be 12 digits, got '12345'")]
    assert hide_substituted(problems, sites) == [
        (("M", 0, "Arn"), "the account must be 12 digits, got (part of the value of ${ARN})")
    ]


def test_library_log_levels_are_parsed_per_logger() -> None:
    assert parse_library_levels(None) == (logging.WARNING, {})
    assert parse_library_levels("debug") == (logging.DEBUG, {})
    assert parse_library_levels("info, aiokafka=debug,aiokafka.conn=error") == (
        logging.INFO,
        {"aiokafka": logging.DEBUG, "aiokafka.conn": logging.ERROR},
    )


def test_an_invalid_library_log_level_is_a_configuration_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        configure_library_logging(
            logging.NullHandler(), environ={LIBRARY_LOG_LEVEL_VARIABLE: "botocore=loud"}
        )
    assert caught.value.problems == [
        "PUMPHOUSE_LIBRARY_LOG_LEVEL: unknown log level 'loud'; use one of debug, info, "
        "warning, error, critical"
    ]
