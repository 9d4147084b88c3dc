"""The ``kafka://<topic>`` on-failure destination of a Kafka mapping: a producer to the
same cluster, with the mapping's credentials."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from aiokafka import AIOKafkaProducer

from pumphouse.errors import DestinationError
from pumphouse.pollers.destinations import (
    S3KeyParts,
    encode_failure_record,
)
from pumphouse.pollers.kafka_security import KafkaSecurity

if TYPE_CHECKING:
    pass

PRODUCER_MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024
"""A ``kafka://`` failure message holds one record's event (up to 6 MB, more for an
oversized record): the producer must allow it (the broker's ``message.max.bytes`` too)."""


class KafkaTopicDestination:
    """``kafka://<topic>``: one message per failed record, produced to the same cluster.

    A plain (non-idempotent) producer, created on first use and re-created after a
    failure. Implements :class:`~pumphouse.pollers.destinations.FailureDestination`.
    """

    destination_type: str = "kafka"

    def __init__(
        self,
        topic: str,
        *,
        bootstrap_servers: Sequence[str],
        security: KafkaSecurity,
        client_id: str | None = None,
        request_timeout_ms: int = 30_000,
    ) -> None:
        self.topic = topic
        self._bootstrap = list(bootstrap_servers)
        self._security = security
        self._client_id = client_id
        self._request_timeout_ms = request_timeout_ms
        self._producer: Any = None
        self._lock = asyncio.Lock()

    @property
    def target(self) -> str:
        return f"kafka://{self.topic}"

    async def _ensure_producer(self) -> Any:
        async with self._lock:
            if self._producer is None:
                options: dict[str, Any] = {
                    "bootstrap_servers": self._bootstrap,
                    "acks": "all",
                    "enable_idempotence": False,  # tansu (and some brokers) refuse it
                    "max_request_size": PRODUCER_MAX_REQUEST_BYTES,
                    "request_timeout_ms": self._request_timeout_ms,
                    **self._security.aiokafka_options(),
                }
                if self._client_id:
                    options["client_id"] = f"{self._client_id}-on-failure"
                producer = AIOKafkaProducer(**options)
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def deliver(
        self,
        record: Mapping[str, Any],
        *,
        payload: bytes | None = None,
        s3_key_parts: S3KeyParts | None = None,
        message_key: bytes | None = None,
    ) -> None:
        value = encode_failure_record(record, payload=payload)
        try:
            producer = await self._ensure_producer()
            await producer.send_and_wait(self.topic, value, key=message_key)
        except Exception as err:
            await self.close()
            raise DestinationError(
                f"cannot deliver an on-failure record to {self.target}: {describe_kafka_error(err)}"
            ) from err

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


def describe_kafka_error(err: BaseException) -> str:
    """``Type: message`` (aiokafka's messages often start with their type already)."""
    name = type(err).__name__
    text = str(err)
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


__all__ = ["PRODUCER_MAX_REQUEST_BYTES", "KafkaTopicDestination", "describe_kafka_error"]
