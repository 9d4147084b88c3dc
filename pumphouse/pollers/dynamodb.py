"""The DynamoDB Streams source: the only module that talks to DynamoDB Streams.

Everything a stream source shares is in :mod:`pumphouse.pollers.streams`; this module
lists shards (``DescribeStream``, every page, with their parents), gets shard iterators,
calls ``GetRecords``, maps DynamoDB Streams errors to pumphouse's, and builds the Lambda
record shape with :func:`pumphouse.pollers.shapes.dynamodb_record` — ``eventVersion``
``"1.1"`` and the images of the stream's ``StreamViewType``, never copied from what the
server returns (moto, for one, says ``"1.0"``).

Rates: a caught-up shard is polled 4 times a second (Lambda's rate for DynamoDB
Streams), a shard with a full page at once again, never more than 4 calls a second.
``Limit`` is 1000 (the API's maximum). With ``ParallelizationFactor`` > 1 records go to
lanes by their item key (``dynamodb.Keys``), so changes to one item stay in order.
"""

from __future__ import annotations

from typing import Any

import orjson

from pumphouse.aws import error_code
from pumphouse.errors import SourceError, SourceNotFound, SourceThrottled
from pumphouse.pollers.base import MappingContext
from pumphouse.pollers.shapes import dynamodb_record
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

_THROTTLED = {"LimitExceededException", "ThrottlingException", "RequestLimitExceeded"}


class DynamoDBStream(StreamSource):
    """Access to one DynamoDB stream (by its ARN)."""

    kind = "dynamodb"
    poll_interval = 0.25
    min_call_interval = 0.25
    page_limit = 1000

    def __init__(self, ctx: MappingContext) -> None:
        mapping = ctx.mapping
        self.ctx = ctx
        self.stream_arn = mapping.EventSourceArn or ""
        self.region = mapping.region

    async def _client(self) -> Any:
        return await self.ctx.aws.client("dynamodbstreams")

    def _error(self, operation: str, err: Exception) -> SourceError:
        code = error_code(err)
        where = f"DynamoDB Streams {operation} on {self.stream_arn}"
        if code in _THROTTLED:
            return SourceThrottled(f"{where}: throttled ({code})")
        if code == "ResourceNotFoundException":
            return SourceNotFound(f"{where}: stream or shard not found ({err})")
        if code == "ExpiredIteratorException":
            return IteratorExpired(f"{where}: shard iterator expired")
        if code == "TrimmedDataAccessException":
            return DataTrimmed(f"{where}: {err}")
        return SourceError(f"{where} failed: {code or type(err).__name__}: {err}")

    async def describe(self) -> None:
        client = await self._client()
        try:
            answer = await client.describe_stream(StreamArn=self.stream_arn, Limit=1)
        except Exception as err:
            raise self._error("DescribeStream", err) from err
        description = answer.get("StreamDescription", {})
        self.created_at = stream_created_at(description.get("CreationRequestDateTime"))

    async def list_shards(self) -> list[ShardInfo]:
        client = await self._client()
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            try:
                response = await client.describe_stream(**kwargs)
            except Exception as err:
                raise self._error("DescribeStream", err) from err
            description = response.get("StreamDescription", {})
            for shard in description.get("Shards", []):
                parent = shard.get("ParentShardId")
                ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                shards.append(
                    ShardInfo(
                        shard["ShardId"], (parent,) if parent else (), closed=ending is not None
                    )
                )
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs = {"StreamArn": self.stream_arn, "ExclusiveStartShardId": last}

    async def shard_iterator(self, shard_id: str, position: StartPosition) -> str | None:
        client = await self._client()
        kwargs: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": position.kind,
        }
        if position.sequence_number is not None:
            kwargs["SequenceNumber"] = position.sequence_number
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
        )

    def shape(self, raw: Any, shard_id: str) -> tuple[dict[str, Any], str, float, str]:
        record = dynamodb_record(raw, stream_arn=self.stream_arn, region=self.region)
        change = record["dynamodb"]
        key = orjson.dumps(change.get("Keys", {}), option=orjson.OPT_SORT_KEYS).decode()
        return (
            record,
            change["SequenceNumber"],
            float(change.get("ApproximateCreationDateTime", 0)),
            key,
        )


class DynamoDBStreamsPoller(StreamPoller):
    """A DynamoDB Streams mapping (see :mod:`pumphouse.pollers.streams`)."""

    def make_source(self) -> StreamSource:
        return DynamoDBStream(self.ctx)
