"""Up/down bookkeeping shared by the state-store backends.

Every failed operation increments ``pumphouse_state_store_errors_total{store, operation}``
and sets ``pumphouse_state_store_up{store}`` to 0; the next successful operation sets it
back to 1. One warning is logged when the store goes down (not one per failed call while
it stays down: pollers retry every few seconds and would flood the log), and one info
line when it comes back.
"""

from __future__ import annotations

import time

import structlog

from pumphouse.errors import StateStoreError
from pumphouse.telemetry.metrics import Metrics, get_metrics

log = structlog.get_logger("pumphouse.state")


class StoreHealth:
    """Tracks whether one store's last operation succeeded."""

    def __init__(self, *, store: str, address: str, metrics: Metrics | None = None) -> None:
        self.store = store
        self.address = address
        self.metrics = metrics if metrics is not None else get_metrics()
        self._up: bool | None = None
        self._failures = 0
        self.down_since: float | None = None
        """Epoch seconds of the first failure since the last success (None while up)."""

    @property
    def up(self) -> bool | None:
        """``None`` before the first operation, then whether the last one succeeded."""
        return self._up

    def succeeded(self) -> None:
        if self._up is not True:
            if self._up is False:
                log.info(
                    "state_store_recovered",
                    store=self.store,
                    address=self.address,
                    failed_operations=self._failures,
                )
            self.metrics.state_store_up.labels(store=self.store).set(1)
            self._up = True
            self._failures = 0
            self.down_since = None

    def failed(self, operation: str, error: StateStoreError) -> StateStoreError:
        """Record a failed operation; returns ``error`` so callers can ``raise`` it."""
        metrics = self.metrics
        metrics.state_store_errors.labels(store=self.store, operation=operation).inc()
        metrics.state_store_up.labels(store=self.store).set(0)
        self._failures += 1
        if self._up is not False:
            self.down_since = time.time()
            log.warning(
                "state_store_down",
                store=self.store,
                address=self.address,
                operation=operation,
                error=str(error),
            )
        else:
            log.debug("state_store_still_down", store=self.store, operation=operation)
        self._up = False
        return error
