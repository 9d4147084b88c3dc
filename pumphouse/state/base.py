"""Value types and protocols of the state store (checkpoints and leases).

Everything here is backend-neutral: :mod:`pumphouse.state.redis` and
:mod:`pumphouse.state.sqlite` implement these protocols and pass one shared contract
test suite (``tests/integration/test_state_contract.py``). The lease protocol, with a
worked example, is described in :mod:`pumphouse.state`.
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pumphouse.state.health import StoreHealth
    from pumphouse.state.mappings import MappingStore

from pumphouse.errors import LeaseLost


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """Where a stream shard stands, so that a restart or a new owner resumes exactly there."""

    sequence_number: str | None = None
    """Last *finished* sequence number of the shard (``None``: nothing finished yet)."""
    retries: dict[str, int] = field(default_factory=dict)
    """Retry counters of the batches being retried: attempts already made, by the first
    sequence number of the batch. With ``ParallelizationFactor`` > 1 each lane retrying
    at the same time has its own entry; an entry is dropped when its records finish."""
    window: dict[str, Any] | None = None
    """Tumbling-window state ``{start, end, state}`` (JSON-able)."""
    shard_ended: bool = False
    """The shard was read to its end and its last batch finished."""
    stream_created: float | None = None
    """Creation time (epoch seconds) of the stream the checkpoint was written for: a
    stream or table deleted and recreated under the same name has a new one, and its
    old checkpoints no longer mean anything (:mod:`pumphouse.pollers.positions`).
    ``None`` for checkpoints written before it was kept."""
    updated_at: float = 0.0
    """Epoch seconds of the last write, set by the store (the value passed in is ignored)."""


@dataclass(frozen=True, kw_only=True)
class Lease:
    """The right, until ``expires_at``, to process the thing named ``name``.

    ``token`` is the fencing token: strictly increasing per lease name, across owners,
    forever. Every checkpoint write made under a lease carries it, and the store refuses
    the write once a newer token exists (:class:`~pumphouse.errors.StaleFencingToken`).
    ``expires_at`` is epoch seconds on the *store's* clock (Redis ``TIME``; for SQLite,
    the clock of the machine holding the file): schedule renewals from the ``ttl`` you
    asked for, not by comparing ``expires_at`` with the local clock.
    """

    name: str
    owner: str
    token: int
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class LeaseInfo:
    """A lease as seen by :meth:`LeaseManager.list` (for fair-share balancing).

    ``owner`` is ``None`` after a release; ``expired`` is true when nobody holds the
    lease now (released, or its holder stopped renewing), i.e. ``acquire`` would succeed.
    ``token`` is the last token issued for the name.
    """

    name: str
    owner: str | None
    token: int
    expires_at: float
    expired: bool


class CheckpointStore(Protocol):
    """Per mapping and shard checkpoints."""

    async def get(self, mapping: str, shard: str) -> Checkpoint | None:
        """The shard's checkpoint, or ``None`` if none was written."""
        ...

    async def put(
        self, mapping: str, shard: str, checkpoint: Checkpoint, *, lease: Lease | None = None
    ) -> None:
        """Write the checkpoint atomically.

        With ``lease``, the check and the write are one atomic step: the write is refused
        with :class:`~pumphouse.errors.StaleFencingToken` unless the lease ``lease.name``
        is currently held by ``lease.owner`` with exactly ``lease.token`` and not expired.
        """
        ...

    async def list(self, mapping: str) -> dict[str, Checkpoint]:
        """Every checkpoint of the mapping, by shard."""
        ...

    async def delete(self, mapping: str, shard: str, *, lease: Lease | None = None) -> None:
        """Remove the shard's checkpoint (no-op if absent); fenced like :meth:`put`."""
        ...


