"""Loading configuration files: YAML, ${VAR} substitution, how problems are reported,
the committed JSON schema and the example configuration."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pumphouse.config import ConfigError, load_config, parse_config
from pumphouse.config.envvars import escape, substitute
from pumphouse.config.schema import render_schema

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
Functions:
  orders:
    Handler: app.handler
EventSourceMappings:
  - FunctionName: orders
    EventSourceArn: arn:aws:sqs:us-east-1:000000000000:orders
"""


def error_of(text: str, *, source: str = "<string>") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), environ={}, source=source)
    return info.value


# ---------------------------------------------------------------------------------------
# Files and YAML


def test_load_config_from_file_resolves_code_uri_against_its_directory(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "pumphouse.yaml"
    path.write_text(
        MINIMAL.replace("Handler: app.handler", "Handler: app.handler\n    CodeUri: ../src")
    )
    config = load_config(path, environ={})
    assert config.Functions["orders"].code_path == (tmp_path / "src").resolve()
    assert config.base_dir == folder.resolve()
    assert config.resolve_path("certs/ca.pem") == (folder / "certs" / "ca.pem").resolve()
    assert config.resolve_path("/etc/ca.pem") == Path("/etc/ca.pem")


def test_missing_file_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"file not found: {path}"]
    assert str(info.value) == f"1 configuration problem(s) in {path}:\n  - file not found: {path}"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.problems == [f"{tmp_path} is a directory, not a file"]


def test_yaml_syntax_error_names_line_and_column() -> None:
    err = error_of(
        """\
        Functions:
          orders:
            Handler: app.handler
           Timeout: 3
        """,
        source="pumphouse.yaml",
    )
    assert str(err) == (
        "1 configuration problem(s) in pumphouse.yaml:\n"
        "  - line 4, column 4: invalid YAML: expected <block end>, but found '<block mapping "
        "start>' (while parsing a block mapping at line 2)"
    )


def test_yaml_tab_is_reported_with_position() -> None:
    err = error_of("Functions:\n\torders: {}\n")
    assert len(err.problems) == 1
    assert err.problems[0].startswith("line 2, column 1: invalid YAML: found character '\\t'")


def test_duplicate_key_is_an_error() -> None:
    err = error_of(
        """\
        Functions:
          orders: {Handler: a.b}
          orders: {Handler: c.d}
        """
    )
    assert err.problems == [
        "line 3, column 3: invalid YAML: duplicate key 'orders' (first given at line 2)"
    ]


