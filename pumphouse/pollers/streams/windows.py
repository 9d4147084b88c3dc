"""Tumbling windows (pure helpers): a record's window and the window fields of an event.

Tumbling windows
================

With ``TumblingWindowInSeconds`` W, a record belongs to the window
``[floor(arrival / W) * W, + W)`` of its arrival time. A shard then runs one lane
(windows carry state from one invoke to the next, so they are sequential; a configured
``ParallelizationFactor`` is not applied). Batches never mix windows. Each invoke
carries ``window``, ``state`` (``{}`` at the start of a window), ``shardId``,
``eventSourceARN``, ``isFinalInvokeForWindow`` and ``isWindowTerminatedEarly``; the
handler must return ``{"state": {...}}`` (a response without an object ``state`` is a
failed invoke and retried). The returned state is saved in the checkpoint with the
sequence number, so a restart continues the window. A window is *final* when a record of
a later window has been read, when the shard ended, or when the window's end has passed
and a ``GetRecords`` started after that end came back without a full page: the last
batch of the window (possibly with no record at all) is then invoked with
``isFinalInvokeForWindow: true``; its success checkpoints and drops the state. A state
over 1 MB terminates the window early: an extra invoke with no record,
``isFinalInvokeForWindow`` and ``isWindowTerminatedEarly`` true, then the window's
remaining records start over with ``{}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    pass


#: Largest tumbling-window state kept; a larger one terminates the window early.
MAX_WINDOW_STATE_BYTES = 1024 * 1024
#: Room left in a windowed event for the window fields and the state.
WINDOW_ENVELOPE_BYTES = MAX_WINDOW_STATE_BYTES + 4096


def window_start(arrival: float, seconds: int) -> float:
    """Start of the tumbling window an arrival time falls in (aligned on the epoch)."""
    return math.floor(arrival / seconds) * seconds


def iso_window_time(epoch: float) -> str:
    """``2020-07-30T17:00:00Z``: how ``window.start`` / ``window.end`` are written."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WindowState:
    """The open tumbling window of a shard."""

    start: float
    end: float
    state: Any = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "state": self.state}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> WindowState | None:
        if not doc or "start" not in doc or "end" not in doc:
            return None
        state = doc.get("state")
        return cls(float(doc["start"]), float(doc["end"]), state if state is not None else {})


def window_suffix(
    window: WindowState,
    *,
    shard_id: str,
    stream_arn: str,
    final: bool,
    terminated_early: bool,
) -> bytes:
    """What follows the records of a windowed event: ``],"window":{...},...}``."""
    tail = orjson.dumps(
        {
            "window": {"start": iso_window_time(window.start), "end": iso_window_time(window.end)},
            "state": window.state,
            "shardId": shard_id,
            "eventSourceARN": stream_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": terminated_early,
        }
    )
    return b"]," + tail[1:]
