"""``AWS::Serverless::Function`` (with ``Globals.Function``) and ``AWS::Lambda::Function``
→ a pumphouse ``Functions:`` entry, and layers → the function's ``Layers:`` directories.

Where the code is:

* SAM ``CodeUri`` / Lambda ``Code`` given as a local path: that directory, relative to the
  template's directory (or to ``--code-root`` when given);
* code kept elsewhere (an ``s3://`` URI, ``{Bucket, Key}``, ``S3Bucket``, an image):
  ``<code-root>/<LogicalId>`` when that directory exists, else ``<code-root>``; without
  ``--code-root`` it is an error naming the property. ``AWS::Lambda::Function`` may also
  name its directory in ``Metadata: {Pumphouse: {CodeUri: ./src}}`` (or the
  ``aws:asset:path`` the AWS CDK writes); an image function in SAM's
  ``Metadata: {DockerContext: ./app}``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pumphouse.config.templates.intrinsics import Context, Loc, TemplateProblem
from pumphouse.config.templates.resources import LAYER_TYPES, attribute_value, physical_name

__all__ = ["CodeLocation", "ConvertedFunction", "convert_function", "merge_globals"]

_HANDLED: Final = frozenset(
    {
        "Handler",
        "Runtime",
        "CodeUri",
        "Code",
        "InlineCode",
        "MemorySize",
        "Timeout",
        "Environment",
        "ReservedConcurrentExecutions",
        "ProvisionedConcurrencyConfig",
        "ImageConfig",
        "PackageType",
        "ImageUri",
        "Layers",
        "Events",
        "FunctionName",
        "Description",
        "Role",
    }
)


@dataclass(frozen=True, kw_only=True)
class CodeLocation:
    """Where relative code paths start and where code kept elsewhere is looked up."""

    template_dir: Path
    code_root: Path | None = None

    @property
    def base(self) -> Path:
        return self.code_root if self.code_root is not None else self.template_dir

    def local(self, path: str) -> Path:
        return (self.base / path).resolve()

    def elsewhere(self, logical_id: str) -> Path | None:
        if self.code_root is None:
            return None
        own = self.code_root / logical_id
        return (own if own.is_dir() else self.code_root).resolve()

    def written(self, path: Path) -> str:
        """``path`` as the configuration writes it: relative to the template's directory
        when inside it, else absolute."""
        if path.is_relative_to(self.template_dir):
            return os.path.relpath(path, self.template_dir)
        return str(path)


@dataclass(kw_only=True)
class ConvertedFunction:
    name: str
    data: dict[str, Any]
    keys: dict[str, Loc] = field(default_factory=dict)
    """Configuration key → the template path it came from (for error messages)."""
    ignored: list[str] = field(default_factory=list)
    """Template paths of the properties that have no effect locally."""
    events: dict[str, Any] = field(default_factory=dict)


Props = dict[str, Any]
"""A function's properties, ``Globals.Function`` merged in."""
Origins = dict[str, Loc]
"""Property → the template path it came from (the function's, or ``Globals.Function``)."""
Data = dict[str, Any]


def merge_globals(global_value: Any, own: Any) -> Any:
    """SAM's merge of ``Globals.Function`` into a function: maps merge key by key, lists
    are the global items followed by the function's, anything else is the function's."""
    if isinstance(global_value, dict) and isinstance(own, dict):
        merged = dict(global_value)
        for key, value in own.items():
            merged[key] = merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(own, list):
        return [*global_value, *own]
    return own


def _merged_properties(
    resource: dict[str, Any], globals_: dict[str, Any], base: Loc
) -> tuple[Props, Origins]:
    """A function's properties with ``globals_`` merged in, and where each came from."""
    own = resource.get("Properties")
    own = own if isinstance(own, dict) else {}
    props = dict(own)
    origin: Origins = {key: (*base, key) for key in own}
    for key, shared in globals_.items():
        props[key] = merge_globals(shared, own[key]) if key in own else shared
        if key not in own:
            origin[key] = ("Globals", "Function", key)
    return props, origin


