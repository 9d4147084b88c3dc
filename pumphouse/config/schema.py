"""The JSON schema of the configuration file, for editors and CI linters.

``python -m pumphouse.config.schema > config/pumphouse.schema.json`` regenerates the
committed copy (a unit test checks that it is up to date). The schema covers types,
ranges and formats of single fields; the rules between fields (per source) are checked
by ``pumphouse validate``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pumphouse.config.model import Config

__all__ = ["SCHEMA_ID", "json_schema", "render_schema"]

SCHEMA_ID = "https://github.com/pumphouse/pumphouse/config/pumphouse.schema.json"


def _drop_property_titles(node: Any) -> Any:
    """pydantic titles each property with its name re-cased ("Batchsize"); the name says
    it better."""
    if isinstance(node, dict):
        out = {key: _drop_property_titles(value) for key, value in node.items()}
        properties = out.get("properties")
        if isinstance(properties, dict):
            for prop in properties.values():
                if isinstance(prop, dict):
                    prop.pop("title", None)
        return out
    if isinstance(node, list):
        return [_drop_property_titles(item) for item in node]
    return node


def json_schema() -> dict[str, Any]:
    schema = _drop_property_titles(Config.model_json_schema(mode="validation"))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "pumphouse configuration",
    }


def render_schema() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.write(render_schema())


if __name__ == "__main__":
    main()
