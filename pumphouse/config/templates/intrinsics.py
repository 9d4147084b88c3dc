"""CloudFormation's intrinsic functions, conditions, parameters and pseudo parameters,
evaluated locally.

Values are resolved only where pumphouse uses them (a function's properties, its events,
the queues and streams they name), so an ``!ImportValue`` or ``!GetAZs`` in a resource
pumphouse ignores never stops a template. Every problem is a :class:`TemplateProblem`
carrying the template path of the value that has it::

    Resources.Consumer.Properties.Events.Orders.Properties.Queue: !Ref 'Missing' names
    no parameter, resource or pseudo parameter

>>> ctx = Context(template={"Resources": {}}, stack_name="demo")
>>> ctx.resolve({"Fn::Sub": "${AWS::StackName}-${AWS::Region}"}, ("Outputs",))
'demo-us-east-1'
>>> ctx.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}, ())
'b'
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["NO_VALUE", "Context", "Loc", "TemplateProblem", "is_intrinsic"]

Loc = tuple[str | int, ...]
"""A path in the template: ``("Resources", "Queue", "Properties", "QueueName")``."""

PSEUDO_PARAMETERS: Final = (
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
)

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class TemplateProblem(Exception):
    """A value of the template that cannot be used, at its template path."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class _NoValue:
    """``!Ref AWS::NoValue``: the property is left out."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Final = _NoValue()


def is_intrinsic(value: Any) -> bool:
    """``{"Ref": ...}`` or ``{"Fn::...": ...}``: one key naming a function."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = str(next(iter(value)))
    return key == "Ref" or key.startswith("Fn::")


def _partition(region: str) -> tuple[str, str]:
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


def _text(value: Any) -> str:
    """A scalar as CloudFormation sees it (YAML ``true`` is the string ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


RefResolver = Callable[[str, Loc], Any]
"""Resolves ``!Ref <logical id>`` of a resource (given by the resources layer)."""
AttResolver = Callable[[str, str, Loc], Any]
"""Resolves ``!GetAtt <logical id>.<attribute>``."""


class Context:
    """One template's evaluation: its parameter values, conditions and pseudo parameters.

    ``ref_resource``/``get_att`` give the values of resources (set by the conversion,
    which knows the physical names); without them a resource reference is a problem.
    """

    def __init__(
        self,
        *,
        template: Mapping[str, Any],
        stack_name: str,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        parameter_overrides: Mapping[str, str] | None = None,
        import_values: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.partition, self.url_suffix = _partition(region)
        self.import_values = dict(import_values or {})
        self.resources: Mapping[str, Any] = _section(template, "Resources")
        self.ref_resource: RefResolver | None = None
        self.get_att: AttResolver | None = None
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        self.parameters, self.parameter_problems = _parameter_values(
            _section(template, "Parameters"), parameter_overrides or {}
        )

    # -- pseudo parameters -----------------------------------------------------------------

    def pseudo(self, name: str) -> Any:
        return {
            "AWS::AccountId": self.account_id,
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::StackId": (
                f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:"
                f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": self.url_suffix,
        }[name]

    # -- evaluation ------------------------------------------------------------------------

    def resolve(self, value: Any, loc: Loc) -> Any:
        """``value`` with every intrinsic function evaluated (``NO_VALUE`` entries left
        out of dicts and lists)."""
        if isinstance(value, dict):
            if is_intrinsic(value):
                key, argument = next(iter(value.items()))
                return self._function(key, argument, (*loc, key))
            resolved = {}
            for key, item in value.items():
                result = self.resolve(item, (*loc, key))
                if result is not NO_VALUE:
                    resolved[key] = result
            return resolved
        if isinstance(value, list):
            items = [self.resolve(item, (*loc, index)) for index, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        return value

    def _function(self, name: str, argument: Any, loc: Loc) -> Any:
        handler = _FUNCTIONS.get(name)
        if handler is None:
            if name in ("Fn::Transform", "Fn::Cidr"):
                raise TemplateProblem(loc, f"{name} is not evaluated by pumphouse")
            raise TemplateProblem(loc, f"{name} is not an intrinsic function pumphouse knows")
        return handler(self, argument, loc)

    def ref(self, name: Any, loc: Loc) -> Any:
        if not isinstance(name, str):
            raise TemplateProblem(loc, "!Ref takes the name of a parameter or resource")
        if name in PSEUDO_PARAMETERS:
            return self.pseudo(name)
        if name in _section(self.template, "Parameters"):
            if name not in self.parameters:
                spec = _section(self.template, "Parameters")[name]
                kind = str(spec.get("Type", "")) if isinstance(spec, dict) else ""
                why = "has no Default"
                if kind.startswith("AWS::SSM::Parameter::Value<"):
                    why = "is read from SSM Parameter Store, which is not resolvable locally"
                raise TemplateProblem(
                    loc, f"parameter {name} {why}: give it with --parameter-overrides {name}=VALUE"
                )
            return self.parameters[name]
        if name in self.resources:
            if not self.resource_exists(name):
                raise TemplateProblem(
                    loc, f"!Ref {name!r}: the resource is not created (its Condition is false)"
                )
            if self.ref_resource is None:
                raise TemplateProblem(loc, f"!Ref {name!r}: resources have no values here")
            return self.ref_resource(name, loc)
        raise TemplateProblem(
            loc, f"!Ref {name!r} names no parameter, resource or pseudo parameter"
        )

    def attribute(self, name: str, attribute: str, loc: Loc) -> Any:
        if name not in self.resources:
            raise TemplateProblem(loc, f"!GetAtt {name}.{attribute}: no resource {name!r}")
        if not self.resource_exists(name):
            raise TemplateProblem(
                loc,
                f"!GetAtt {name}.{attribute}: the resource is not created (its Condition is false)",
            )
        if self.get_att is None:
            raise TemplateProblem(loc, f"!GetAtt {name}.{attribute}: resources have no values here")
        return self.get_att(name, attribute, loc)

    # -- conditions ------------------------------------------------------------------------

    def condition(self, name: Any, loc: Loc) -> bool:
        """The value of the named condition of ``Conditions``."""
        if not isinstance(name, str):
            raise TemplateProblem(loc, "a condition name must be a string")
        if name in self._conditions:
            return self._conditions[name]
        conditions = _section(self.template, "Conditions")
        if name not in conditions:
            raise TemplateProblem(loc, f"no condition {name!r} in Conditions")
        if name in self._evaluating:
            raise TemplateProblem(("Conditions", name), "the condition refers to itself")
        self._evaluating.add(name)
        try:
            value = self.condition_value(conditions[name], ("Conditions", name))
        finally:
            self._evaluating.discard(name)
        self._conditions[name] = value
        return value

    def condition_value(self, value: Any, loc: Loc) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(value["Condition"], (*loc, "Condition"))
        result = self.resolve(value, loc)
        if isinstance(result, bool):
            return result
        if _text(result) in ("true", "false"):
            return _text(result) == "true"
        raise TemplateProblem(loc, f"a condition must be true or false, not {result!r}")

    def resource_exists(self, logical_id: str) -> bool:
        """False when the resource's ``Condition`` is false."""
        resource = self.resources.get(logical_id)
        if not isinstance(resource, dict) or "Condition" not in resource:
            return True
        return self.condition(resource["Condition"], ("Resources", logical_id, "Condition"))


