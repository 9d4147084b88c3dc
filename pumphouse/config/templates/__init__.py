"""SAM and CloudFormation templates → the same configuration a ``pumphouse.yaml`` gives.

>>> conversion = convert_template(Path("template.yaml"))  # doctest: +SKIP
>>> config = conversion.validate()  # doctest: +SKIP

What becomes what (docs/templates.md has the whole table): functions
(:mod:`.functions`), their ``Events`` and ``AWS::Lambda::EventSourceMapping`` resources
(:mod:`.events`), the queues, streams, tables, topics, buckets and secrets they name
(:mod:`.resources`: ARNs and URLs, and the ``Dev:`` section ``pumphouse dev`` creates).
Intrinsic functions, conditions, parameters and pseudo parameters are evaluated by
:mod:`.intrinsics`, only where pumphouse uses a value. Everything else is listed in
:attr:`Conversion.not_used`.

A problem is reported at its template path, in the configuration's style::

    Resources.Orders.Properties.Events.Stream.Properties.StartingPositionTimestamp: ...

A ``-c`` configuration beside the template supplies ``Settings`` and may add functions
and mappings or override them: a function of the same name takes the configuration's
value for each key it sets; a mapping with the same function and source replaces the
template's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pumphouse.config import envvars
from pumphouse.config.model import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Config
from pumphouse.config.templates.dynamic import SecretReference, find_references
from pumphouse.config.templates.events import (
    MAPPING_EVENT_TYPES,
    ConvertedMapping,
    convert_event,
    convert_event_source_mapping,
)
from pumphouse.config.templates.functions import (
    CodeLocation,
    ConvertedFunction,
    convert_function,
)
from pumphouse.config.templates.intrinsics import Context, Loc, TemplateProblem
from pumphouse.config.templates.reader import read_template
from pumphouse.config.templates.resources import (
    FUNCTION_TYPES,
    USED_TYPES,
    attribute_value,
    dev_resources,
    ref_value,
)
from pumphouse.config.validation import render
from pumphouse.errors import ConfigError

__all__ = ["Conversion", "TemplateOptions", "TemplateProblem", "convert_template"]


@dataclass(frozen=True, kw_only=True)
class TemplateOptions:
    """How to read a template (the ``--template`` options of the CLI)."""

    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    """``--parameter-overrides Key=Value``."""
    import_values: Mapping[str, str] = field(default_factory=dict)
    """``--import-value Export=Value``: what ``Fn::ImportValue`` of an export gives."""
    stack_name: str | None = None
    """``AWS::StackName`` and the prefix of generated names (default: the template's
    directory name)."""
    code_root: Path | None = None
    """Where relative code paths start, and where code kept in S3 is found locally."""
    config_path: Path | None = None
    """A ``-c`` configuration: Settings, and functions and mappings to add or override."""
    environ: Mapping[str, str] | None = None
    """``${VAR}`` values of the ``-c`` configuration (default: the process environment)."""


@dataclass(kw_only=True)
class Conversion:
    """A template converted to configuration data, not yet validated."""

    template_path: Path
    stack_name: str
    data: dict[str, Any]
    """Configuration data: template values escaped (``$${``), ``-c`` values as written."""
    origins: dict[Loc, tuple[Loc, dict[str, Loc]]] = field(default_factory=dict)
    not_used: list[str] = field(default_factory=list)
    """What pumphouse ignores, once each: resources, properties, events."""
    options: TemplateOptions = field(default_factory=TemplateOptions)

    @property
    def source(self) -> str:
        if self.options.config_path is not None:
            return f"{self.template_path} (with {self.options.config_path})"
        return str(self.template_path)

    def relocate(self, loc: Loc) -> Loc:
        """The template path of a configuration path (itself when it is not from the
        template)."""
        origin = self.origins.get(loc[:2])
        if origin is None:
            return loc
        base, keys = origin
        rest = loc[2:]
        if not rest:
            return base
        if isinstance(rest[0], str) and rest[0] in keys:
            return (*keys[rest[0]], *rest[1:])
        return (*base, *rest)

    def validate(self) -> Config:
        """The configuration, or a :class:`ConfigError` listing every problem at its
        template path. Dynamic references are checked, not resolved."""
        from pumphouse.config.loader import parse_data

        problems: list[TemplateProblem] = []
        find_references(self.data, problems=problems)
        if problems:
            relocated = [TemplateProblem(self.relocate(p.loc), p.message) for p in problems]
            raise ConfigError(_rendered(relocated), source=self.source)
        return parse_data(
            self.data,
            source=self.source,
            environ=self.options.environ,
            base_dir=self.template_path.parent,
            relocate=self.relocate,
        )

    def secret_references(self) -> list[SecretReference]:
        return [reference for _, reference in find_references(self.data)]


def _rendered(problems: list[TemplateProblem]) -> list[str]:
    return render((problem.loc, problem.message) for problem in problems)


def convert_template(path: Path, options: TemplateOptions | None = None) -> Conversion:
    """Read and convert a template (see the module docstring); raises
    :class:`ConfigError` with every template problem."""
    options = options or TemplateOptions()
    path = Path(path)
    template = read_template(path)
    config_raw = _read_config(options.config_path)
    settings_raw = config_raw.get("Settings") if isinstance(config_raw, dict) else None
    settings_raw = settings_raw if isinstance(settings_raw, dict) else {}
    environ = options.environ
    region = _setting(settings_raw, "Region", DEFAULT_REGION, environ)
    account = _setting(settings_raw, "AccountId", DEFAULT_ACCOUNT_ID, environ)
    stack_name = options.stack_name or _stack_name(path.absolute().parent.name)
    ctx = Context(
        template=template,
        stack_name=stack_name,
        region=region,
        account_id=account,
        parameter_overrides=options.parameter_overrides,
        import_values=options.import_values,
    )
    ctx.ref_resource = lambda name, loc: ref_value(ctx, name, loc)
    ctx.get_att = lambda name, attribute, loc: attribute_value(ctx, name, attribute, loc)
    problems: list[TemplateProblem] = list(ctx.parameter_problems)
    conversion = Conversion(template_path=path, stack_name=stack_name, data={}, options=options)
    code = CodeLocation(template_dir=path.absolute().parent, code_root=options.code_root)
    globals_ = _globals(template, conversion)

    functions: dict[str, ConvertedFunction] = {}
    function_names: dict[str, str] = {}
    mappings: list[ConvertedMapping] = []
    for logical_id, resource in ctx.resources.items():
        kind = resource.get("Type") if isinstance(resource, dict) else None
        if kind not in USED_TYPES:
            conversion.not_used.append(f"Resources.{logical_id} ({kind})")
            continue
        try:
            if not ctx.resource_exists(logical_id):
                conversion.not_used.append(f"Resources.{logical_id} (its Condition is false)")
                continue
        except TemplateProblem as problem:
            problems.append(problem)
            continue
        if kind not in FUNCTION_TYPES:
            continue
        try:
            converted = convert_function(
                ctx, logical_id, globals_=globals_, code=code, problems=problems
            )
        except TemplateProblem as problem:
            problems.append(problem)
            continue
        if converted.name in functions:
            problems.append(
                TemplateProblem(
                    ("Resources", logical_id),
                    f"another function is also named {converted.name!r}",
                )
            )
            continue
        functions[converted.name] = converted
        conversion.origins[("Functions", converted.name)] = (
            ("Resources", logical_id, "Properties"),
            converted.keys,
        )
        conversion.not_used.extend(converted.ignored)
        function_names[converted.name] = converted.name
        arn = attribute_value(ctx, logical_id, "Arn", ("Resources", logical_id))
        function_names[arn] = converted.name
        for event_id, event in converted.events.items():
            loc: Loc = ("Resources", logical_id, "Properties", "Events", event_id)
            event_type = event.get("Type") if isinstance(event, dict) else None
            if event_type not in MAPPING_EVENT_TYPES | {"MQ", "DocumentDB"}:
                conversion.not_used.append(
                    "Resources." + ".".join(map(str, loc[1:])) + f" ({event_type} event)"
                )
                continue
            mapping = convert_event(
                ctx,
                function_name=converted.name,
                logical_id=logical_id,
                event_id=event_id,
                event=event,
                loc=loc,
                problems=problems,
            )
            if mapping is not None:
                mappings.append(mapping)
    for logical_id, resource in ctx.resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != (
            "AWS::Lambda::EventSourceMapping"
        ):
            continue
        try:
            if not ctx.resource_exists(logical_id):
                continue
        except TemplateProblem:
            continue  # reported above
        mapping = convert_event_source_mapping(
            ctx, logical_id, function_names=function_names, problems=problems
        )
        if mapping is not None:
            mappings.append(mapping)
    dev = dev_resources(ctx, problems)
    if problems:
        raise ConfigError(_rendered(_unique(problems)), source=str(path))

    data: dict[str, Any] = {
        "Functions": {name: f.data for name, f in functions.items()},
        "EventSourceMappings": [],
    }
    for index, mapping in enumerate(mappings):
        data["EventSourceMappings"].append(mapping.data)
        conversion.origins[("EventSourceMappings", index)] = (mapping.loc, mapping.keys)
        conversion.not_used.extend(
            "Resources." + ".".join(map(str, mapping.loc[1:])) + f".{key}"
            for key in mapping.ignored
        )
    if dev:
        data["Dev"] = dev
    conversion.not_used = list(dict.fromkeys(conversion.not_used))  # Globals: said once
    data = _escaped(data)
    if settings_raw or config_raw:
        _merge_config(conversion, data, config_raw, code.template_dir)
    conversion.data = data
    return conversion


def _stack_name(directory: str) -> str:
    """A directory's name made a valid stack name (letters, digits, '-'; a letter first)."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", directory).strip("-")
    if not name or not name[0].isalpha():
        name = f"stack-{name}".rstrip("-")
    return name[:128]


def _unique(problems: list[TemplateProblem]) -> list[TemplateProblem]:
    seen: set[tuple[Loc, str]] = set()
    unique = []
    for problem in problems:
        key = (problem.loc, problem.message)
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return unique


def _globals(template: Mapping[str, Any], conversion: Conversion) -> dict[str, Any]:
    section = template.get("Globals")
    if not isinstance(section, dict):
        return {}
    for key in section:
        if key != "Function":
            conversion.not_used.append(f"Globals.{key}")
    function = section.get("Function")
    return function if isinstance(function, dict) else {}


def _escaped(value: Any) -> Any:
    """Template strings are literal: protect their ``${`` from ``${VAR}`` substitution."""
    if isinstance(value, str):
        return envvars.escape(value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def _setting(raw: Mapping[str, Any], key: str, default: str, environ: Any) -> str:
    import os

    value = raw.get(key)
    if not isinstance(value, str):
        return default
    text, problems = envvars.substitute(value, os.environ if environ is None else environ)
    return default if problems else text


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from pumphouse.config.loader import load_yaml_file

    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise ConfigError(
            [
                "the file must be a mapping with the keys Settings, Functions and "
                "EventSourceMappings"
            ],
            source=str(path),
        )
    return data


def _merge_config(
    conversion: Conversion, data: dict[str, Any], raw: dict[str, Any], template_dir: Path
) -> None:
    """Lay a ``-c`` configuration over the template's data (see the module docstring)."""
    config_dir = (conversion.options.config_path or template_dir).absolute().parent
    for key, value in raw.items():
        if key not in ("Functions", "EventSourceMappings", "Dev"):
            data[key] = value  # Settings, and unknown keys for validation to report
    functions = raw.get("Functions")
    if isinstance(functions, dict):
        for name, given in functions.items():
            function = given
            if isinstance(function, dict) and config_dir != template_dir:
                function = _rebased(function, config_dir)
            existing = data["Functions"].get(str(name))
            if isinstance(existing, dict) and isinstance(function, dict):
                data["Functions"][str(name)] = {**existing, **function}
                origin = conversion.origins.get(("Functions", str(name)))
                if origin is not None:  # overridden keys are reported at the -c path
                    base, keys = origin
                    own = {str(k): ("Functions", str(name), str(k)) for k in function}
                    conversion.origins[("Functions", str(name))] = (base, {**keys, **own})
            else:
                data["Functions"][str(name)] = function
                conversion.origins.pop(("Functions", str(name)), None)
    elif functions is not None:
        data["Functions"] = functions
    mappings = raw.get("EventSourceMappings")
    if isinstance(mappings, list):
        for mapping in mappings:
            index = _same_mapping(data["EventSourceMappings"], mapping)
            if index is None:
                data["EventSourceMappings"].append(mapping)
            else:
                data["EventSourceMappings"][index] = mapping
                conversion.origins.pop(("EventSourceMappings", index), None)
    elif mappings is not None:
        data["EventSourceMappings"] = mappings
    dev = raw.get("Dev")
    if isinstance(dev, dict):
        merged = dict(data.get("Dev", {}))
        for key, value in dev.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        data["Dev"] = merged
    elif dev is not None:
        data["Dev"] = dev


def _rebased(function: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """A ``-c`` function's paths made absolute (the template's directory is the base)."""
    rebased = dict(function)
    code_uri = rebased.get("CodeUri")
    if isinstance(code_uri, str) and "${" not in code_uri:
        rebased["CodeUri"] = str((config_dir / code_uri).resolve())
    layers = rebased.get("Layers")
    if isinstance(layers, list):
        rebased["Layers"] = [
            str((config_dir / layer).resolve())
            if isinstance(layer, str) and "${" not in layer
            else layer
            for layer in layers
        ]
    return rebased


def _same_mapping(existing: list[Any], mapping: Any) -> int | None:
    if not isinstance(mapping, dict):
        return None

    def identity(m: Any) -> tuple[Any, ...]:
        if not isinstance(m, dict):
            return ()
        return (
            m.get("FunctionName"),
            m.get("EventSourceArn"),
            str(m.get("SelfManagedEventSource")),
            str(m.get("Topics")),
        )

    target = identity(mapping)
    for index, candidate in enumerate(existing):
        if identity(_unescaped(candidate)) == target:
            return index
    return None


def _unescaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$${", "${")
    if isinstance(value, dict):
        return {k: _unescaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescaped(v) for v in value]
    return value