def convert_function(
    ctx: Context,
    logical_id: str,
    *,
    globals_: dict[str, Any],
    code: CodeLocation,
    problems: list[TemplateProblem],
) -> ConvertedFunction:
    resource = ctx.resources[logical_id]
    kind = resource["Type"]
    sam = kind == "AWS::Serverless::Function"
    base: Loc = ("Resources", logical_id, "Properties")
    props, origin = _merged_properties(resource, globals_ if sam else {}, base)
    result = ConvertedFunction(name=physical_name(ctx, logical_id), data={})
    data = result.data
    result.ignored = [".".join(map(str, origin[k])) for k in props if k not in _HANDLED]

    def value(key: str) -> Any:
        return ctx.resolve(props[key], origin[key])

    def scalar(key: str, convert: Callable[[Any], Any]) -> None:
        if key in props:
            data[key] = convert(value(key))
            result.keys[key] = origin[key]

    def code_uri() -> None:
        path = _code_path(ctx, logical_id, kind, props, value, origin, code)
        if path is not None:
            data["CodeUri"] = code.written(path)
            result.keys["CodeUri"] = origin.get("CodeUri", origin.get("Code", base))

    def layers() -> None:
        if "Layers" not in props:
            return
        given = value("Layers")
        if not isinstance(given, list):
            raise TemplateProblem(origin["Layers"], "expected a list of layers")
        data["Layers"] = [
            code.written(_layer_directory(ctx, layer, (*origin["Layers"], index), code))
            for index, layer in enumerate(given)
        ]
        result.keys["Layers"] = origin["Layers"]

    steps: list[Callable[[], None]] = [
        *(lambda key=key: scalar(key, str) for key in ("Handler", "Runtime")),
        lambda: scalar("Description", lambda text: str(text)[:256]),
        *(
            lambda key=key: scalar(key, _integer)
            for key in ("MemorySize", "Timeout", "ReservedConcurrentExecutions")
        ),
        lambda: _environment(props, value, origin, data, result),
        lambda: _provisioned(props, value, origin, data, result),
        lambda: _image(props, value, origin, data, result),
        lambda: _role(props, value, data),
        code_uri,
        layers,
    ]
    for step in steps:
        try:
            step()
        except TemplateProblem as problem:
            problems.append(problem)
    if sam and isinstance(props.get("Events"), dict):
        result.events = props["Events"]
    return result


