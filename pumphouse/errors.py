"""pumphouse's exception hierarchy.

Source modules (``pollers/<source>.py``) and the state store map their client libraries'
errors to these at the boundary, with the address or resource in the message, so that
the rest of the service handles one set of types.
"""

from __future__ import annotations


class PumphouseError(Exception):
    """Base of every error pumphouse raises on purpose."""


class ConfigError(PumphouseError):
    """The configuration is invalid. ``problems`` lists every one as ``path: message``."""

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s){where}:\n{lines}")


class SourceError(PumphouseError):
    """A call to an event source failed (network, permissions, missing resource)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class SourceThrottled(SourceError):
    """The source asked us to slow down (throughput exceeded, rate limited)."""


class SourceNotFound(SourceError):
    """The queue, stream, table or topic does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class StateStoreError(PumphouseError):
    """The checkpoint store or lease manager could not complete an operation.

    Raised for outages (connection refused, timeouts); callers back off and retry.
    """


class StaleFencingToken(StateStoreError):
    """A write carried a fencing token older than the lease's current one: another
    owner has taken the lease, so this writer must stop."""


class LeaseLost(StateStoreError):
    """The lease expired or was taken by another owner."""


class DestinationError(PumphouseError):
    """An on-failure record could not be delivered to its destination."""


class VersionConflict(StateStoreError):
    """A compare-and-set write of a stored mapping found another version than the one
    it expected: someone else changed the mapping first (read it again, then retry)."""
