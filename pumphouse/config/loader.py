"""Reading a configuration file: YAML → ``${VAR}`` substitution → validation → Config.

Validation goes part by part (``Settings``, each function, each mapping) so that one
broken part does not hide the problems of the others, and a part with a bad field is
validated again without it so that its cross-field rules still run. Every problem found
is raised at once, in file order, as one :class:`~pumphouse.errors.ConfigError`::

    3 configuration problem(s) in pumphouse.yaml:
      - Functions.orders.Timeout: 1200 is above the maximum 900
      - EventSourceMappings[0].BachSize: unknown key (did you mean 'BatchSize'?)
      - EventSourceMappings[1].StartingPosition: required for Kinesis: TRIM_HORIZON, ...
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pumphouse.config.envvars import Substitution, substitute
from pumphouse.config.messages import (
    describe_value,
    hide_substituted,
    problems_from_validation_error,
    unknown_key_message,
)
from pumphouse.config.model import (
    Config,
    DevResources,
    EventSourceMapping,
    Function,
    Settings,
    check_function_name,
)
from pumphouse.config.validation import (
    Loc,
    Problem,
    cross_problems,
    did_you_mean,
    function_problems,
    mapping_problems,
    render,
    settings_problems,
)
from pumphouse.errors import ConfigError

__all__ = [
    "construct_unique_mapping",
    "load_config",
    "load_yaml_file",
    "load_yaml_text",
    "parse_config",
    "parse_data",
    "parse_mapping",
    "read_config_text",
]

SECTIONS = ("Settings", "Functions", "EventSourceMappings", "Dev")
_SOURCE_KEYS = frozenset({"EventSourceArn", "SelfManagedEventSource"})

_M = TypeVar("_M", bound=BaseModel)


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file. Relative paths in it (``CodeUri``) are
    resolved against the file's directory. ``environ`` (default: ``os.environ``) supplies
    ``${VAR}`` references. Raises :class:`ConfigError` listing every problem."""
    file = Path(path)
    text = read_config_text(file)
    return parse_config(text, source=str(path), environ=environ, base_dir=file.absolute().parent)


def load_yaml_file(path: str | Path) -> Any:
    """A YAML file's data, read as configuration files are (``ConfigError`` if it cannot
    be read or parsed); no substitution, no validation."""
    return load_yaml_text(read_config_text(Path(path)), str(path))


def read_config_text(file: Path) -> str:
    source = str(file)
    try:
        return file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([f"file not found: {file.absolute()}"], source=source) from None
    except IsADirectoryError:
        raise ConfigError(
            [f"{file.absolute()} is a directory, not a file"], source=source
        ) from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            [f"not UTF-8 text (byte {err.start} cannot be decoded)"], source=source
        ) from None
    except OSError as err:
        raise ConfigError(
            [f"cannot read {file.absolute()}: {err.strerror}"], source=source
        ) from None


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    environ: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
) -> Config:
    """Validate configuration YAML given as a string. ``base_dir`` (default: the working
    directory) is where relative ``CodeUri`` paths start."""
    data = load_yaml_text(text, source)
    return parse_data(data, source=source, environ=environ, base_dir=base_dir)


def parse_data(
    data: Any,
    *,
    source: str = "<string>",
    environ: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
    relocate: Callable[[Loc], Loc] | None = None,
) -> Config:
    """Validate configuration data already read (a template converted to a configuration,
    :mod:`pumphouse.config.templates`). ``relocate`` turns the path of a problem into
    the path it is reported under (the template path the value came from)."""
    return _Validation(
        environ=os.environ if environ is None else environ,
        base_dir=Path.cwd() if base_dir is None else Path(base_dir),
        source=source,
        relocate=relocate,
    ).run(data)


def parse_mapping(
    raw: Any, *, settings: Settings, function_names: Collection[str], source: str = "request"
) -> EventSourceMapping:
    """Validate one mapping given as a dict (the API's requests) with the same rules and
    messages as a mapping in a file; paths start at the mapping (``BatchSize: ...``).
    ``${VAR}`` is not substituted: that is for files the operator writes. Raises
    :class:`ConfigError` listing every problem."""
    validation = _Validation(environ={}, base_dir=Path.cwd(), source=source)
    mapping = validation.check_mapping_at((), raw, settings)
    if mapping is not None:
        validation.problems.extend(
            (loc[2:], message)
            for loc, message in cross_problems(
                function_names=function_names, mappings=[(0, mapping)]
            )
            if loc[2:] != ("UUID",)
        )
    if validation.problems or mapping is None:
        raise ConfigError(render(validation.problems), source=source)
    return mapping