# ---------------------------------------------------------------------------------------
# The functions


def _section(template: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = template.get(name)
    return section if isinstance(section, dict) else {}


def _args(argument: Any, count: int, loc: Loc, form: str) -> list[Any]:
    if not isinstance(argument, list) or len(argument) != count:
        raise TemplateProblem(loc, f"expected {form}")
    return argument


def _fn_ref(ctx: Context, argument: Any, loc: Loc) -> Any:
    return ctx.ref(argument, loc)


def _fn_get_att(ctx: Context, argument: Any, loc: Loc) -> Any:
    if isinstance(argument, str):
        argument = argument.split(".", 1)
    if not isinstance(argument, list) or len(argument) != 2:
        raise TemplateProblem(loc, "expected [LogicalId, Attribute] or LogicalId.Attribute")
    name, attribute = argument[0], ctx.resolve(argument[1], (*loc, 1))
    if not isinstance(name, str) or not isinstance(attribute, str):
        raise TemplateProblem(loc, "expected [LogicalId, Attribute] or LogicalId.Attribute")
    return ctx.attribute(name, attribute, loc)


def _fn_sub(ctx: Context, argument: Any, loc: Loc) -> str:
    variables: dict[str, Any] = {}
    if isinstance(argument, list):
        text, given = _args(argument, 2, loc, "a string, or [string, {variables}]")
        if not isinstance(given, dict):
            raise TemplateProblem((*loc, 1), "expected a mapping of variables")
        variables = {str(key): ctx.resolve(value, (*loc, 1, key)) for key, value in given.items()}
    else:
        text = argument
    if not isinstance(text, str):
        raise TemplateProblem(loc, "expected a string to substitute into")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        name = name.strip()
        if name in variables:
            value = variables[name]
        elif "." in name and name not in PSEUDO_PARAMETERS:
            logical_id, attribute = name.split(".", 1)
            value = ctx.attribute(logical_id, attribute, loc)
        else:
            value = ctx.ref(name, loc)
        if isinstance(value, list | dict) or value is NO_VALUE:
            raise TemplateProblem(loc, f"${{{name}}} is not a string")
        return _text(value)

    return _SUB_VARIABLE.sub(replace, text)


def _fn_join(ctx: Context, argument: Any, loc: Loc) -> str:
    delimiter, items = _args(argument, 2, loc, "[delimiter, [values]]")
    items = ctx.resolve(items, (*loc, 1))
    if not isinstance(delimiter, str) or not isinstance(items, list):
        raise TemplateProblem(loc, "expected [delimiter, [values]]")
    for index, item in enumerate(items):
        if isinstance(item, list | dict):
            raise TemplateProblem((*loc, 1, index), "Fn::Join joins strings, not lists or maps")
    return delimiter.join(_text(item) for item in items)


def _fn_select(ctx: Context, argument: Any, loc: Loc) -> Any:
    index, items = _args(argument, 2, loc, "[index, [values]]")
    index = ctx.resolve(index, (*loc, 0))
    items = ctx.resolve(items, (*loc, 1))
    try:
        position = int(index)
    except (TypeError, ValueError):
        raise TemplateProblem((*loc, 0), f"{index!r} is not an index") from None
    if not isinstance(items, list):
        raise TemplateProblem((*loc, 1), "expected a list to select from")
    if not 0 <= position < len(items):
        raise TemplateProblem(loc, f"index {position} is outside the list of {len(items)}")
    return items[position]


def _fn_split(ctx: Context, argument: Any, loc: Loc) -> list[str]:
    delimiter, text = _args(argument, 2, loc, "[delimiter, string]")
    text = ctx.resolve(text, (*loc, 1))
    if not isinstance(delimiter, str) or not isinstance(text, str):
        raise TemplateProblem(loc, "expected [delimiter, string]")
    return text.split(delimiter)


def _fn_if(ctx: Context, argument: Any, loc: Loc) -> Any:
    name, when_true, when_false = _args(argument, 3, loc, "[condition, value if true, else]")
    if ctx.condition(name, (*loc, 0)):
        return ctx.resolve(when_true, (*loc, 1))
    return ctx.resolve(when_false, (*loc, 2))


def _fn_equals(ctx: Context, argument: Any, loc: Loc) -> bool:
    left, right = _args(argument, 2, loc, "[value, value]")
    left = ctx.resolve(left, (*loc, 0))
    right = ctx.resolve(right, (*loc, 1))
    if isinstance(left, list | dict) or isinstance(right, list | dict):
        return bool(left == right)
    return _text(left) == _text(right)


def _conditions(ctx: Context, argument: Any, loc: Loc, name: str) -> list[bool]:
    if not isinstance(argument, list) or not 2 <= len(argument) <= 10:
        raise TemplateProblem(loc, f"{name} takes 2 to 10 conditions")
    return [ctx.condition_value(item, (*loc, i)) for i, item in enumerate(argument)]


def _fn_and(ctx: Context, argument: Any, loc: Loc) -> bool:
    return all(_conditions(ctx, argument, loc, "Fn::And"))


def _fn_or(ctx: Context, argument: Any, loc: Loc) -> bool:
    return any(_conditions(ctx, argument, loc, "Fn::Or"))


def _fn_not(ctx: Context, argument: Any, loc: Loc) -> bool:
    (condition,) = _args(argument, 1, loc, "[condition]")
    return not ctx.condition_value(condition, (*loc, 0))


def _fn_find_in_map(ctx: Context, argument: Any, loc: Loc) -> Any:
    if not isinstance(argument, list) or len(argument) not in (3, 4):
        raise TemplateProblem(loc, "expected [MapName, TopLevelKey, SecondLevelKey]")
    keys = [ctx.resolve(item, (*loc, i)) for i, item in enumerate(argument[:3])]
    default = argument[3] if len(argument) == 4 else None
    mappings = _section(ctx.template, "Mappings")
    found: Any = mappings
    for depth, key in enumerate(keys):
        if not isinstance(found, dict) or _text(key) not in found:
            if isinstance(default, dict) and "DefaultValue" in default:
                return ctx.resolve(default["DefaultValue"], (*loc, 3, "DefaultValue"))
            where = "Mappings" + "".join(f".{_text(k)}" for k in keys[:depth])
            raise TemplateProblem(loc, f"no key {_text(key)!r} in {where}")
        found = found[_text(key)]
    return found


def _fn_import_value(ctx: Context, argument: Any, loc: Loc) -> Any:
    name = ctx.resolve(argument, loc)
    if isinstance(name, str) and name in ctx.import_values:
        return ctx.import_values[name]
    raise TemplateProblem(
        loc,
        f"Fn::ImportValue {name!r} is not resolvable locally (the export belongs to "
        f"another stack): give its value with --import-value {name}=VALUE",
    )


def _fn_get_azs(ctx: Context, argument: Any, loc: Loc) -> list[str]:
    region = ctx.resolve(argument, loc) or ctx.region
    return [f"{region}{zone}" for zone in "abc"]


def _fn_base64(ctx: Context, argument: Any, loc: Loc) -> str:
    text = ctx.resolve(argument, loc)
    if not isinstance(text, str):
        raise TemplateProblem(loc, "Fn::Base64 takes a string")
    return base64.b64encode(text.encode()).decode()


_FUNCTIONS: Final[dict[str, Callable[[Context, Any, Loc], Any]]] = {
    "Ref": _fn_ref,
    "Fn::GetAtt": _fn_get_att,
    "Fn::Sub": _fn_sub,
    "Fn::Join": _fn_join,
    "Fn::Select": _fn_select,
    "Fn::Split": _fn_split,
    "Fn::If": _fn_if,
    "Fn::Equals": _fn_equals,
    "Fn::And": _fn_and,
    "Fn::Or": _fn_or,
    "Fn::Not": _fn_not,
    "Fn::FindInMap": _fn_find_in_map,
    "Fn::ImportValue": _fn_import_value,
    "Fn::GetAZs": _fn_get_azs,
    "Fn::Base64": _fn_base64,
}


# ---------------------------------------------------------------------------------------
# Parameters


def _parameter_values(
    declared: Mapping[str, Any], overrides: Mapping[str, str]
) -> tuple[dict[str, Any], list[TemplateProblem]]:
    """Each parameter's value (override, else Default) in its type's shape, and the
    problems found (an override of no parameter, a value outside AllowedValues ...)."""
    values: dict[str, Any] = {}
    problems: list[TemplateProblem] = []
    for name in overrides:
        if name not in declared:
            known = ", ".join(declared) or "none"
            problems.append(
                TemplateProblem(
                    ("Parameters",),
                    f"--parameter-overrides {name}=...: the template has no parameter {name} "
                    f"(its parameters: {known})",
                )
            )
    for name, given in declared.items():
        spec = given if isinstance(given, dict) else {}
        loc: Loc = ("Parameters", name)
        kind = str(spec.get("Type", "String"))
        if name in overrides:
            raw: Any = overrides[name]
        elif "Default" in spec and not kind.startswith("AWS::SSM::Parameter::Value<"):
            raw = spec["Default"]
        else:
            continue  # no value: a problem where it is used
        try:
            values[name] = _typed(raw, kind, spec, loc)
        except TemplateProblem as problem:
            problems.append(problem)
    return values, problems


def _typed(raw: Any, kind: str, spec: Mapping[str, Any], loc: Loc) -> Any:
    text = raw if isinstance(raw, list) else _text(raw)
    allowed = spec.get("AllowedValues")
    if kind in ("CommaDelimitedList",) or kind.startswith("List<"):
        items = text if isinstance(text, list) else [p.strip() for p in text.split(",")]
        items = [_text(i) for i in items]
        if kind == "List<Number>":
            return [_number(i, loc) for i in items]
        return items
    if isinstance(allowed, list) and text not in [_text(a) for a in allowed]:
        choices = ", ".join(_text(a) for a in allowed)
        raise TemplateProblem(loc, f"{text!r} is not one of the AllowedValues: {choices}")
    pattern = spec.get("AllowedPattern")
    if isinstance(pattern, str) and not re.fullmatch(pattern, str(text)):
        raise TemplateProblem(loc, f"{text!r} does not match AllowedPattern {pattern}")
    if kind == "Number":
        number = _number(str(text), loc)
        for bound, sign in (("MinValue", 1), ("MaxValue", -1)):
            if bound in spec and sign * (number - _number(_text(spec[bound]), loc)) < 0:
                raise TemplateProblem(loc, f"{text} is outside {bound} {spec[bound]}")
        return number
    return text


def _number(text: str, loc: Loc) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise TemplateProblem(loc, f"{text!r} is not a number") from None
