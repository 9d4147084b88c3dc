"""Shared fixtures: real servers on free loopback ports, started once per session.

Each server comes from :mod:`pumphouse.devstack` (the same code ``pumphouse dev`` uses)
and is stopped by its PID when the session ends. Tests that need isolation use fresh
resource names (queues, streams, topics) rather than fresh servers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from pumphouse.devstack import (
    LOCAL_CREDENTIALS,
    KinesisMock,
    MotoServer,
    RedisServer,
    TansuBroker,
)

# Tests never reach a real AWS account: credentials are the local servers' dummy ones.
for _key, _value in LOCAL_CREDENTIALS.items():
    os.environ[_key] = _value
for _key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_key, None)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kinesis_mock() -> Iterator[KinesisMock]:
    server = KinesisMock()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    server = TansuBroker()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def unique_name() -> str:
    """A resource name no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"
