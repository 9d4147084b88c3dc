"""docs/api.md stays true: its configuration example is valid, and every operation
and error it lists is one the API answers."""

from __future__ import annotations

import re
from pathlib import Path

from pumphouse.api import errors
from pumphouse.config import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_settings_example_is_valid() -> None:
    example = DOC.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(example, environ={"PUMPHOUSE_API_SECRET": "from-a-secret"})
    assert config.Settings.ApiAddress == "127.0.0.1:9401"
    (credential,) = config.Settings.ApiCredentials
    assert credential.SecretAccessKey.get_secret_value() == "from-a-secret"
    assert "from-a-secret" not in repr(config.Settings)


def test_every_listed_error_is_one_the_api_answers() -> None:
    table = DOC.read_text().split("### Errors", 1)[1].split("###", 1)[0]
    listed = set(re.findall(r"^\| `(\w+Exception)` \((\d+)\)", table, flags=re.MULTILINE))
    answered = {
        (cls.code, str(cls.status))
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ApiError)
        and cls.code.endswith("Exception") and cls.kind == "User"
        and cls is not errors.UnknownOperation
    }
    assert listed == answered
