"""What Kinesis and DynamoDB Streams share, split along its seams as the Kinesis Client
Library separates them.

:mod:`pumphouse.pollers.kinesis` and :mod:`pumphouse.pollers.dynamodb` only talk to
their client (list shards, get an iterator, get records, turn a record into its Lambda
shape); everything else lives in this package:

=================  ====================================================================
module             what it does
=================  ====================================================================
``source``         what a source provides (:class:`StreamSource`), its errors
``lineage``        shard lineage (pure): which shards may be read, given their parents
``leases``         lease coordination (pure): which leases to acquire or steal
``records``        a record as kept in memory; how a lane's batch is cut; the
                   dispatcher's binding of stream records
``windows``        tumbling windows (pure helpers)
``consumer``       the per-shard consumer: reader, lanes, checkpoints
``poller``         the mapping: discovery, leases, one consumer per leased shard, the
                   start position of a shard
=================  ====================================================================

The error policy, the invocation and the on-failure destination are the dispatcher's
(:mod:`pumphouse.pollers.dispatch`), shared with SQS and Kafka.
"""

from __future__ import annotations

from pumphouse.pollers.streams.consumer import ConsumerState, ShardExit, ShardProcessor
from pumphouse.pollers.streams.leases import LeasePlan, plan_leases
from pumphouse.pollers.streams.lineage import ShardInfo, ShardLineage, ShardState
from pumphouse.pollers.streams.poller import StreamPoller, start_position
from pumphouse.pollers.streams.records import StreamBinding, StreamRecord, lane_of, take_batch
from pumphouse.pollers.streams.source import (
    DataTrimmed,
    IteratorExpired,
    ReadResult,
    StartPosition,
    StreamSource,
)
from pumphouse.pollers.streams.windows import (
    MAX_WINDOW_STATE_BYTES,
    WindowState,
    iso_window_time,
    window_start,
    window_suffix,
)

__all__ = [
    "MAX_WINDOW_STATE_BYTES",
    "ConsumerState",
    "DataTrimmed",
    "IteratorExpired",
    "LeasePlan",
    "ReadResult",
    "ShardExit",
    "ShardInfo",
    "ShardLineage",
    "ShardProcessor",
    "ShardState",
    "StartPosition",
    "StreamBinding",
    "StreamPoller",
    "StreamRecord",
    "StreamSource",
    "WindowState",
    "iso_window_time",
    "lane_of",
    "plan_leases",
    "start_position",
    "take_batch",
    "window_start",
    "window_suffix",
]
