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
    ctx = _context(template, path, options, config_raw)
    conversion = Conversion(
        template_path=path, stack_name=ctx.stack_name, data={}, options=options
    )
    converter = _Converter(ctx, conversion, template)
    data = converter.run()
    if config_raw:
        _merge_config(conversion, data, config_raw, converter.code.template_dir)
    conversion.data = data
    return conversion


def _context(
    template: dict[str, Any], path: Path, options: TemplateOptions, config_raw: dict[str, Any]
) -> Context:
    """The evaluation context: region and account from the ``-c`` Settings, the stack
    name, parameters, and the resources' values."""
    settings = config_raw.get("Settings")
    settings = settings if isinstance(settings, dict) else {}
    ctx = Context(
        template=template,
        stack_name=options.stack_name or _stack_name(path.absolute().parent.name),
        region=_setting(settings, "Region", DEFAULT_REGION, options.environ),
        account_id=_setting(settings, "AccountId", DEFAULT_ACCOUNT_ID, options.environ),
        parameter_overrides=options.parameter_overrides,
        import_values=options.import_values,
    )
    ctx.ref_resource = lambda name, loc: ref_value(ctx, name, loc)
    ctx.get_att = lambda name, attribute, loc: attribute_value(ctx, name, attribute, loc)
    return ctx


class _Converter:
    """One conversion: the template's functions, their events and mappings, and the
    resources ``dev`` creates, gathering every problem before raising them at once."""

    def __init__(self, ctx: Context, conversion: Conversion, template: dict[str, Any]) -> None:
        self.ctx = ctx
        self.conversion = conversion
        self.problems: list[TemplateProblem] = list(ctx.parameter_problems)
        path = conversion.template_path
        self.code = CodeLocation(
            template_dir=path.absolute().parent, code_root=conversion.options.code_root
        )
        self.globals = _globals(template, conversion)
        self.functions: dict[str, ConvertedFunction] = {}
        self.function_names: dict[str, str] = {}
        self.mappings: list[ConvertedMapping] = []

    def run(self) -> dict[str, Any]:
        for logical_id, resource in self.ctx.resources.items():
            kind = resource.get("Type") if isinstance(resource, dict) else None
            if self._used(logical_id, kind) and kind in FUNCTION_TYPES:
                self._function(logical_id)
        for logical_id, resource in self.ctx.resources.items():
            kind = resource.get("Type") if isinstance(resource, dict) else None
            if kind == "AWS::Lambda::EventSourceMapping" and self._exists(logical_id):
                mapping = convert_event_source_mapping(
                    self.ctx,
                    logical_id,
                    function_names=self.function_names,
                    problems=self.problems,
                )
                if mapping is not None:
                    self.mappings.append(mapping)
        dev = dev_resources(self.ctx, self.problems)
        if self.problems:
            raise ConfigError(
                _rendered(_unique(self.problems)), source=str(self.conversion.template_path)
            )
        return self._data(dev)

    def _exists(self, logical_id: str) -> bool:
        try:
            return self.ctx.resource_exists(logical_id)
        except TemplateProblem as problem:
            self.problems.append(problem)
            return False

    def _used(self, logical_id: str, kind: Any) -> bool:
        """Whether pumphouse reads the resource (else it is listed as not used)."""
        if kind not in USED_TYPES:
            self.conversion.not_used.append(f"Resources.{logical_id} ({kind})")
            return False
        if not self._exists(logical_id):
            self.conversion.not_used.append(f"Resources.{logical_id} (its Condition is false)")
            return False
        return True

    def _function(self, logical_id: str) -> None:
        try:
            converted = convert_function(
                self.ctx,
                logical_id,
                globals_=self.globals,
                code=self.code,
                problems=self.problems,
            )
        except TemplateProblem as problem:
            self.problems.append(problem)
            return
        if converted.name in self.functions:
            self.problems.append(
                TemplateProblem(
                    ("Resources", logical_id), f"another function is also named {converted.name!r}"
                )
            )
            return
        self.functions[converted.name] = converted
        self.conversion.origins[("Functions", converted.name)] = (
            ("Resources", logical_id, "Properties"),
            converted.keys,
        )
        self.conversion.not_used.extend(converted.ignored)
        arn = attribute_value(self.ctx, logical_id, "Arn", ("Resources", logical_id))
        self.function_names[converted.name] = self.function_names[arn] = converted.name
        for event_id, event in converted.events.items():
            self._event(converted.name, logical_id, event_id, event)

    def _event(self, function_name: str, logical_id: str, event_id: str, event: Any) -> None:
        loc: Loc = ("Resources", logical_id, "Properties", "Events", event_id)
        event_type = event.get("Type") if isinstance(event, dict) else None
        if event_type not in MAPPING_EVENT_TYPES | {"MQ", "DocumentDB"}:
            self.conversion.not_used.append(
                "Resources." + ".".join(map(str, loc[1:])) + f" ({event_type} event)"
            )
            return
        mapping = convert_event(
            self.ctx,
            function_name=function_name,
            logical_id=logical_id,
            event_id=event_id,
            event=event,
            loc=loc,
            problems=self.problems,
        )
        if mapping is not None:
            self.mappings.append(mapping)

    def _data(self, dev: dict[str, Any]) -> dict[str, Any]:
        """The configuration data (template strings escaped), with the origins of its
        functions and mappings recorded."""
        conversion = self.conversion
        data: dict[str, Any] = {
            "Functions": {name: f.data for name, f in self.functions.items()},
            "EventSourceMappings": [m.data for m in self.mappings],
        }
        for index, mapping in enumerate(self.mappings):
            conversion.origins[("EventSourceMappings", index)] = (mapping.loc, mapping.keys)
            conversion.not_used.extend(
                "Resources." + ".".join(map(str, mapping.loc[1:])) + f".{key}"
                for key in mapping.ignored
            )
        if dev:
            data["Dev"] = dev
        conversion.not_used = list(dict.fromkeys(conversion.not_used))  # Globals: said once
        escaped: dict[str, Any] = _escaped(data)
        return escaped


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
            _merge_function(conversion, data["Functions"], str(name), function)
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
    if "Dev" in raw:
        data["Dev"] = _merged_dev(data.get("Dev", {}), raw["Dev"])


def _merge_function(
    conversion: Conversion, functions: dict[str, Any], name: str, function: Any
) -> None:
    """A ``-c`` function: its keys over the template's function of that name, if any."""
    existing = functions.get(name)
    origin = conversion.origins.get(("Functions", name))
    if isinstance(existing, dict) and isinstance(function, dict) and origin is not None:
        functions[name] = {**existing, **function}
        base, keys = origin  # the keys -c sets are reported at their -c path
        own = {str(k): ("Functions", name, str(k)) for k in function}
        conversion.origins[("Functions", name)] = (base, {**keys, **own})
    else:
        functions[name] = function
        conversion.origins.pop(("Functions", name), None)


def _merged_dev(template: dict[str, Any], given: Any) -> Any:
    """The ``Dev`` section: each of the ``-c`` resources over the template's."""
    if not isinstance(given, dict):
        return given  # for validation to report
    merged = dict(template)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


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
