"""Kafka credentials from Secrets Manager (a real moto server): fetched, cached, never shown."""

from __future__ import annotations

import json

import pytest

from pumphouse.aws import AwsClients
from pumphouse.devstack import MotoServer
from pumphouse.errors import SourceError
from pumphouse.pollers.kafka_security import SecretResolver, build_security

pytestmark = pytest.mark.slow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_scram_login_from_secrets_manager_is_cached_for_its_ttl(
    moto_server: MotoServer, unique_name: str
) -> None:
    clients = AwsClients(region="us-east-1", endpoints={"SecretsManager": moto_server.url})
    try:
        manager = await clients.client("secretsmanager")
        created = await manager.create_secret(
            Name=unique_name,
            SecretString=json.dumps({"username": "svc", "password": "first-pass"}),
        )
        arn = created["ARN"]
        clock = Clock()
        secrets = SecretResolver(ttl=300, clock=clock)
        entries = [{"Type": "SASL_SCRAM_256_AUTH", "URI": arn}]

        security = await build_security(entries, aws=clients, secrets=secrets)
        options = security.aiokafka_options()
        assert options["sasl_mechanism"] == "SCRAM-SHA-256"
        assert options["sasl_plain_username"] == "svc"
        assert options["sasl_plain_password"] == "first-pass"
        assert "first-pass" not in repr(security) + str(security.describe())

        await manager.put_secret_value(
            SecretId=arn, SecretString=json.dumps({"username": "svc", "password": "rotated"})
        )
        clock.now += 299  # within the TTL: the cached value, no call to Secrets Manager
        cached = await build_security(entries, aws=clients, secrets=secrets)
        assert cached.aiokafka_options()["sasl_plain_password"] == "first-pass"
        clock.now += 2  # past it: read again
        fresh = await build_security(entries, aws=clients, secrets=secrets)
        assert fresh.aiokafka_options()["sasl_plain_password"] == "rotated"
    finally:
        await clients.close()


async def test_missing_secret_names_the_arn_and_the_error_code(
    moto_server: MotoServer, unique_name: str
) -> None:
    clients = AwsClients(region="us-east-1", endpoints={"SecretsManager": moto_server.url})
    arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{unique_name}-AbCdEf"
    try:
        with pytest.raises(SourceError) as caught:
            await build_security(
                [{"Type": "BASIC_AUTH", "URI": arn}], aws=clients, secrets=SecretResolver()
            )
    finally:
        await clients.close()
    assert str(caught.value) == (
        f"Kafka secret {arn}: Secrets Manager GetSecretValue failed (ResourceNotFoundException)"
    )
    assert caught.value.retryable is False