class LeaseManager(Protocol):
    """Leases with fencing tokens; see :mod:`pumphouse.state` for the protocol."""

    async def acquire(self, name: str, owner: str, *, ttl: float) -> Lease | None:
        """Take a free or expired lease (new token), or renew our own unexpired one (same
        token). ``None`` if another owner holds it unexpired."""
        ...

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend the lease to ``ttl`` seconds from now (store clock).

        Raises :class:`~pumphouse.errors.LeaseLost` if the lease expired, was released or
        another owner (or a newer token) holds it.
        """
        ...

    async def renew_all(
        self, leases: Sequence[Lease], *, ttl: float
    ) -> builtins.list[Lease | LeaseLost]:
        """:meth:`renew` every lease in one round trip; per lease, the renewed lease or the
        :class:`~pumphouse.errors.LeaseLost` that :meth:`renew` would have raised.

        A replica holding hundreds of shard leases renews them all each cycle: one
        request instead of one per lease keeps a large replica from losing its own leases
        to the time the renewals take.
        """
        ...

    async def release(self, lease: Lease) -> None:
        """Give the lease up; no-op if it is no longer ours. The token is not reused."""
        ...

    async def steal(
        self, name: str, owner: str, *, ttl: float, expected_owner: str | None = None
    ) -> Lease | None:
        """Take the lease from its current holder with a new token.

        With ``expected_owner``, only if the lease is still recorded as held by that owner
        (compare-and-set); ``None`` otherwise.
        """
        ...

    async def list(self, prefix: str) -> builtins.list[LeaseInfo]:
        """Every lease whose name starts with ``prefix``, sorted by name."""
        ...


class StateStore(Protocol):
    """A checkpoint store, a lease manager and the API's mappings sharing one backend."""

    checkpoints: CheckpointStore
    leases: LeaseManager
    mappings: MappingStore
    """Mappings created or changed through the API (:mod:`pumphouse.state.mappings`)."""
    kind: str
    """``"redis"`` or ``"sqlite"`` (also the ``store`` label of the metrics)."""
    @property
    def health(self) -> StoreHealth:
        """Whether the last operation succeeded, and since when the store fails."""
        ...

    async def ping(self) -> None:
        """Raise :class:`~pumphouse.errors.StateStoreError` when the store is unreachable."""
        ...

    async def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""
        ...


# --- helpers shared by the implementations ---------------------------------------------


def ttl_millis(ttl: float) -> int:
    """A lease ttl in whole milliseconds (at least 1); refuses non-positive values."""
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"lease ttl must be a positive number of seconds, got {ttl!r}")
    return max(1, round(ttl * 1000))


def encode_checkpoint(checkpoint: Checkpoint) -> str:
    """The checkpoint as a JSON object, *without* ``updated_at`` (the store adds it).

    Raises ``TypeError`` / ``ValueError`` (before touching the store) when ``window`` is
    not JSON-able.
    """
    retries = {str(seq): int(n) for seq, n in checkpoint.retries.items()}
    doc: dict[str, Any] = {
        "sequence_number": checkpoint.sequence_number,
        "retries": retries,
        "window": checkpoint.window,
        "shard_ended": checkpoint.shard_ended,
    }
    if checkpoint.stream_created is not None:
        doc["stream_created"] = checkpoint.stream_created
    if retries:
        # The one-counter form older versions read (they ignore ``retries``): during a
        # rolling upgrade an older replica taking the shard over still continues one
        # counter, as it always did.
        first = min(retries, key=_sequence_order)
        doc["retry_attempts"] = retries[first]
        doc["retry_sequence_number"] = first
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def decode_checkpoint(text: str, *, updated_at: float | None = None) -> Checkpoint:
    """Parse what :func:`encode_checkpoint` wrote (unknown keys are ignored).

    A checkpoint written before per-batch counters existed holds one counter,
    ``retry_attempts`` for the batch starting at ``retry_sequence_number``: it becomes
    the one entry of ``retries``.
    """
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError(f"checkpoint is not a JSON object: {text[:80]!r}")
    window = doc.get("window")
    stamp = updated_at if updated_at is not None else doc.get("updated_at", 0.0)
    retries: dict[str, int] = {}
    stored = doc.get("retries")
    if isinstance(stored, dict):
        retries = {str(seq): n for seq, n in stored.items() if isinstance(n, int) and n > 0}
    elif doc.get("retry_sequence_number") is not None and int(doc.get("retry_attempts") or 0):
        retries = {str(doc["retry_sequence_number"]): int(doc["retry_attempts"])}
    return Checkpoint(
        sequence_number=_opt_str(doc.get("sequence_number")),
        retries=retries,
        window=window if isinstance(window, dict) else None,
        shard_ended=bool(doc.get("shard_ended", False)),
        updated_at=float(stamp or 0.0),
        stream_created=_opt_float(doc.get("stream_created")),
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _sequence_order(sequence_number: str) -> tuple[int, int, str]:
    """Sort key of sequence numbers: numerically when they are digits (Kinesis and
    DynamoDB Streams), as text otherwise."""
    if sequence_number.isdigit():
        return (0, int(sequence_number), "")
    return (1, 0, sequence_number)