def test_yaml_merge_keys_are_not_duplicates() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            Functions:
              base: &base {Handler: app.handler, Timeout: 10}
              other:
                <<: *base
                Timeout: 20
            """
        ),
        environ={},
    )
    assert config.Functions["other"].Timeout == 20


@pytest.mark.parametrize(
    "text", ["", "# nothing\n", "Functions:\nEventSourceMappings:\nSettings:\n"]
)
def test_empty_configuration_is_valid(text: str) -> None:
    config = parse_config(text, environ={})
    assert config.Functions == {}
    assert config.EventSourceMappings == []


def test_top_level_must_be_a_mapping() -> None:
    assert error_of("- a\n- b\n").problems == [
        "the file must be a mapping with the keys Settings, Functions and "
        "EventSourceMappings, not a list"
    ]


def test_sections_of_the_wrong_shape() -> None:
    err = error_of(
        """\
        Functions: [a, b]
        EventSourceMappings: {a: 1}
        """
    )
    assert err.problems == [
        "Functions: expected a mapping of function names to functions, got a list",
        "EventSourceMappings: expected a list of mappings, got a mapping",
    ]


# ---------------------------------------------------------------------------------------
# Unknown keys


def test_unknown_key_with_hint_is_one_clear_message() -> None:
    err = error_of(
        MINIMAL + "    BachSize: 5\n",
        source="pumphouse.yaml",
    )
    assert str(err) == (
        "1 configuration problem(s) in pumphouse.yaml:\n"
        "  - EventSourceMappings[0].BachSize: unknown key (did you mean 'BatchSize'?)"
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("batch_size", "unknown key (did you mean 'BatchSize'?)"),
        ("batchsize", "unknown key (did you mean 'BatchSize'?)"),
        ("Nonsense", "unknown key"),
    ],
)
def test_unknown_key_hints(key: str, expected: str) -> None:
    assert error_of(MINIMAL + f"    {key}: 5\n").problems == [
        f"EventSourceMappings[0].{key}: {expected}"
    ]


def test_unknown_top_level_and_settings_keys() -> None:
    err = error_of("Setting: {}\nSettings: {Regoin: eu-west-1}\n")
    assert err.problems == [
        "Setting: unknown key (did you mean 'Settings'?)",
        "Settings.Regoin: unknown key (did you mean 'Region'?)",
    ]


def test_misspelt_required_key_is_reported_once() -> None:
    err = error_of("Functions:\n  orders: {Handlr: app.handler}\n")
    assert err.problems == ["Functions.orders.Handlr: unknown key (did you mean 'Handler'?)"]


def test_small_models_list_their_keys() -> None:
    err = error_of(MINIMAL + "    ScalingConfig: {Max: 5}\n")
    assert err.problems == [
        "EventSourceMappings[0].ScalingConfig.Max: unknown key (expected one of: "
        "MaximumConcurrency)"
    ]


# ---------------------------------------------------------------------------------------
# Many problems at once


def test_every_problem_is_reported_in_file_order() -> None:
    err = error_of(
        """\
        Settings:
          MaxConcurrency: 0
        Functions:
          orders:
            Handler: app.handler
            Timeout: 1200
          payments:
            Handler: payments
        EventSourceMappings:
          - FunctionName: orders
            EventSourceArn: arn:aws:sqs:us-east-1:000000000000:orders
            BatchSize: 20000
            BachSize: 3
            StartingPosition: LATEST
          - FunctionName: orders
            EventSourceArn: arn:aws:kinesis:us-east-1:000000000000:stream/clicks
            ScalingConfig: {MaximumConcurrency: 5}
          - FunctionName: missing
            EventSourceArn: arn:aws:kafka:us-east-1:000000000000:cluster/c/1
            StartingPosition: LATEST
        """
    )
    assert err.problems == [
        "Settings.MaxConcurrency: 0 is below the minimum 1",
        "Functions.orders.Timeout: 1200 is above the maximum 900",
        "Functions.payments.Handler: 'payments' is not a handler: use the Lambda form "
        "module.function (e.g. app.handler or package/module.handler)",
        "EventSourceMappings[0].BatchSize: 20000 is above the maximum 10000",
        "EventSourceMappings[0].BachSize: unknown key (did you mean 'BatchSize'?)",
        "EventSourceMappings[0].StartingPosition: not supported for SQS (a queue has no "
        "position to start from)",
        "EventSourceMappings[1].StartingPosition: required for Kinesis: TRIM_HORIZON, LATEST "
        "or AT_TIMESTAMP",
        "EventSourceMappings[1].ScalingConfig: only supported for SQS, not Kinesis",
        "EventSourceMappings[2].Topics: required for Kafka: exactly one topic",
        "EventSourceMappings[2].FunctionName: no function 'missing' in Functions "
        "(configured: orders, payments)",
    ]
    assert str(err).startswith("10 configuration problem(s) in <string>:\n  - Settings.")


def test_a_broken_mapping_does_not_hide_the_next_one() -> None:
    err = error_of(
        MINIMAL
        + """\
          - "not a mapping"
          - FunctionName: orders
            EventSourceArn: arn:aws:sqs:us-east-1:000000000000:other
            BatchSize: 11
        """.replace("          ", "  ")
    )
    assert err.problems == [
        "EventSourceMappings[1]: expected a mapping, got 'not a mapping'",
        "EventSourceMappings[2].MaximumBatchingWindowInSeconds: Maximum batch window in "
        "seconds must be greater than 0 if maximum batch size is greater than 10",
    ]


# ---------------------------------------------------------------------------------------
# ${VAR} substitution


def test_environment_variables_are_substituted() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            Settings:
              StateStore: redis://${REDIS_HOST}:${REDIS_PORT:-6379}/0
              MaxConcurrency: ${CONCURRENCY}
            Functions:
              orders:
                Handler: app.handler
                Environment:
                  Variables:
                    TOKEN: ${TOKEN}
                    LITERAL: $${NOT_A_VAR}
                    EMPTY_DEFAULT: ${EMPTY:-fallback}
            """
        ),
        environ={"REDIS_HOST": "cache", "CONCURRENCY": "8", "TOKEN": "s3cr3t", "EMPTY": ""},
    )
    assert config.Settings.StateStore == "redis://cache:6379/0"
    assert config.Settings.MaxConcurrency == 8
    assert dict(config.Functions["orders"].Environment.Variables) == {
        "TOKEN": "s3cr3t",
        "LITERAL": "${NOT_A_VAR}",
        "EMPTY_DEFAULT": "fallback",
    }
    # Secrets come back out escaped, never as a reference: to_yaml holds the value.
    assert "LITERAL: $${NOT_A_VAR}" in config.to_yaml()


