"""Secrets never reach the log, at any level: a real Secrets Manager fetch (moto) at DEBUG."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from pumphouse.aws import AwsClients
from pumphouse.devstack import MotoServer
from pumphouse.pollers.kafka_security import SecretResolver, build_security
from pumphouse.telemetry.logging import LIBRARY_LOG_LEVEL_VARIABLE, configure_logging

pytestmark = pytest.mark.slow

PASSWORD = "Sasl-Pass-7f3e9c1d"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("botocore").setLevel(logging.NOTSET)
    structlog.reset_defaults()


async def _fetch_secret(moto_server: MotoServer, name: str) -> str:
    clients = AwsClients(region="us-east-1", endpoints={"SecretsManager": moto_server.url})
    try:
        manager = await clients.client("secretsmanager")
        created = await manager.create_secret(
            Name=name, SecretString=json.dumps({"username": "svc", "password": PASSWORD})
        )
        security = await build_security(
            [{"Type": "SASL_SCRAM_512_AUTH", "URI": created["ARN"]}],
            aws=clients,
            secrets=SecretResolver(),
        )
        password = security.aiokafka_options()["sasl_plain_password"]
        structlog.get_logger("pumphouse.test").debug("secret fetched", arn=created["ARN"])
        return str(password)
    finally:
        await clients.close()


@pytest.mark.usefixtures("restore_logging")
async def test_debug_level_never_turns_on_the_aws_clients_debug_output(
    moto_server: MotoServer, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="json", level="debug", environ={})
    assert await _fetch_secret(moto_server, unique_name) == PASSWORD
    output = capsys.readouterr()
    whole = output.out + output.err
    assert '"event": "secret fetched"' in whole  # pumphouse's own DEBUG lines are there
    assert PASSWORD not in whole
    assert "botocore" not in whole


@pytest.mark.usefixtures("restore_logging")
async def test_library_debug_output_asked_for_separately_still_hides_the_secret(
    moto_server: MotoServer, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(
        fmt="json", level="info", environ={LIBRARY_LOG_LEVEL_VARIABLE: "warning,botocore=debug"}
    )
    assert await _fetch_secret(moto_server, unique_name) == PASSWORD
    output = capsys.readouterr()
    whole = output.out + output.err
    assert '"logger": "botocore' in whole  # the operator asked for botocore's DEBUG lines
    assert "GetSecretValue" in whole
    assert "a Secrets Manager secret value: not logged" in whole
    assert PASSWORD not in whole
