"""The Kinesis Data Streams source: the only module that talks to Kinesis.

Everything a stream source shares (shard lineage, leases, lanes, batching, retries,
checkpoints, tumbling windows) is in :mod:`pumphouse.pollers.streams`; this module
lists shards (``ListShards``, every page), gets shard iterators, calls ``GetRecords``,
maps Kinesis errors to pumphouse's and builds the Lambda record shape with
:func:`pumphouse.pollers.shapes.kinesis_record` (``invokeIdentityArn`` is the function's
``Role``).

Rates: a caught-up shard is polled about once a second; a shard that is behind
(``MillisBehindLatest`` > 0, or a full page) is polled again at once, but never more
than 5 times a second (Kinesis' per-shard ``GetRecords`` limit). ``Limit`` is 10000.

An ``EventSourceArn`` naming an enhanced fan-out *consumer*
(``arn:aws:kinesis:...:stream/<name>/consumer/<consumer>:<ts>``) is refused: pumphouse
reads with shared-throughput ``GetRecords`` only, so the mapping must name the stream.
"""

from __future__ import annotations

from typing import Any

from pumphouse.aws import error_code
from pumphouse.errors import SourceError, SourceNotFound, SourceThrottled
from pumphouse.pollers.base import MappingContext
from pumphouse.pollers.shapes import kinesis_record
from pumphouse.pollers.stream_positions import stream_created_at
from pumphouse.pollers.streams import (
    DataTrimmed,
    IteratorExpired,
    ReadResult,
    ShardInfo,
    StartPosition,
    StreamPoller,
    StreamSource,
)

_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "KMSThrottlingException",
}
_NOT_FOUND = {"ResourceNotFoundException"}


class KinesisStream(StreamSource):
    """``GetRecords``-based access to one Kinesis stream."""

    kind = "kinesis"
    poll_interval = 1.0
    min_call_interval = 0.2
    page_limit = 10000

    def __init__(self, ctx: MappingContext) -> None:
        mapping = ctx.mapping
        self.ctx = ctx
        self.stream_name = mapping.resource_name
        self.stream_arn = mapping.stream_arn or mapping.EventSourceArn or ""
        self.region = mapping.region
        self.invoke_identity_arn = ctx.function.role or ""

    async def _client(self) -> Any:
        return await self.ctx.aws.client("kinesis")

    def _error(self, operation: str, err: Exception) -> SourceError:
        code = error_code(err)
        where = f"Kinesis {operation} on stream {self.stream_name!r}"
        if code in _THROTTLED:
            return SourceThrottled(f"{where}: throttled ({code})")
        if code in _NOT_FOUND:
            return SourceNotFound(f"{where}: stream or shard not found ({err})")
        if code == "ExpiredIteratorException":
            return IteratorExpired(f"{where}: shard iterator expired")
        if code == "TrimmedDataAccessException" or (
            code == "InvalidArgumentException" and operation == "GetShardIterator"
        ):  # a sequence number the stream does not have: see pollers/positions.py
            return DataTrimmed(f"{where}: {err}")
        return SourceError(f"{where} failed: {code or type(err).__name__}: {err}")

    async def describe(self) -> None:
        client = await self._client()
        try:
            answer = await client.describe_stream_summary(StreamName=self.stream_name)
        except Exception as err:
            raise self._error("DescribeStreamSummary", err) from err
        summary = answer.get("StreamDescriptionSummary", {})
        self.created_at = stream_created_at(summary.get("StreamCreationTimestamp"))

    async def list_shards(self) -> list[ShardInfo]:
        client = await self._client()
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            try:
                response = await client.list_shards(**kwargs)
            except Exception as err:
                raise self._error("ListShards", err) from err
            for shard in response.get("Shards", []):
                parents = tuple(
                    p
                    for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                    if p
                )
                ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                shards.append(ShardInfo(shard["ShardId"], parents, closed=ending is not None))
            token = response.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    async def shard_iterator(self, shard_id: str, position: StartPosition) -> str | None:
        client = await self._client()
        kwargs: dict[str, Any] = {
            "StreamName": self.stream_name,
            "ShardId": shard_id,
            "ShardIteratorType": position.kind,
        }
        if position.sequence_number is not None:
            kwargs["StartingSequenceNumber"] = position.sequence_number
        if position.timestamp is not None:
            kwargs["Timestamp"] = position.timestamp
        try:
            response = await client.get_shard_iterator(**kwargs)
        except Exception as err:
            raise self._error("GetShardIterator", err) from err
        iterator = response.get("ShardIterator")
        return str(iterator) if iterator else None

    async def get_records(self, iterator: str, limit: int) -> ReadResult:
        client = await self._client()
        try:
            response = await client.get_records(ShardIterator=iterator, Limit=limit)
        except Exception as err:
            raise self._error("GetRecords", err) from err
        return ReadResult(
            records=response.get("Records", []),
            next_iterator=response.get("NextShardIterator"),
            millis_behind=response.get("MillisBehindLatest"),
        )

    def shape(self, raw: Any, shard_id: str) -> tuple[dict[str, Any], str, float, str]:
        record = kinesis_record(
            raw,
            shard_id=shard_id,
            stream_arn=self.stream_arn,
            region=self.region,
            invoke_identity_arn=self.invoke_identity_arn,
        )
        kinesis = record["kinesis"]
        return (
            record,
            kinesis["sequenceNumber"],
            kinesis["approximateArrivalTimestamp"],
            kinesis["partitionKey"],
        )


class KinesisPoller(StreamPoller):
    """A Kinesis stream mapping (see :mod:`pumphouse.pollers.streams`)."""

    def check(self) -> None:
        mapping = self.ctx.mapping
        if mapping.is_kinesis_consumer_arn:
            raise SourceError(
                f"EventSourceArn {mapping.EventSourceArn} is a Kinesis enhanced fan-out "
                "consumer ARN, which pumphouse does not support yet: use the stream ARN "
                f"{mapping.stream_arn} instead (records are read with GetRecords)",
                retryable=False,
            )

    def make_source(self) -> StreamSource:
        return KinesisStream(self.ctx)
