"""The ``--template`` forms of ``pumphouse run | dev | validate`` and ``pumphouse convert``.

Reading and converting the template is :mod:`pumphouse.config.templates`; this module
adds what needs the network at start: Secrets Manager dynamic references (read with the
Kafka sources' secret reader, :class:`pumphouse.pollers.kafka_security.SecretResolver`)
and, for ``run``, the real stream ARN of each DynamoDB table a template names (its label
is known only to the table).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pumphouse.config import Config
from pumphouse.config.templates import Conversion, TemplateOptions, convert_template
from pumphouse.config.templates.dynamic import SecretReference, redact, substitute_references
from pumphouse.config.templates.resources import STREAM_LABEL
from pumphouse.errors import ConfigError, PumphouseError

__all__ = [
    "add_template_arguments",
    "conversion_from_args",
    "prepare_for_dev",
    "prepare_for_run",
    "relocated_lines",
]


def add_template_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--template",
        "-t",
        type=Path,
        required=required,
        metavar="FILE",
        help="a SAM or CloudFormation template (YAML or JSON)",
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template parameter values: K=V ... (also SAM's one quoted string 'K=V K2=V2' "
        "and ParameterKey=K,ParameterValue=V)",
    )
    parser.add_argument(
        "--import-value",
        action="append",
        default=[],
        metavar="EXPORT=VALUE",
        help="the value Fn::ImportValue gives for an export of another stack",
    )
    parser.add_argument(
        "--stack-name", default=None, help="AWS::StackName (default: the template's directory)"
    )
    parser.add_argument(
        "--code-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="where code paths start; code kept in S3 is found in DIR/<LogicalId> or DIR",
    )


def _pairs(items: Sequence[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    problems: list[str] = []
    for item in (word for given in items for word in shlex.split(given)):
        if item.startswith("ParameterKey="):  # the AWS CLI's form
            fields = dict(part.split("=", 1) for part in item.split(",") if "=" in part)
            if "ParameterKey" in fields and "ParameterValue" in fields:
                pairs[fields["ParameterKey"]] = fields["ParameterValue"]
                continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(f"{option} {item!r}: expected KEY=VALUE")
            continue
        pairs[key] = value
    if problems:
        raise ConfigError(problems)
    return pairs


def conversion_from_args(args: argparse.Namespace) -> Conversion:
    """The template named by ``--template`` converted with the other options."""
    options = TemplateOptions(
        parameter_overrides=_pairs(args.parameter_overrides, "--parameter-overrides"),
        import_values=_pairs(args.import_value, "--import-value"),
        stack_name=args.stack_name,
        code_root=args.code_root.absolute() if args.code_root is not None else None,
        config_path=getattr(args, "config", None),
    )
    return convert_template(args.template, options)


# ---------------------------------------------------------------------------------------
# What needs the network at start


async def prepare_for_run(conversion: Conversion, config: Config) -> Config:
    """``config`` with its dynamic references resolved and its DynamoDB stream ARNs read
    from the tables, through the configured endpoints."""
    return await _prepared(conversion, config, endpoints=None, tables=True)


async def prepare_for_dev(
    conversion: Conversion, config: Config, endpoints: Mapping[str, str]
) -> Config:
    """``config`` with its dynamic references resolved from the local servers
    (``pumphouse dev`` puts the real stream ARNs in itself)."""
    return await _prepared(conversion, config, endpoints=endpoints, tables=False)


async def _prepared(
    conversion: Conversion,
    config: Config,
    *,
    endpoints: Mapping[str, str] | None,
    tables: bool,
) -> Config:
    from pumphouse.aws import AwsClients

    references = conversion.secret_references()
    needs_tables = tables and any(
        str(m.EventSourceArn or "").endswith(f"/stream/{STREAM_LABEL}")
        for m in config.EventSourceMappings
    )
    if not references and not needs_tables:
        return config
    settings = config.Settings
    clients = AwsClients(
        region=settings.Region,
        endpoints=dict(endpoints) if endpoints is not None else settings.endpoint_urls(),
    )
    try:
        data, secrets = await substitute_references(
            conversion.data, lambda reference: _read_secret(reference, clients)
        )
        if needs_tables:
            await _read_stream_arns(data, clients)
    finally:
        await clients.close()
    from pumphouse.config.loader import parse_data

    try:
        return parse_data(
            data,
            source=conversion.source,
            base_dir=conversion.template_path.parent,
            relocate=conversion.relocate,
        )
    except ConfigError as err:  # never show a resolved secret
        raise ConfigError(
            [redact(problem, secrets) for problem in err.problems], source=err.source
        ) from None


async def _read_secret(reference: SecretReference, clients: Any) -> str:
    import orjson

    from pumphouse.config import envvars
    from pumphouse.pollers.kafka_security import resolver

    secret = await resolver().secrets_manager(
        reference.secret_id,
        aws=clients,
        version_stage=reference.version_stage,
        version_id=reference.version_id,
        what="dynamic reference to secret",
    )
    text = secret.reveal()
    if reference.json_key is not None:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict) or reference.json_key not in document:
            raise PumphouseError(
                f"dynamic reference to secret {reference.secret_id}: the secret has no JSON "
                f"key {reference.json_key!r}"
            )
        text = str(document[reference.json_key])
    return envvars.escape(text)  # literal: the configuration's ${VAR} pass must keep it


async def _read_stream_arns(data: dict[str, Any], clients: Any) -> None:
    from pumphouse.aws import error_code

    ddb = await clients.client("dynamodb")
    for mapping in data.get("EventSourceMappings", []):
        arn = mapping.get("EventSourceArn") if isinstance(mapping, dict) else None
        if not isinstance(arn, str) or not arn.endswith(f"/stream/{STREAM_LABEL}"):
            continue
        table = arn.split(":table/", 1)[1].split("/stream/", 1)[0]
        try:
            described = await ddb.describe_table(TableName=table)
        except Exception as err:
            code = error_code(err) or type(err).__name__
            raise PumphouseError(
                f"DynamoDB table {table}: DescribeTable failed ({code}); its stream ARN is "
                "needed to read it"
            ) from None
        latest = described["Table"].get("LatestStreamArn")
        if not latest:
            raise PumphouseError(f"DynamoDB table {table} has no stream")
        mapping["EventSourceArn"] = str(latest)


def relocated_lines(conversion: Conversion, lines: Sequence[str]) -> list[str]:
    """Problem lines ``Functions.<name>.<Field>: message`` (the run-time checks of
    ``validate``) at the template path of the field."""
    functions = conversion.data.get("Functions", {})
    return [_relocated_line(conversion, functions, line) for line in lines]


def _relocated_line(conversion: Conversion, functions: Mapping[str, Any], line: str) -> str:
    from pumphouse.config.validation import format_path

    for name in functions:
        prefix = f"Functions.{name}."
        field, sep, message = line.removeprefix(prefix).partition(": ")
        if line.startswith(prefix) and sep and field.isidentifier():
            return f"{format_path(conversion.relocate(('Functions', name, field)))}: {message}"
    return line
