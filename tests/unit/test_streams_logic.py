"""Pure logic of the stream sources: shard lineage, lease planning, lanes, windows."""

from __future__ import annotations

from collections import Counter

import orjson

from pumphouse.pollers.streams import (
    ShardInfo,
    ShardLineage,
    ShardState,
    WindowState,
    iso_window_time,
    lane_of,
    window_start,
    window_suffix,
)

# --- lineage ------------------------------------------------------------------------------


def _split_merge_lineage() -> ShardLineage:
    """0 splits into 1 and 2, which merge into 3; 4 is an unrelated open shard."""
    lineage = ShardLineage()
    lineage.update(
        [
            ShardInfo("s0", closed=True),
            ShardInfo("s1", ("s0",), closed=True),
            ShardInfo("s2", ("s0",), closed=True),
            ShardInfo("s3", ("s1", "s2")),
            ShardInfo("s4"),
        ]
    )
    return lineage


def test_children_wait_for_every_parent() -> None:
    lineage = _split_merge_lineage()
    assert lineage.eligible() == ["s0", "s4"]
    lineage.mark_ended(["s0"])
    assert lineage.eligible() == ["s1", "s2", "s4"]
    lineage.mark_ended(["s1"])
    assert lineage.eligible() == ["s2", "s4"], "the merged child waits for its adjacent parent"
    lineage.mark_ended(["s2"])
    assert lineage.eligible() == ["s3", "s4"]


def test_ended_checkpoints_from_a_listing_and_unknown_parents() -> None:
    lineage = ShardLineage()
    # s0 was trimmed from the stream before we ever listed it: its child may start.
    lineage.update([ShardInfo("s1", ("s0",)), ShardInfo("s2", ("s1",))], ended={"s1"})
    assert lineage.eligible() == ["s2"]
    assert lineage.states["s1"] is ShardState.ENDED


def test_shards_gone_from_the_listing_are_retired_and_never_revive() -> None:
    lineage = _split_merge_lineage()
    lineage.update([ShardInfo("s3", ("s1", "s2")), ShardInfo("s4")])
    assert lineage.states["s0"] is ShardState.RETIRED
    assert lineage.eligible() == ["s3", "s4"]
    lineage.set_state("s0", ShardState.PROCESSING)
    assert lineage.states["s0"] is ShardState.RETIRED
    lineage.set_state("s4", ShardState.PROCESSING)
    assert lineage.states["s4"] is ShardState.PROCESSING
    assert "s4" in lineage.eligible()


# --- lanes and windows --------------------------------------------------------------------


def test_lanes_are_stable_and_spread() -> None:
    keys = [f"key-{i}" for i in range(1000)]
    lanes = [lane_of(k, 4) for k in keys]
    assert lanes == [lane_of(k, 4) for k in keys]
    spread = Counter(lanes)
    assert set(spread) == {0, 1, 2, 3}
    assert min(spread.values()) > 150
    assert {lane_of(k, 1) for k in keys} == {0}


def test_windows_align_on_the_epoch() -> None:
    assert window_start(1_000_000_007.25, 10) == 1_000_000_000
    assert window_start(1_000_000_010.0, 10) == 1_000_000_010
    assert window_start(59.999, 60) == 0
    assert iso_window_time(1_596_128_400) == "2020-07-30T17:00:00Z"


def test_window_suffix_makes_a_valid_event() -> None:
    window = WindowState(1_596_128_400, 1_596_128_700, {"count": 3})
    suffix = window_suffix(
        window, shard_id="shardId-000000000006", stream_arn="arn:s", final=True,
        terminated_early=False,
    )
    event = orjson.loads(b'{"Records":[{"a":1}' + suffix)
    assert event == {
        "Records": [{"a": 1}],
        "window": {"start": "2020-07-30T17:00:00Z", "end": "2020-07-30T17:05:00Z"},
        "state": {"count": 3},
        "shardId": "shardId-000000000006",
        "eventSourceARN": "arn:s",
        "isFinalInvokeForWindow": True,
        "isWindowTerminatedEarly": False,
    }
    empty = orjson.loads(b'{"Records":[' + suffix)
    assert empty["Records"] == []


def test_window_state_round_trips_through_the_checkpoint() -> None:
    window = WindowState(60.0, 120.0, {"n": 1})
    assert WindowState.from_json(window.to_json()) == window
    assert WindowState.from_json(None) is None
    assert WindowState.from_json({"state": {}}) is None
