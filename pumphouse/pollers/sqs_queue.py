"""What an SQS mapping reads about its queue at start, and Lambda's start-up check of its
visibility timeout against the function's timeout (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from pumphouse.errors import SourceError

#: AWS recommends a visibility timeout of at least 6 x Timeout + window.
RECOMMENDED_VISIBILITY_FACTOR: Final = 6


@dataclass(frozen=True, kw_only=True)
class QueueInfo:
    """What the poller reads about its queue at start."""

    url: str
    arn: str
    name: str
    fifo: bool
    visibility_timeout: int
    """Seconds (the queue's ``VisibilityTimeout``)."""
    redrive_policy: dict[str, Any] | None = None
    """The parsed ``RedrivePolicy`` (``deadLetterTargetArn``, ``maxReceiveCount``)."""

    @classmethod
    def from_attributes(
        cls, *, url: str, arn: str, name: str, attributes: dict[str, str]
    ) -> QueueInfo:
        redrive: dict[str, Any] | None = None
        raw = attributes.get("RedrivePolicy")
        if raw:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            redrive = parsed if isinstance(parsed, dict) else None
        return cls(
            url=url,
            arn=attributes.get("QueueArn", arn),
            name=name,
            fifo=attributes.get("FifoQueue", "false").lower() == "true" or name.endswith(".fifo"),
            visibility_timeout=int(attributes.get("VisibilityTimeout", "30")),
            redrive_policy=redrive,
        )


def check_visibility_timeout(
    *, function_timeout: float, visibility_timeout: int, window: float, queue: str
) -> str | None:
    """Lambda's start-up check of an SQS mapping.

    Raises :class:`SourceError` (not retryable) when the function may run longer than
    its messages stay hidden; returns a warning when the visibility timeout is below
    AWS's advice (``6 x Timeout + window``), else None.
    """
    if function_timeout > visibility_timeout:
        raise SourceError(
            f"function timeout ({function_timeout:g} s) exceeds the visibility timeout "
            f"({visibility_timeout} s) of queue {queue}: raise the queue's VisibilityTimeout "
            f"to at least {function_timeout:g} s (AWS advises "
            f"{RECOMMENDED_VISIBILITY_FACTOR} x timeout + batching window)",
            retryable=False,
        )
    advised = RECOMMENDED_VISIBILITY_FACTOR * function_timeout + window
    if visibility_timeout < advised:
        return (
            f"queue {queue} has a visibility timeout of {visibility_timeout} s; AWS advises "
            f"at least {advised:g} s ({RECOMMENDED_VISIBILITY_FACTOR} x function timeout "
            "+ batching window) so that retries do not pile up"
        )
    return None
