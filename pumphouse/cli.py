"""``pumphouse`` command line.

Exit status
-----------
==== ==========================================================================
0    success (``run``/``dev``: clean shutdown after SIGTERM/SIGINT)
1    an unexpected error (a bug: the traceback is logged)
2    invalid configuration or usage (every problem is listed by its path)
3    could not start: the state store or a local server is unreachable
130  a second SIGTERM/SIGINT cut the shutdown short
==== ==========================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pumphouse import __version__
from pumphouse.errors import ConfigError, PumphouseError, StateStoreError
from pumphouse.telemetry.logging import configure_logging

if TYPE_CHECKING:
    from pumphouse.config import Config
    from pumphouse.config.templates import Conversion

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3

SOURCES = ("sqs", "kinesis", "dynamodb", "kafka")


def _add_config(parser: argparse.ArgumentParser, *, template: bool = False) -> None:
    parser.add_argument(
        "-c",
        "--config",
        required=not template,
        type=Path,
        metavar="FILE",
        help="configuration file (YAML); with --template: Settings, and functions and "
        "mappings to add or override" if template else "configuration file (YAML)",
    )
    if template:
        from pumphouse.template_cli import add_template_arguments

        add_template_arguments(parser)


DEV_EPILOG = """\
sample records (--produce RATE):
  without a template, an order: {"orderId": "order-000007", "customer": "customer-0",
  "amount": 48.33, "status": "PAID", "createdAt": 1767225600.0}.
  --produce-template FILE.json sends your own JSON document instead, with these
  placeholders inside its strings:
    {{seq}}                  the record's sequence number 0, 1, 2, ... (a number when it
                             is the whole string)
    {{choice:NEW|PAID}}      one of the values, picked at random per record
    {{timestamp}}            the time of sending, ISO-8601 UTC
    {{epoch_ms}}             the time of sending, epoch milliseconds (a number when it is
                             the whole string)
  e.g. {"orderId": "order-{{seq}}", "status": "{{choice:NEW|PAID}}", "at": "{{timestamp}}"}
  Kinesis partition keys, Kafka keys and FIFO message groups are key-<seq mod 8>; a
  DynamoDB item is keyed id (the template's own id, else item-<seq>).

the Dev: section of the configuration (optional) names resources to create beyond
those the mappings and destinations name:
  Dev:
    Queues:                       # SQS queue -> attributes
      orders-dlq: {}
      orders: {RedrivePolicy: {deadLetterTargetArn: "arn:...:orders-dlq", maxReceiveCount: 3}}
    Streams: {clicks: 2}          # Kinesis stream -> shard count
    Topics: {events: 3}           # Kafka topic -> partition count
--no-run starts the servers and creates the resources, prints their ports and the
environment to use them (JSON), and exits.
"""


def _add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--log-format",
        choices=("json", "console", "auto"),
        default=default,
        help="log output (default: Settings.LogFormat, else console on a terminal, JSON otherwise)",
    )
    parser.add_argument("--log-level", default=default, help="debug, info, warning, error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pumphouse",
        description="Self-hosted AWS Lambda event source mappings.",
    )
    parser.add_argument("--version", action="version", version=f"pumphouse {__version__}")
    _add_global_options(parser, default=None)
    # The global options are accepted after the command too (`pumphouse run -c f
    # --log-level debug`); SUPPRESS keeps an absent one from hiding one given before.
    global_options = argparse.ArgumentParser(add_help=False)
    _add_global_options(global_options, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_parser_with(global_options)
    )

    run = commands.add_parser("run", help="run the service")
    _add_config(run, template=True)

    validate = commands.add_parser(
        "validate",
        help="check a configuration, and that each function's code loads, and summarise it",
    )
    _add_config(validate, template=True)
    validate.add_argument(
        "--skip-handler-check",
        action="store_true",
        help="check the configuration file only, not the code it names (CodeUri, handler): "
        "for CI before the code is built, or a configuration naming paths in an image",
    )

    convert = commands.add_parser(
        "convert", help="print the configuration a SAM or CloudFormation template gives"
    )
    _add_config(convert, template=True)

    dev = commands.add_parser(
        "dev",
        help="start local servers and the resources a configuration names, then run",
        description="Start local servers (moto, kinesis-mock, tansu, Redis when the state "
        "store is a local redis:// URL), create the queues, streams, tables and topics the "
        "configuration names (and those of its Dev: section), then run the service.",
        epilog=DEV_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config(dev, template=True)
    dev.add_argument(
        "--endpoints-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the started servers' endpoints here as JSON once they answer",
    )
    dev.add_argument(
        "--produce",
        type=float,
        default=None,
        metavar="RATE",
        help="also send RATE sample records per second to every source (0: none; "
        "1 when only --produce-template is given)",
    )
    dev.add_argument(
        "--produce-template",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="the records --produce sends: a JSON document with placeholders (below)",
    )
    dev.add_argument(
        "--no-run", action="store_true", help="start servers and create resources only"
    )

    invoke = commands.add_parser("invoke", help="invoke a function once, like `sam local invoke`")
    _add_config(invoke, template=True)
    invoke.add_argument("function", help="function name from Functions:")
    invoke.add_argument(
        "--event", "-e", default=None, help="event JSON file ('-' for stdin; default: {})"
    )

    events = commands.add_parser("events", help="sample events")
    events_commands = events.add_subparsers(dest="events_command", required=True)
    generate = events_commands.add_parser("generate", help="print a sample event of a source")
    generate.add_argument("source", choices=SOURCES)
    generate.add_argument("--records", type=int, default=1, help="records in the event")
    generate.add_argument(
        "--body",
        metavar="JSON|@FILE",
        help="each record's body: the SQS body, Kinesis data or Kafka value as written, or "
        "the DynamoDB new image (a JSON object); @FILE reads it from a file",
    )
    generate.add_argument("--key", help="kafka: the record key")
    generate.add_argument(
        "--header", action="append", metavar="NAME=VALUE", help="kafka: a header (repeatable)"
    )
    generate.add_argument("--partition-key", help="kinesis: the partition key")
    generate.add_argument(
        "--old-image",
        metavar="JSON|@FILE",
        help="dynamodb: the old image (with --body: a MODIFY; alone: a REMOVE)",
    )

    redrive = commands.add_parser(
        "redrive", help="move messages from an SQS dead-letter queue back to a queue"
    )
    redrive.add_argument("--from", dest="source_arn", required=True, metavar="DLQ_ARN")
    redrive.add_argument("--to", dest="target_arn", required=True, metavar="QUEUE_ARN")
    redrive.add_argument("--max", dest="max_messages", type=int, default=None, metavar="N")
    redrive.add_argument(
        "--rate", type=float, default=None, metavar="R", help="messages per second"
    )
    redrive.add_argument("--dry-run", action="store_true", help="count, move nothing")
    redrive.add_argument("--region", default=None)
    redrive.add_argument(
        "--endpoint-url", default=None, help="SQS endpoint (default: SDK resolution)"
    )
    return parser


def _parser_with(parent: argparse.ArgumentParser) -> type[argparse.ArgumentParser]:
    """An ArgumentParser class whose instances (the subcommands, and theirs) all take
    ``parent``'s options."""

    class SubcommandParser(argparse.ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parents"] = [*kwargs.get("parents", []), parent]
            super().__init__(*args, **kwargs)

    return SubcommandParser


def _load(path: Path) -> Config:
    from pumphouse.config import load_config

    return load_config(path)


def _load_args(args: argparse.Namespace) -> tuple[Config, Conversion | None]:
    """The configuration of ``-c`` and/or ``--template`` (with its conversion)."""
    if getattr(args, "template", None) is None:
        if args.config is None:
            raise ConfigError(["give a configuration (-c FILE) or a template (--template FILE)"])
        return _load(args.config), None
    from pumphouse.template_cli import conversion_from_args

    conversion = conversion_from_args(args)
    return conversion.validate(), conversion


def _print_problems(err: ConfigError) -> None:
    print(f"pumphouse: {err}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from pumphouse.config.preflight import preflight_problems

    config, conversion = _load_args(args)
    problems = asyncio.run(
        preflight_problems(config, handler_check=not args.skip_handler_check)
    )
    if problems:
        if conversion is not None:
            from pumphouse.template_cli import relocated_lines

            raise ConfigError(relocated_lines(conversion, problems), source=conversion.source)
        raise ConfigError(problems, source=str(args.config))
    rows: list[tuple[str, ...]] = [("FUNCTION", "HANDLER", "MEMORY", "TIMEOUT", "RESERVED")]
    for name, fn in config.Functions.items():
        reserved = fn.ReservedConcurrentExecutions
        rows.append(
            (
                name,
                fn.Handler or "-",
                f"{fn.MemorySize} MB",
                f"{fn.Timeout} s",
                "-" if reserved is None else str(reserved),
            )
        )
    _print_table(rows)
    print()
    rows = [("MAPPING", "UUID", "SOURCE", "FUNCTION", "BATCH", "WINDOW", "ENABLED")]
    for mapping in config.EventSourceMappings:
        rows.append(
            (
                mapping.label,
                mapping.uuid,
                mapping.source_type.value,
                mapping.function_name,
                str(mapping.batch_size),
                f"{mapping.batching_window:g} s",
                "yes" if mapping.Enabled else "no",
            )
        )
    _print_table(rows)
    if conversion is not None and conversion.not_used:
        print("\nnot used by pumphouse:")
        for item in conversion.not_used:
            print(f"  {item}")
    source = conversion.source if conversion is not None else args.config
    print(
        f"\n{source}: valid ({len(config.Functions)} functions, "
        f"{len(config.EventSourceMappings)} mappings)"
    )
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    if args.template is None:
        raise ConfigError(["convert needs a template: --template FILE"])
    config, conversion = _load_args(args)
    assert conversion is not None
    header = f"# pumphouse configuration converted from {conversion.template_path}"
    sys.stdout.write(f"{header}\n{config.to_yaml()}")
    if conversion.secret_references():
        print(
            "pumphouse: the {{resolve:secretsmanager:...}} references are written as they "
            "are: `run --template` and `dev --template` resolve them, a configuration file "
            "does not",
            file=sys.stderr,
        )
    return EXIT_OK


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def cmd_run(args: argparse.Namespace) -> int:
    from pumphouse.service import Service

    config, conversion = _load_args(args)
    _configure_logging(args, config)
    if conversion is not None:
        from pumphouse.template_cli import prepare_for_run

        config = asyncio.run(prepare_for_run(conversion, config))
    return asyncio.run(Service(config).run())


def cmd_dev(args: argparse.Namespace) -> int:
    from pumphouse.devstack import run_dev
    from pumphouse.samples import RecordTemplate, TemplateError

    config, conversion = _load_args(args)
    template = None
    if args.produce_template is not None:
        try:
            template = RecordTemplate.load(args.produce_template)
        except TemplateError as err:
            print(f"pumphouse: {err}", file=sys.stderr)
            return EXIT_CONFIG
    rate = args.produce if args.produce is not None else (1.0 if template else 0.0)
    _configure_logging(args, config)
    prepare = None
    if conversion is not None:
        from pumphouse.template_cli import prepare_for_dev

        def prepare(config: Any, endpoints: Any) -> Any:
            return prepare_for_dev(conversion, config, endpoints)

    return run_dev(
        config,
        config_path=args.template or args.config,
        produce_rate=rate,
        run=not args.no_run,
        produce_template=template,
        endpoints_file=args.endpoints_file,
        prepare=prepare,
    )


def cmd_invoke(args: argparse.Namespace) -> int:
    from pumphouse.runtime.local import format_report, invoke_local

    config, conversion = _load_args(args)
    _configure_logging(args, config)
    if conversion is not None:
        from pumphouse.template_cli import prepare_for_run

        config = asyncio.run(prepare_for_run(conversion, config))
    if args.function not in config.Functions:
        known = ", ".join(sorted(config.Functions)) or "none"
        source = conversion.source if conversion is not None else args.config
        print(
            f"pumphouse: no function {args.function!r} in {source} (known: {known})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    event: Any = {}
    if args.event == "-":
        event = orjson.loads(sys.stdin.buffer.read())
    elif args.event:
        try:
            event = orjson.loads(Path(args.event).read_bytes())
        except (OSError, orjson.JSONDecodeError) as err:
            print(f"pumphouse: cannot read event {args.event}: {err}", file=sys.stderr)
            return EXIT_CONFIG
    spec = config.Functions[args.function].to_spec(args.function, config.Settings)
    kwargs: dict[str, Any] = {"on_log": lambda line: print(line, file=sys.stderr)}
    if config.Settings.PassEnvironment is not None:
        kwargs["pass_environment"] = list(config.Settings.PassEnvironment)
    if config.Settings.NodeModulesPath is not None:
        kwargs["node_modules"] = [config.resolve_path(config.Settings.NodeModulesPath)]
    result = asyncio.run(invoke_local(spec, event, **kwargs))
    body = result.payload if result.ok else result.error
    sys.stdout.buffer.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
    print(format_report(result), file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_ERROR


def cmd_events(args: argparse.Namespace) -> int:
    from pumphouse.samples import event_overrides, read_argument
    from pumphouse.testing import sample_event

    try:
        overrides = event_overrides(
            args.source,
            body=None if args.body is None else read_argument(args.body),
            key=args.key,
            headers=args.header,
            partition_key=args.partition_key,
            old_image=None if args.old_image is None else read_argument(args.old_image),
        )
    except ValueError as err:
        print(f"pumphouse: {err}", file=sys.stderr)
        return EXIT_CONFIG
    event = sample_event(args.source, records=args.records, **overrides)
    sys.stdout.buffer.write(orjson.dumps(event, option=orjson.OPT_INDENT_2) + b"\n")
    return EXIT_OK


def cmd_redrive(args: argparse.Namespace) -> int:
    from pumphouse.tools.redrive import redrive_main

    configure_logging(fmt=args.log_format or "auto", level=args.log_level or "warning")
    return redrive_main(args)


def _configure_logging(args: argparse.Namespace, config: Config) -> None:
    settings = config.Settings
    configure_logging(
        fmt=args.log_format or settings.LogFormat or "auto",
        level=args.log_level or settings.LogLevel or "info",
    )


COMMANDS = {
    "run": cmd_run,
    "validate": cmd_validate,
    "convert": cmd_convert,
    "dev": cmd_dev,
    "invoke": cmd_invoke,
    "events": cmd_events,
    "redrive": cmd_redrive,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        _print_problems(err)
        return EXIT_CONFIG
    except StateStoreError as err:
        print(f"pumphouse: state store unavailable: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PumphouseError as err:
        print(f"pumphouse: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    except Exception:
        import traceback

        traceback.print_exc()
        return EXIT_ERROR
