"""Checkpoints and leases: where each stream shard stands, and who may process it.

Two backends behind the same protocols (:mod:`pumphouse.state.base`), checked by one
contract test suite:

* ``redis://host:port/db`` / ``rediss://...`` — :mod:`pumphouse.state.redis`, for
  production and several replicas (Lua compare-and-set scripts, server clock);
* ``sqlite:///relative/state.db`` / ``sqlite:////absolute/state.db`` —
  :mod:`pumphouse.state.sqlite`, the embedded default for one replica (or several
  processes on one machine sharing the file).

Leases and fencing tokens
=========================

A lease gives one owner (a replica) the right to process one shard until ``expires_at``.
The store decides expiry with **its own clock** (Redis ``TIME`` inside the scripts; for
SQLite the clock of the machine holding the file), so replicas whose clocks disagree
still agree on who holds what. Every time a lease changes hands it gets a new **fencing
token**: a per-name counter that only grows, across owners, releases and expiries,
forever. A checkpoint write made under a lease carries the token, and the store checks,
in the same atomic step as the write, that this token is still the current one, held by
that owner and not expired. A replica that was paused or partitioned and comes back
believing it still owns the shard therefore cannot move the checkpoint: its write is
refused with :class:`~pumphouse.errors.StaleFencingToken`.

Rules:

* ``acquire`` takes a free, released or expired lease with a new token. Re-acquiring a
  lease we still hold (unexpired) renews it and keeps its token, so repeating an
  ``acquire`` whose reply was lost is harmless. Held by someone else: ``None``.
* ``renew`` extends our lease, or raises :class:`~pumphouse.errors.LeaseLost` once it
  expired or moved: the owner must then stop processing the shard (and not checkpoint).
  Renew every ``ttl / 3`` and treat "no successful renew for ``ttl``" (local monotonic
  clock) as lost too.
* ``steal`` takes a lease from its holder with a new token — for fair-share balancing;
  with ``expected_owner`` only if that owner still holds it (compare-and-set), so two
  replicas balancing at once cannot both take the same shard.
* ``release`` clears the owner but keeps the counter; a no-op if the lease moved on.

Worked example (ttl 10 s; times on the store's clock; shard ``orders/shard-0001``)::

    t=100  A: acquire("orders/shard-0001", "A", ttl=10)
              -> Lease(owner="A", token=7, expires_at=110)       counter 6 -> 7
    t=105  A: renew(lease, ttl=10) -> expires_at=115, token still 7
    t=106  A: checkpoints.put("orders", "shard-0001", seq="4950", lease=<token 7>)  written
    t=107  A stalls (long GC pause, network partition): no more renewals.
    t=112  B (balancing) sees A holds more than its share:
           steal("orders/shard-0001", "B", ttl=10, expected_owner="A")
              -> Lease(owner="B", token=8, expires_at=122)       counter 7 -> 8
    t=113  B resumes from "4950" and writes put(seq="4960", lease=<token 8>)   written
    t=114  A wakes up and finishes its in-flight batch:
           put(seq="4955", lease=<token 7>)
              -> StaleFencingToken ("lease is held by 'B' with token 8"); the
                 checkpoint stays at "4960"
           renew(<token 7>) -> LeaseLost; A drops the shard.
    t=130  B shuts down: release(<token 8>); the counter stays at 8.
    t=131  A: acquire(...) -> Lease(owner="A", token=9, ...)   (7 and 8 never come back)

Had A simply stopped renewing with nobody stealing, the lease would have expired at
t=115: from then on ``acquire`` by anyone (A included) hands out token 8, and A's token-7
writes are refused for the same reason.

Outages
=======

Every operation either succeeds or raises :class:`~pumphouse.errors.StateStoreError`
(connection refused, reset, timed out — with the address in the message); it never lets
a client library's exception through. Failures are counted in
``pumphouse_state_store_errors_total{store, operation}`` and flip
``pumphouse_state_store_up{store}`` to 0 until the next success. Callers back off and
retry with :func:`retry_state`; the Redis client reconnects by itself when the server
returns.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pumphouse.errors import StateStoreError
from pumphouse.state.base import (
    Checkpoint,
    CheckpointStore,
    Lease,
    LeaseInfo,
    LeaseManager,
    StateStore,
)
from pumphouse.state.retry import retry_state
from pumphouse.telemetry.metrics import Metrics

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "Lease",
    "LeaseInfo",
    "LeaseManager",
    "StateStore",
    "check_state_store",
    "open_state_store",
    "retry_state",
    "sqlite_path",
]

_SCHEMES = (
    "redis://host:port/db, rediss://host:port/db, sqlite:///relative/path.db or "
    "sqlite:////absolute/path.db"
)


def _redact(url: str) -> str:
    """The URL without a password, for error messages."""
    return re.sub(r"//([^/@]*)@", "//***@", url)


def sqlite_path(url: str) -> Path:
    """The file named by a ``sqlite:///`` URL (SQLAlchemy's convention).

    Whatever follows the three slashes is the path: ``sqlite:///.pumphouse/state.db`` is
    relative to the working directory, ``sqlite:////var/lib/pumphouse/state.db`` (four
    slashes) is absolute. A query string is ignored. Missing directories are created
    when the store first opens the file.
    """
    if not url.lower().startswith("sqlite:///"):
        raise ValueError(
            f"state store URL {_redact(url)!r}: expected sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    rest = url[len("sqlite:///") :].split("?", 1)[0]
    if rest == ":memory:":
        raise ValueError(
            "an in-memory SQLite state store would lose every checkpoint on restart; "
            "name a file: sqlite:///path/to/state.db"
        )
    if not rest.strip("/.") or rest.endswith("/"):
        raise ValueError(
            f"state store URL {_redact(url)!r} names no file: expected "
            "sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    return Path(rest)


def open_state_store(
    url: str,
    *,
    key_prefix: str = "pumphouse",
    timeout: float = 5.0,
    metrics: Metrics | None = None,
) -> StateStore:
    """A state store for ``url``; nothing is connected or opened until the first call.

    ``key_prefix`` namespaces every key (Redis) or row (SQLite), so deployments can share
    a server or a file. ``timeout`` bounds connecting and each reply (Redis) or waiting
    for another writer's lock (SQLite). ``metrics`` receives the store's error and up
    metrics (default: the process-wide registry). An unsupported or malformed URL raises
    ``ValueError`` naming the schemes that work.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    if not key_prefix:
        raise ValueError("key_prefix must be a non-empty string")
    scheme = urlsplit(url).scheme.lower() if "://" in url else url.split(":", 1)[0].lower()
    if scheme in {"redis", "rediss"}:
        from pumphouse.state.redis import RedisStateStore

        try:
            return RedisStateStore(url, key_prefix=key_prefix, timeout=timeout, metrics=metrics)
        except ValueError as err:
            raise ValueError(f"invalid state store URL {_redact(url)!r}: {err}") from err
    if scheme == "sqlite":
        from pumphouse.state.sqlite import SQLiteStateStore

        return SQLiteStateStore(
            sqlite_path(url), key_prefix=key_prefix, timeout=timeout, metrics=metrics
        )
    raise ValueError(f"unsupported state store URL {_redact(url)!r}: expected {_SCHEMES}")


async def check_state_store(url: str) -> None:
    """Open, ping and close the store at ``url`` (the CLI calls this at start).

    Raises :class:`~pumphouse.errors.StateStoreError` with one line saying what is wrong,
    e.g. ``cannot reach Redis at 127.0.0.1:1234: Connection refused``, or ``ValueError``
    for a URL that names no supported store.
    """
    store = open_state_store(url)
    try:
        await store.ping()
    except StateStoreError as err:
        verb = "cannot reach" if store.kind == "redis" else "cannot open"
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StateStoreError(f"{verb} {first_line}") from err
    finally:
        await store.close()
