"""What every source poller is given and what it must do.

The service builds one :class:`MappingContext` per enabled mapping and hands it to the
source's :class:`Poller`. A poller:

* runs until ``ctx.stopping`` is set, then stops reading, lets in-flight batches finish
  (bounded by ``ctx.shutdown_timeout``), flushes checkpoints / commits offsets, releases
  leases, and returns;
* reports its health through ``ctx.status`` (``ready()`` once the source answered,
  ``processed()`` / ``no_records()`` / ``problem()`` as batches go), which is what
  ``/readyz`` and ``/mappings`` show;
* feeds ``ctx.status.progress`` (:mod:`pumphouse.pollers.progress`) whether its source
  has work and how many shards it owns, so that a mapping that stopped making progress
  is reported stalled even while its task runs;
* raises :class:`~pumphouse.errors.SourceError` (or anything else) when it cannot go
  on; the service then marks the mapping ``PROBLEM: ...`` and restarts it with capped,
  jittered exponential backoff. Other mappings are never affected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pumphouse.pollers.positions import PositionReset
from pumphouse.pollers.progress import ProgressTracker, Stall

if TYPE_CHECKING:
    from pumphouse.aws import AwsClients
    from pumphouse.config import Config, EventSourceMapping
    from pumphouse.runtime import FunctionSpec, Runtime
    from pumphouse.state import StateStore
    from pumphouse.telemetry.metrics import MappingMetrics


class MappingState(StrEnum):
    """The ``State`` of an event source mapping, as the Lambda API reports it."""

    CREATING = "Creating"
    ENABLING = "Enabling"
    ENABLED = "Enabled"
    DISABLING = "Disabling"
    DISABLED = "Disabled"


NO_RECORDS = "No records processed"
OK = "OK"
DEFAULT_STALL_SECONDS = 60.0


@dataclass
class MappingStatus:
    """A mapping's live status: what ``/mappings`` and ``/readyz`` report."""

    uuid: str
    label: str
    function: str
    source: str
    state: MappingState = MappingState.CREATING
    state_transition_reason: str = "User action"
    last_processing_result: str = NO_RECORDS
    last_error: str | None = None
    last_error_at: float | None = None
    source_reachable: bool = False
    metrics: MappingMetrics | None = field(default=None, repr=False)
    progress: ProgressTracker = field(
        default_factory=lambda: ProgressTracker(
            stall_after=DEFAULT_STALL_SECONDS, started=time.time()
        ),
        repr=False,
    )
    store_down_since: Callable[[], float | None] = field(default=lambda: None, repr=False)
    """Since when the state store the mapping depends on fails (streams set it)."""

    def __post_init__(self) -> None:
        if self.metrics is not None and self.source != "sqs":  # SQS has no positions
            self.metrics.declare_position_resets(tuple(r.value for r in PositionReset))
        if self.metrics is not None:  # evaluated when scraped: progress has no ticks
            self.metrics.stalled.set_function(lambda: 1.0 if self.stall() else 0.0)
            self.metrics.problem.set_function(
                lambda: 1.0 if self.result().startswith("PROBLEM") else 0.0
            )

    def stall(self, now: float | None = None) -> Stall | None:
        """The stall in force (see :mod:`pumphouse.pollers.progress`); only an Enabled
        mapping can be stalled."""
        if self.state is not MappingState.ENABLED:
            return None
        return self.progress.evaluate(
            time.time() if now is None else now, store_down_since=self.store_down_since()
        )

    def result(self, stall: Stall | None = None) -> str:
        """``LastProcessingResult``: ``PROBLEM: <reason>`` while stalled."""
        stall = stall if stall is not None else self.stall()
        return f"PROBLEM: {stall.reason}" if stall is not None else self.last_processing_result

    def set_state(self, state: MappingState, reason: str | None = None) -> None:
        self.state = state
        if reason is not None:
            self.state_transition_reason = reason
        if self.metrics is not None:
            self.metrics.set_state(state.value, all_states=tuple(s.value for s in MappingState))

    def ready(self) -> None:
        """The source answered: the mapping counts as started for ``/readyz``."""
        self.source_reachable = True
        if self.state in (MappingState.CREATING, MappingState.ENABLING):
            self.set_state(MappingState.ENABLED)

    def processed(self) -> None:
        """A batch finished (whatever the function returned, the mapping worked)."""
        self.last_processing_result = OK
        self.progress.finished(time.time())
        if self.metrics is not None:
            self.metrics.problem.set(0)

    def function_failed(self, error: str | None = None, *, problem: bool = True) -> None:
        """An invocation failed (the function raised, timed out, crashed, or could not
        run). ``error`` (the error's type and message, never a secret) becomes
        ``LastError``; with ``problem`` the result becomes ``PROBLEM: Function call
        failed``. The rule deciding when is :class:`pumphouse.pollers.dispatch.
        ProcessingResultRule`."""
        if error is not None:
            self.last_error = error
            self.last_error_at = time.time()
        if not problem:
            return
        self.last_processing_result = "PROBLEM: Function call failed"
        if self.metrics is not None:
            self.metrics.problem.set(1)

    def problem(self, message: str) -> None:
        """The mapping cannot make progress (source unreachable, misconfigured, ...)."""
        self.last_processing_result = f"PROBLEM: {message}"
        self.last_error = message
        self.last_error_at = time.time()
        if self.metrics is not None:
            self.metrics.problem.set(1)

    def to_json(self) -> dict[str, Any]:
        stall = self.stall()
        return {
            "UUID": self.uuid,
            "Label": self.label,
            "FunctionName": self.function,
            "Source": self.source,
            "State": self.state.value,
            "StateTransitionReason": self.state_transition_reason,
            "LastProcessingResult": self.result(stall),
            "LastError": self.last_error,
            "LastErrorAt": self.last_error_at,
            "SourceReachable": self.source_reachable,
            "Stalled": stall is not None,
            "StalledReason": stall.reason if stall is not None else None,
            "StalledSince": stall.since if stall is not None else None,
        }


@dataclass
class MappingContext:
    """Everything a poller needs, built by the service."""

    mapping: EventSourceMapping
    config: Config
    function: FunctionSpec
    runtime: Runtime
    state: StateStore
    aws: AwsClients
    metrics: MappingMetrics
    status: MappingStatus
    stopping: asyncio.Event
    replica_id: str
    shutdown_timeout: float = 30.0
    wall_clock: Callable[[], float] = time.time
    """Epoch seconds: the clock of record age (``MaximumRecordAgeInSeconds``)."""


class Poller(Protocol):
    """One source's polling loop for one mapping."""

    async def run(self) -> None:
        """Poll until ``ctx.stopping`` is set, then drain and return (see module doc)."""
        ...
