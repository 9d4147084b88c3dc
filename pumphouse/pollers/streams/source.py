"""What each stream source (Kinesis, DynamoDB Streams) provides: its client calls.

:mod:`pumphouse.pollers.kinesis` and :mod:`pumphouse.pollers.dynamodb` implement
:class:`StreamSource`; they are the only modules that talk to those clients.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pumphouse.errors import (
    SourceError,
)
from pumphouse.pollers.streams.lineage import ShardInfo

if TYPE_CHECKING:
    pass


# --- errors the sources raise ---------------------------------------------------------


class IteratorExpired(SourceError):
    """``ExpiredIteratorException``: get a new iterator and go on."""


class DataTrimmed(SourceError):
    """``TrimmedDataAccessException``: the records asked for are past the retention
    period; continue from the trim horizon."""


# --- what each source provides ------------------------------------------------------------


@dataclass(frozen=True)
class StartPosition:
    """Where to get a shard iterator."""

    kind: str
    """TRIM_HORIZON, LATEST, AT_TIMESTAMP or AFTER_SEQUENCE_NUMBER."""
    sequence_number: str | None = None
    timestamp: float | None = None


@dataclass
class ReadResult:
    """One ``GetRecords`` answer."""

    records: list[Any]
    next_iterator: str | None
    """None: the shard is closed and was read to its end."""
    millis_behind: int | None = None


class StreamSource(abc.ABC):
    """The client side of one stream: the only code that talks to Kinesis or DynamoDB
    Streams. Implementations map client errors to :class:`SourceError` subclasses
    (:class:`SourceThrottled`, :class:`SourceNotFound`, :class:`IteratorExpired`,
    :class:`DataTrimmed`)."""

    kind: str
    """``kinesis`` or ``dynamodb`` (failure record shape, metric labels)."""
    poll_interval: float = 1.0
    """Seconds between polls of a caught-up shard."""
    min_call_interval: float = 0.2
    """Fewest seconds between two ``GetRecords`` on one shard (per-shard call limit)."""
    page_limit: int = 10000
    """``Limit`` of a ``GetRecords`` call."""
    stream_arn: str
    created_at: float | None = None
    """The stream's creation time, set by :meth:`describe` (kept with checkpoints)."""

    @abc.abstractmethod
    async def describe(self) -> None:
        """Check the stream exists (:class:`SourceNotFound` otherwise)."""

    @abc.abstractmethod
    async def list_shards(self) -> list[ShardInfo]:
        """Every shard of the stream, with its parents (all pages)."""

    @abc.abstractmethod
    async def shard_iterator(self, shard_id: str, position: StartPosition) -> str | None:
        """A shard iterator; None if the shard has nothing there (closed and empty)."""

    @abc.abstractmethod
    async def get_records(self, iterator: str, limit: int) -> ReadResult:
        """One ``GetRecords`` call."""

    @abc.abstractmethod
    def shape(self, raw: Any, shard_id: str) -> tuple[dict[str, Any], str, float, str]:
        """A raw record as ``(Lambda record, sequence number, arrival, lane key)``."""