# ---------------------------------------------------------------------------------------
# YAML


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML would
    silently keep the last one)."""


def construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A YAML mapping, refusing a key given twice (for any ``SafeLoader`` subclass)."""
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            first = seen[key]
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first given at line {first.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_unique_mapping
)


def load_yaml_text(text: str, source: str, *, loader: type[yaml.SafeLoader] = _StrictLoader) -> Any:
    """YAML text read with ``loader`` (a ``SafeLoader`` subclass); ``ConfigError`` with the
    line and column of a syntax problem."""
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader subclass: safe to use
    except yaml.MarkedYAMLError as err:
        raise ConfigError([_yaml_problem(err)], source=source) from None
    except yaml.YAMLError as err:
        raise ConfigError([f"invalid YAML: {err}"], source=source) from None


def _yaml_problem(err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    message = err.problem or err.context or "invalid YAML"
    if err.problem and err.context:
        context = err.context
        if err.context_mark is not None and err.context_mark is not err.problem_mark:
            context += f" at line {err.context_mark.line + 1}"
        message += f" ({context})"
    return f"{where}invalid YAML: {message}"


# ---------------------------------------------------------------------------------------
# Validation


def _substitute_tree(
    value: Any,
    environ: Mapping[str, str],
    loc: Loc,
    problems: list[Problem],
    sites: dict[Loc, Substitution],
) -> Any:
    """Substitute every string of the tree; ``sites`` gets the paths whose value came
    (in part) from the environment, so that no problem echoes it."""
    if isinstance(value, str):
        used: list[tuple[str, str]] = []
        result, errors = substitute(value, environ, used=used)
        problems.extend((loc, error) for error in errors)
        if used:
            sites[loc] = Substitution(value=result, variables=tuple(used))
        return result
    if isinstance(value, dict):
        return {
            key: _substitute_tree(item, environ, (*loc, str(key)), problems, sites)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute_tree(item, environ, (*loc, index), problems, sites)
            for index, item in enumerate(value)
        ]
    return value


class _Validation:
    """One run of validation over parsed YAML, collecting every problem."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str],
        base_dir: Path,
        source: str,
        relocate: Callable[[Loc], Loc] | None = None,
    ) -> None:
        self.relocate = relocate
        self.environ = environ
        self.base_dir = base_dir
        self.source = source
        self.now = time.time()
        self.problems: list[Problem] = []
        self.env_problem_locs: set[Loc] = set()
        self.substituted: dict[Loc, Substitution] = {}

    def run(self, data: Any) -> Config:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                [
                    "the file must be a mapping with the keys Settings, Functions and "
                    f"EventSourceMappings, not {describe_value(data)}"
                ],
                source=self.source,
            )
        env_problems: list[Problem] = []
        data = _substitute_tree(data, self.environ, (), env_problems, self.substituted)
        self.problems.extend(env_problems)
        self.env_problem_locs = {loc for loc, _ in env_problems}

        for key in data:
            if key not in SECTIONS:
                self.problems.append(((str(key),), unknown_key_message(key, list(SECTIONS))))
        clean = {key: data[key] for key in SECTIONS if data.get(key) is not None}
        settings = self._check_settings(data.get("Settings"))
        function_names = self._check_functions(data.get("Functions"))
        mappings = self._check_mappings(data.get("EventSourceMappings"), settings)
        self._add(cross_problems(function_names=function_names, mappings=mappings))
        if data.get("Dev") is not None:
            self._validate(DevResources, data["Dev"], ("Dev",))

        if self.problems:
            raise ConfigError(self._ordered(data), source=self.source)
        try:
            return Config.model_validate(
                clean, context={"base_dir": self.base_dir, "now": self.now}
            )
        except ValidationError as err:  # a rule the parts passed but the whole did not
            problems = hide_substituted(
                problems_from_validation_error(err, Config), self.substituted
            )
            rendered = render(self._relocated(problems))
            lines = [line for text in rendered for line in text.splitlines()]
            raise ConfigError(lines, source=self.source) from None

    def _check_settings(self, raw: Any) -> Settings:
        """The Settings section, or the defaults (to check the mappings against) when it
        is absent or has problems."""
        if raw is None:
            return Settings()
        parsed, dropped = self._validate(Settings, raw, ("Settings",))
        if parsed is None:
            return Settings()
        self._add(settings_problems(parsed), ("Settings",), dropped)
        return parsed

    def _check_functions(self, raw: Any) -> list[str]:
        """The Functions section; returns the function names it declares."""
        if raw is None:
            return []
        if not isinstance(raw, dict):
            self.problems.append(
                (
                    ("Functions",),
                    "expected a mapping of function names to functions, got " + describe_value(raw),
                )
            )
            return []
        for name, function in raw.items():
            self._check_function(name, function)
        return [str(name) for name in raw]

    def _check_mappings(self, raw: Any, settings: Settings) -> list[tuple[int, EventSourceMapping]]:
        """The EventSourceMappings section; returns the mappings that parsed, by index."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problems.append(
                (
                    ("EventSourceMappings",),
                    f"expected a list of mappings, got {describe_value(raw)}",
                )
            )
            return []
        parsed: list[tuple[int, EventSourceMapping]] = []
        for index, item in enumerate(raw):
            mapping = self._check_mapping(index, item, settings)
            if mapping is not None:
                parsed.append((index, mapping))
        return parsed

    def _validate(self, model: type[_M], raw: Any, prefix: Loc) -> tuple[_M | None, frozenset[str]]:
        """Validate one part. On errors, record them and try again without the keys that
        had them, so that the caller can still check the rest; return that partial model
        (or None) and the keys left out."""
        try:
            return model.model_validate(raw), frozenset()
        except ValidationError as err:
            errors = problems_from_validation_error(err, model)
        self._add(errors, prefix)
        if not isinstance(raw, dict) or any(not loc for loc, _ in errors):
            return None, frozenset()
        dropped = frozenset(str(loc[0]) for loc, _ in errors)
        # A misspelt key stands for the key it resembles: rules about that key are moot.
        dropped |= {
            hint for key in dropped if key not in model.model_fields
            and (hint := did_you_mean(key, model.model_fields)) is not None
        }
        try:
            partial = model.model_validate({k: v for k, v in raw.items() if k not in dropped})
        except ValidationError:
            return None, dropped
        return partial, dropped

    def _add(
        self, problems: list[Problem], prefix: Loc = (), dropped: frozenset[str] = frozenset()
    ) -> None:
        for loc, message in problems:
            if loc and loc[0] in dropped:
                continue  # that key already has a problem of its own
            full = prefix + loc
            if full in self.env_problem_locs:
                continue  # an undefined ${VAR}: said once
            self.problems.append((full, message))

    def _check_function(self, name: Any, raw: Any) -> None:
        prefix: Loc = ("Functions", str(name))
        try:
            check_function_name(str(name))
        except ValueError as err:
            self.problems.append((prefix, str(err)))
        function, dropped = self._validate(Function, raw, prefix)
        if function is not None:
            self._add(function_problems(function), prefix, dropped)

    def _check_mapping(self, index: int, raw: Any, settings: Settings) -> EventSourceMapping | None:
        return self.check_mapping_at(("EventSourceMappings", index), raw, settings)

    def check_mapping_at(
        self, prefix: Loc, raw: Any, settings: Settings
    ) -> EventSourceMapping | None:
        mapping, dropped = self._validate(EventSourceMapping, raw, prefix)
        if mapping is None:
            return None
        if dropped & _SOURCE_KEYS:
            return None  # which source it is is unknown: its rules cannot be checked
        self._add(mapping_problems(mapping, settings=settings, now=self.now), prefix, dropped)
        return mapping

    def _ordered(self, data: dict[Any, Any]) -> list[str]:
        """Problems in file order: by section, then by function / mapping."""
        sections = {str(key): rank for rank, key in enumerate(data)}
        functions = data.get("Functions")
        function_rank = (
            {str(name): rank for rank, name in enumerate(functions)}
            if isinstance(functions, dict)
            else {}
        )

        def key(problem: Problem) -> tuple[int, int]:
            loc = problem[0]
            if not loc:
                return (-1, 0)
            section = sections.get(str(loc[0]), len(sections))
            if len(loc) < 2:
                return (section, -1)
            item = loc[1]
            if isinstance(item, int):
                return (section, item)
            return (section, function_rank.get(item, -1))

        return render(
            self._relocated(hide_substituted(sorted(self.problems, key=key), self.substituted))
        )

    def _relocated(self, problems: list[Problem]) -> list[Problem]:
        relocate = self.relocate
        if relocate is None:
            return problems
        relocated = [(relocate(loc), message) for loc, message in problems]
        # Values a template gives once (its Globals) are reported once.
        return list(dict.fromkeys(relocated))
