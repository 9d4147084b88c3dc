"""Reading a SAM or CloudFormation template file (YAML or JSON) into plain data.

The short-form tags (``!Ref``, ``!GetAtt A.B``, ``!Sub``, ``!If`` ...) are read by the
YAML loader AWS ships in ``cfn-flip`` (``cfn_tools``), which turns each into its long form
(``{"Ref": ...}``, ``{"Fn::GetAtt": ["A", "B"]}``); JSON templates are already in long
form. Dates and times that YAML would read as ``date``/``datetime`` (an IAM policy's
``Version: 2012-10-17``) stay strings, as CloudFormation reads them.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from cfn_tools.yaml_loader import CfnYamlLoader  # type: ignore[import-untyped]  # no stubs

from pumphouse.config.loader import construct_unique_mapping, load_yaml_text, read_config_text
from pumphouse.errors import ConfigError

__all__ = ["read_template"]


class _TemplateLoader(CfnYamlLoader):  # type: ignore[misc]  # cfn_tools has no type hints
    """cfn-flip's loader (short-form tags), refusing a key given twice, as CloudFormation
    does."""


_TemplateLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_unique_mapping
)


def read_template(path: Path) -> dict[str, Any]:
    """The template at ``path`` as plain dicts, lists and scalars."""
    source = str(path)
    text = read_config_text(path)
    data: Any
    if text.lstrip().startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            raise ConfigError([f"invalid JSON: {err}"], source=source) from None
    else:
        data = load_yaml_text(text, source, loader=_TemplateLoader)
    data = _plain(data)
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise ConfigError(
            ["not a CloudFormation or SAM template: no Resources section"], source=source
        )
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value
