"""aiobotocore clients for the AWS-compatible services pumphouse talks to.

Endpoints follow the SDK's standard resolution (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_SQS``, ...), which aiobotocore applies by itself; an endpoint set in
``Settings.Endpoints`` wins over those. One :class:`AwsClients` per service process
holds one long-lived client per service, created on first use and closed at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.utils import parse_timestamp

#: Settings.Endpoints keys and the botocore service names they configure.
SERVICE_NAMES: Mapping[str, str] = {
    "Sqs": "sqs",
    "Sns": "sns",
    "S3": "s3",
    "Kinesis": "kinesis",
    "DynamoDB": "dynamodb",
    "DynamoDBStreams": "dynamodbstreams",
    "SecretsManager": "secretsmanager",
    "Kafka": "kafka",
}


class AwsClients:
    """Lazily created, shared aiobotocore clients, one per service."""

    def __init__(
        self,
        *,
        region: str,
        endpoints: Mapping[str, str | None] | None = None,
        max_pool_connections: int = 50,
        connect_timeout: float = 5.0,
        read_timeout: float = 70.0,
        max_attempts: int = 3,
    ) -> None:
        self.region = region
        self._endpoints = {k: v for k, v in (endpoints or {}).items() if v}
        self._session = get_session()
        self._session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=_parse_timestamp
        )
        self._config = AioConfig(
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            # Long polls (SQS WaitTimeSeconds up to 20) must fit inside the read timeout.
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )
        self._clients: dict[str, Any] = {}
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()

    def endpoint_for(self, service: str) -> str | None:
        """The endpoint configured in Settings.Endpoints for a botocore service name."""
        for key, name in SERVICE_NAMES.items():
            if name == service:
                return self._endpoints.get(key)
        return None

    async def client(self, service: str) -> Any:
        """The shared client for a botocore service name (``sqs``, ``kinesis``, ...)."""
        existing = self._clients.get(service)
        if existing is not None:
            return existing
        async with self._lock:
            existing = self._clients.get(service)
            if existing is not None:
                return existing
            kwargs: dict[str, Any] = {"region_name": self.region, "config": self._config}
            endpoint = self.endpoint_for(service)
            if endpoint:
                kwargs["endpoint_url"] = endpoint
            created = await self._stack.enter_async_context(
                self._session.create_client(service, **kwargs)
            )
            self._clients[service] = created
            return created

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()


def _parse_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, but epoch numbers become UTC datetimes directly.

    botocore's default builds each one in the local zone through dateutil (~25 us a
    value); reading Kinesis records, one timestamp each, spent more time there than in
    anything else pumphouse does per record. Same instants, UTC instead of local time.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    parsed: datetime = parse_timestamp(value)
    return parsed


def error_code(err: BaseException) -> str:
    """The AWS error code of a botocore ClientError (``""`` for anything else)."""
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "")
        return str(code)
    return ""


QUEUE_MISSING_CODES: Final = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
"""The error codes SQS answers for a queue that does not exist (query and JSON protocols)."""


def queue_missing(err: BaseException) -> bool:
    """Whether ``err`` is SQS saying the queue does not exist."""
    return error_code(err) in QUEUE_MISSING_CODES


async def queue_url(sqs: Any, name: str, account: str | None) -> str:
    """The URL of the queue ``name`` owned by ``account`` (the caller's own when empty)."""
    kwargs = {"QueueName": name}
    if account:
        kwargs["QueueOwnerAWSAccountId"] = account
    reply = await sqs.get_queue_url(**kwargs)
    return str(reply["QueueUrl"])
