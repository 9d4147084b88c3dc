"""How many receive loops an SQS mapping runs, and how long each receive waits (pure).

Scaling
-------
:class:`PollerScaler`: start with ``min(5, limit)`` loops (AWS starts at 5 concurrent
batches); add one loop whenever a receive comes back full (messages are waiting), at
most one every 0.2 s (AWS: up to 300 per minute); remove one when a long poll comes back
empty, at most one per second, never below one. The limit is
``ScalingConfig.MaximumConcurrency`` when set, and never more than the runtime's slots
for the function (reserved concurrency, global limit), which also cap the concurrent
invocations themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

#: Longest long poll SQS allows.
MAX_WAIT_SECONDS: Final = 20
#: AWS starts an SQS mapping with five concurrent batches.
INITIAL_POLLERS: Final = 5


def receive_wait_seconds(
    deadline: float | None, now: float, *, longest: int = MAX_WAIT_SECONDS
) -> int:
    """``WaitTimeSeconds`` for the next receive.

    Without an open batch to close: the longest long poll (20 s). With one: whole seconds
    left until its window closes, so the poll returns in time; under a second left, a
    short poll (0).
    """
    if deadline is None:
        return longest
    left = deadline - now
    if left < 1.0:
        return 0
    return min(longest, int(left))


@dataclass
class PollerScaler:
    """How many receive loops a mapping runs (see the module docstring, *Scaling*).

    Pure: the loops call :meth:`on_full` / :meth:`on_empty` with the current time and
    act on the answer.
    """

    maximum: int
    initial: int = INITIAL_POLLERS
    minimum: int = 1
    grow_interval: float = 0.2
    shrink_interval: float = 1.0
    target: int = field(init=False)
    _last_grow: float = field(default=float("-inf"), init=False)
    _last_shrink: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        self.maximum = max(self.minimum, self.maximum)
        self.target = max(self.minimum, min(self.initial, self.maximum))

    def on_full(self, now: float) -> bool:
        """A receive came back full: messages are waiting. True: start one more loop."""
        if self.target >= self.maximum or now - self._last_grow < self.grow_interval:
            return False
        self.target += 1
        self._last_grow = now
        return True

    def on_empty(self, now: float) -> bool:
        """A long poll came back empty. True: the calling loop should stop."""
        if self.target <= self.minimum or now - self._last_shrink < self.shrink_interval:
            return False
        self.target -= 1
        self._last_shrink = now
        return True

    def set_maximum(self, maximum: int) -> None:
        """A new limit (the runtime's slots changed); loops above it stop on their own."""
        self.maximum = max(self.minimum, maximum)
        self.target = min(self.target, self.maximum)
