"""A tumbling-window aggregator: counts records per window in the state.

A batch holding a record whose ``case`` is ``"big"`` pads the state past 1 MB (the
window is then terminated early). Logged states show the padding as its length.
"""

from __future__ import annotations

from typing import Any

from recorder import log, record_items

#: Just over the 1 MB a window's state may hold.
PAD_BYTES = 1024 * 1024 + 1


def handler(event: dict[str, Any], context: Any) -> Any:
    state = dict(event.get("state") or {})
    items = record_items(event)
    state["count"] = state.get("count", 0) + len(items)
    state["invokes"] = state.get("invokes", 0) + 1
    if any(item.get("case") == "big" for item in items):
        state["pad"] = "x" * PAD_BYTES
    log(
        {
            "window": event["window"],
            "final": event["isFinalInvokeForWindow"],
            "early": event["isWindowTerminatedEarly"],
            "shard": event["shardId"],
            "source": event["eventSourceARN"],
            "state_in": _shown(event["state"]),
            "state_out": _shown(state),
            "seqs": [item["seq"] for item in items],
            "is": [item.get("i") for item in items],
        }
    )
    return {"state": state}


def _shown(state: dict[str, Any]) -> dict[str, Any]:
    if "pad" not in state:
        return state
    return {**state, "pad": len(state["pad"])}