def test_undefined_environment_variable_is_one_clear_message() -> None:
    err = error_of(
        """\
        Settings:
          MaxConcurrency: ${CONCURRENCY}
        """,
        source="pumphouse.yaml",
    )
    assert str(err) == (
        "1 configuration problem(s) in pumphouse.yaml:\n"
        "  - Settings.MaxConcurrency: environment variable CONCURRENCY is not set (set it, or "
        "give a default: ${CONCURRENCY:-default})"
    )


def test_load_config_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("Settings:\n  Region: ${PUMPHOUSE_TEST_REGION}\n")
    monkeypatch.setenv("PUMPHOUSE_TEST_REGION", "eu-west-1")
    assert load_config(path).Settings.Region == "eu-west-1"


def test_malformed_reference() -> None:
    assert error_of("Settings:\n  Region: ${1REGION}\n").problems == [
        "Settings.Region: malformed reference '${1REGION}': use ${NAME} or ${NAME:-default} "
        "(write $${ for a literal ${)"
    ]


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("plain", {}, "plain"),
        ("${A}", {"A": "1"}, "1"),
        ("x${A}y${B:-2}z", {"A": "1"}, "x1y2z"),
        ("${A:-}", {}, ""),
        ("$${A}", {"A": "1"}, "${A}"),
        ("$$${A}", {"A": "1"}, "$${A}"),
        ("$A and $", {"A": "1"}, "$A and $"),
        ("${A:-a:b/c}", {}, "a:b/c"),
    ],
)
def test_substitute(text: str, env: dict[str, str], expected: str) -> None:
    assert substitute(text, env) == (expected, [])


@pytest.mark.parametrize("text", ["", "${", "$${", "$${x}", "a$b${c}$$", "${A:-d}"])
def test_escape_is_undone_by_substitute(text: str) -> None:
    assert substitute(escape(text), {"A": "no", "c": "no"}) == (text, [])


# ---------------------------------------------------------------------------------------
# Committed files


def test_committed_schema_is_up_to_date() -> None:
    committed = (REPO / "config" / "pumphouse.schema.json").read_text(encoding="utf-8")
    assert committed == render_schema(), (
        "config/pumphouse.schema.json is stale: run "
        "python -m pumphouse.config.schema > config/pumphouse.schema.json"
    )
    schema = json.loads(committed)
    assert set(schema["properties"]) == {"Settings", "Functions", "EventSourceMappings", "Dev"}
    mapping = schema["$defs"]["EventSourceMapping"]
    assert mapping["additionalProperties"] is False
    assert "BatchSize" in mapping["properties"]


def test_schema_module_prints_the_schema() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pumphouse.config.schema"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == render_schema()


def test_example_configuration_loads_and_covers_every_source() -> None:
    config = load_config(REPO / "config" / "example.yaml", environ={})
    kinds = {m.source_type.value for m in config.EventSourceMappings}
    assert kinds == {"sqs", "kinesis", "dynamodb", "kafka"}
    assert any(m.is_fifo for m in config.EventSourceMappings)
    assert any(m.is_msk for m in config.EventSourceMappings)
    assert any(m.is_self_managed_kafka for m in config.EventSourceMappings)
    assert parse_config(config.to_yaml(), environ={}, base_dir=config.base_dir) == config