def _integer(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value  # the configuration's validation says what is wrong with it
    return value


def _environment(
    props: Props,
    value: Callable[[str], Any],
    origin: Origins,
    data: Data,
    result: ConvertedFunction,
) -> None:
    if "Environment" not in props:
        return
    environment = value("Environment")
    variables = environment.get("Variables", {}) if isinstance(environment, dict) else None
    if not isinstance(variables, dict):
        raise TemplateProblem(origin["Environment"], "expected {Variables: {NAME: value}}")
    data["Environment"] = {
        "Variables": {
            str(k): ("true" if v is True else "false" if v is False else str(v))
            for k, v in variables.items()
        }
    }
    result.keys["Environment"] = origin["Environment"]


def _provisioned(
    props: Props,
    value: Callable[[str], Any],
    origin: Origins,
    data: Data,
    result: ConvertedFunction,
) -> None:
    if "ProvisionedConcurrencyConfig" not in props:
        return
    config = value("ProvisionedConcurrencyConfig")
    if isinstance(config, dict) and "ProvisionedConcurrentExecutions" in config:
        loc = origin["ProvisionedConcurrencyConfig"]
        data["ProvisionedConcurrency"] = _integer(config["ProvisionedConcurrentExecutions"])
        result.keys["ProvisionedConcurrency"] = (*loc, "ProvisionedConcurrentExecutions")


def _image(
    props: Props,
    value: Callable[[str], Any],
    origin: Origins,
    data: Data,
    result: ConvertedFunction,
) -> None:
    if "ImageConfig" not in props:
        return
    config = value("ImageConfig")
    if not isinstance(config, dict):
        raise TemplateProblem(origin["ImageConfig"], "expected {EntryPoint, Command, ...}")
    data["ImageConfig"] = {
        k: config[k] for k in ("EntryPoint", "Command", "WorkingDirectory") if k in config
    }
    unknown = sorted(set(config) - {"EntryPoint", "Command", "WorkingDirectory"})
    if unknown:
        raise TemplateProblem(
            (*origin["ImageConfig"], unknown[0]), "not an ImageConfig property pumphouse knows"
        )
    result.keys["ImageConfig"] = origin["ImageConfig"]


def _role(props: Props, value: Callable[[str], Any], data: Data) -> None:
    if "Role" not in props:
        return
    try:
        role = value("Role")
    except TemplateProblem:
        return  # informational only: a role pumphouse cannot name is left out
    if isinstance(role, str) and ":iam::" in role and ":role/" in role:
        data["Role"] = role


def _code_path(  # noqa: PLR0917 - private, one caller, every argument named there
    ctx: Context,
    logical_id: str,
    kind: str,
    props: Props,
    value: Callable[[str], Any],
    origin: Origins,
    code: CodeLocation,
) -> Path | None:
    """The function's code directory (see the module docstring)."""
    base: Loc = ("Resources", logical_id, "Properties")
    metadata = ctx.resources[logical_id].get("Metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    hinted = _hinted_code_path(metadata, code)
    if hinted is not None:
        return hinted
    if "InlineCode" in props:
        raise TemplateProblem(
            origin["InlineCode"],
            "inline code is not run by pumphouse: put it in a directory and give CodeUri",
        )
    if str(ctx.resolve(props.get("PackageType", "Zip"), base)) == "Image":
        return _image_code_path(logical_id, metadata, origin.get("PackageType", base), code)
    key = "CodeUri" if kind == "AWS::Serverless::Function" else "Code"
    if key not in props:
        return code.elsewhere(logical_id) or code.local(".")
    given = value(key)
    if isinstance(given, str) and not given.startswith("s3://"):
        return code.local(given)
    if isinstance(given, dict) and "ZipFile" in given:
        raise TemplateProblem(
            (*origin[key], "ZipFile"),
            "inline code is not run by pumphouse: put it in a directory and point "
            "Metadata.Pumphouse.CodeUri or --code-root at it",
        )
    where = code.elsewhere(logical_id)
    if where is None:
        shown = given if isinstance(given, str) else "an S3 object"
        raise TemplateProblem(
            origin[key],
            f"{shown} is code in S3, which pumphouse cannot run: give a local directory "
            "(CodeUri: ./src) or --code-root DIR",
        )
    return where


def _hinted_code_path(metadata: dict[str, Any], code: CodeLocation) -> Path | None:
    """``Metadata.Pumphouse.CodeUri``, or the asset directory the AWS CDK names."""
    hint = metadata.get("Pumphouse")
    if isinstance(hint, dict) and isinstance(hint.get("CodeUri"), str):
        return code.local(hint["CodeUri"])
    asset = metadata.get("aws:asset:path")
    if isinstance(asset, str) and metadata.get("aws:asset:property") in ("Code", "CodeUri"):
        return (code.template_dir / asset).resolve()
    return None


def _image_code_path(
    logical_id: str, metadata: dict[str, Any], loc: Loc, code: CodeLocation
) -> Path:
    context = metadata.get("DockerContext")
    if isinstance(context, str):
        return (code.template_dir / context).resolve()
    where = code.elsewhere(logical_id)
    if where is None:
        raise TemplateProblem(
            loc,
            "an image function runs from a local directory: give Metadata.DockerContext or "
            "--code-root DIR",
        )
    return where


def _layer_directory(ctx: Context, layer: Any, loc: Loc, code: CodeLocation) -> Path:
    """The local directory of a layer given by reference to a layer resource."""
    for logical_id, resource in ctx.resources.items():
        if not isinstance(resource, dict) or resource.get("Type") not in LAYER_TYPES:
            continue
        if attribute_value(ctx, logical_id, "Arn", loc) != layer:
            continue
        props = resource.get("Properties")
        props = props if isinstance(props, dict) else {}
        key = "ContentUri" if resource["Type"] == "AWS::Serverless::LayerVersion" else "Content"
        content = ctx.resolve(props.get(key), ("Resources", logical_id, "Properties", key))
        if isinstance(content, str) and not content.startswith("s3://"):
            return code.local(content)
        where = code.elsewhere(logical_id)
        if where is None:
            raise TemplateProblem(
                ("Resources", logical_id, "Properties", key),
                f"layer {logical_id}: its content is in S3, which pumphouse cannot read: give "
                "a local directory or --code-root DIR",
            )
        return where
    raise TemplateProblem(
        loc,
        f"layer {layer} is given by ARN only: pumphouse needs its content in a local "
        "directory (declare it in the template as an AWS::Serverless::LayerVersion with a "
        "local ContentUri, or give the function's Layers as directories in a -c "
        "configuration)",
    )
