"""A tumbling-window aggregator: counts records per window in the state."""

from __future__ import annotations

from typing import Any

from recorder import log, record_items


def handler(event: dict[str, Any], context: Any) -> Any:
    state = dict(event.get("state") or {})
    items = record_items(event)
    state["count"] = state.get("count", 0) + len(items)
    state["invokes"] = state.get("invokes", 0) + 1
    log(
        {
            "window": event["window"],
            "final": event["isFinalInvokeForWindow"],
            "early": event["isWindowTerminatedEarly"],
            "shard": event["shardId"],
            "source": event["eventSourceARN"],
            "state_in": event["state"],
            "state_out": state,
            "seqs": [item["seq"] for item in items],
            "is": [item.get("i") for item in items],
        }
    )
    return {"state": state}
