"""The SQLite state store: the embedded default for a single replica.

URLs follow SQLAlchemy: ``sqlite:///relative/state.db``, ``sqlite:////absolute/state.db``.

stdlib :mod:`sqlite3` runs on one dedicated thread per store object (so the event loop
never blocks on disk I/O and the connection is only ever used from one thread). The
database is in WAL mode with ``synchronous=FULL`` (a committed fencing token is never
reissued, even after a power loss), and every read-check-write is one
``BEGIN IMMEDIATE`` transaction, so several *processes* sharing the file behave like
several replicas sharing Redis. Waiting for another writer's lock is bounded by
``timeout`` (``busy_timeout``); past it the operation fails with
:class:`~pumphouse.errors.StateStoreError`.

Lease expiry uses the wall clock of the machine holding the file (every process sharing
it runs there: SQLite must not be used over a network filesystem).

Tables (``namespace`` is the store's ``key_prefix``, so several deployments can share a
file)::

    checkpoints(namespace, mapping, shard, data, updated_at)
    leases(namespace, name, owner, token, expires_at)   -- owner NULL once released;
                                                        -- the row (and its token) is
                                                        -- never deleted
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pumphouse.errors import LeaseLost, StaleFencingToken, StateStoreError
from pumphouse.state.base import (
    Checkpoint,
    CheckpointStore,
    Lease,
    LeaseInfo,
    LeaseManager,
    decode_checkpoint,
    encode_checkpoint,
    ttl_millis,
)
from pumphouse.state.health import StoreHealth
from pumphouse.state.mappings import MappingStore
from pumphouse.state.sqlite_mappings import SCHEMA as _MAPPINGS_SCHEMA
from pumphouse.state.sqlite_mappings import SQLiteMappingStore
from pumphouse.telemetry.metrics import Metrics

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    namespace  TEXT NOT NULL,
    mapping    TEXT NOT NULL,
    shard      TEXT NOT NULL,
    data       TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, mapping, shard)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    owner      TEXT,
    token      INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
"""

_LeaseRow = tuple[str | None, int, float]


class _SQLiteBackend:
    """The connection, its thread and the error boundary shared by both facets."""

    def __init__(
        self, path: Path, *, namespace: str, timeout: float, metrics: Metrics | None
    ) -> None:
        self.path = path
        self.namespace = namespace
        self.timeout = timeout
        self.health = StoreHealth(store="sqlite", address=str(path), metrics=metrics)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pumphouse-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()

    # -- runs on the store's thread ------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=True
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                self._switch_to_wal(conn)
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in (_SCHEMA + _MAPPINGS_SCHEMA).split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        # Switching the journal mode does not wait on the busy handler: when several
        # processes open a new file at once, all but one get SQLITE_BUSY. Retry until the
        # timeout; the mode is stored in the file, so later opens find it set already.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                row = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
                continue
            if row is None or str(row[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {row!r})")
            return

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self._connection())

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- called from the event loop ------------------------------------------------------
    async def run(self, operation: str, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run ``fn`` on the store's thread (in a write transaction if ``write``)."""
        with self._lock:
            if self._closed:
                raise StateStoreError(f"SQLite state store {self.path} is closed")
            loop = asyncio.get_running_loop()
            runner = self._transaction if write else self._read
            future = loop.run_in_executor(self._executor, runner, fn)
        try:
            result = await future
        except (StaleFencingToken, LeaseLost):
            self.health.succeeded()  # the store answered; the caller lost its lease
            raise
        except (sqlite3.Error, OSError) as err:
            message = f"SQLite database {self.path}: {err}"
            raise self.health.failed(operation, StateStoreError(message)) from err
        self.health.succeeded()
        return result

    async def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, self._close)
        try:
            await future
        finally:
            self._executor.shutdown(wait=False)


def _lease_row(conn: sqlite3.Connection, namespace: str, name: str) -> _LeaseRow | None:
    row = conn.execute(
        "SELECT owner, token, expires_at FROM leases WHERE namespace = ? AND name = ?",
        (namespace, name),
    ).fetchone()
    return None if row is None else (row[0], int(row[1]), float(row[2]))


def _describe(row: _LeaseRow | None) -> str:
    if row is None:
        return "never acquired"
    owner, token, _ = row
    if owner is None:
        return f"released (last token {token})"
    return f"held by {owner!r} with token {token}"


def _check_fence(
    conn: sqlite3.Connection, namespace: str, lease: Lease, *, what: str, mapping: str, shard: str
) -> None:
    row = _lease_row(conn, namespace, lease.name)
    now = time.time()
    if row is not None and row[0] == lease.owner and row[1] == lease.token and row[2] > now:
        return
    expired = row is not None and row[0] == lease.owner and row[1] == lease.token
    raise StaleFencingToken(
        f"checkpoint {what} for {mapping}/{shard} refused: lease {lease.name!r} token "
        f"{lease.token} of {lease.owner!r} is not current (lease is {_describe(row)}"
        f"{', expired' if expired else ''})"
    )


class SQLiteCheckpointStore:
    """:class:`~pumphouse.state.base.CheckpointStore` in one SQLite table."""

    def __init__(self, backend: _SQLiteBackend) -> None:
        self._b = backend

    async def get(self, mapping: str, shard: str) -> Checkpoint | None:
        ns = self._b.namespace

        def get(conn: sqlite3.Connection) -> tuple[str, float] | None:
            row = conn.execute(
                "SELECT data, updated_at FROM checkpoints "
                "WHERE namespace = ? AND mapping = ? AND shard = ?",
                (ns, mapping, shard),
            ).fetchone()
            return None if row is None else (str(row[0]), float(row[1]))

        found = await self._b.run("get", get, write=False)
        return None if found is None else decode_checkpoint(found[0], updated_at=found[1])

    async def put(
        self, mapping: str, shard: str, checkpoint: Checkpoint, *, lease: Lease | None = None
    ) -> None:
        ns = self._b.namespace
        doc = encode_checkpoint(checkpoint)

        def put(conn: sqlite3.Connection) -> None:
            if lease is not None:
                _check_fence(conn, ns, lease, what="write", mapping=mapping, shard=shard)
            conn.execute(
                "INSERT INTO checkpoints (namespace, mapping, shard, data, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (namespace, mapping, shard) "
                "DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                (ns, mapping, shard, doc, time.time()),
            )

        await self._b.run("put", put, write=True)

    async def list(self, mapping: str) -> dict[str, Checkpoint]:
        ns = self._b.namespace

        def rows(conn: sqlite3.Connection) -> builtins.list[tuple[str, str, float]]:
            return [
                (str(shard), str(data), float(at))
                for shard, data, at in conn.execute(
                    "SELECT shard, data, updated_at FROM checkpoints "
                    "WHERE namespace = ? AND mapping = ? ORDER BY shard",
                    (ns, mapping),
                )
            ]

        found = await self._b.run("list", rows, write=False)
        return {shard: decode_checkpoint(data, updated_at=at) for shard, data, at in found}

    async def delete(self, mapping: str, shard: str, *, lease: Lease | None = None) -> None:
        ns = self._b.namespace

        def delete(conn: sqlite3.Connection) -> None:
            if lease is not None:
                _check_fence(conn, ns, lease, what="delete", mapping=mapping, shard=shard)
            conn.execute(
                "DELETE FROM checkpoints WHERE namespace = ? AND mapping = ? AND shard = ?",
                (ns, mapping, shard),
            )

        await self._b.run("delete", delete, write=True)


class SQLiteLeaseManager:
    """:class:`~pumphouse.state.base.LeaseManager` with ``BEGIN IMMEDIATE`` transactions."""

    def __init__(self, backend: _SQLiteBackend) -> None:
        self._b = backend

    def _take(
        self, conn: sqlite3.Connection, name: str, owner: str, ttl_ms: int, row: _LeaseRow | None
    ) -> Lease:
        """Give the lease to ``owner`` with the next token (the row keeps the counter)."""
        token = 1 if row is None else row[1] + 1
        expires_at = time.time() + ttl_ms / 1000
        conn.execute(
            "INSERT INTO leases (namespace, name, owner, token, expires_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (namespace, name) DO UPDATE SET "
            "owner = excluded.owner, token = excluded.token, expires_at = excluded.expires_at",
            (self._b.namespace, name, owner, token, expires_at),
        )
        return Lease(name=name, owner=owner, token=token, expires_at=expires_at)

    async def acquire(self, name: str, owner: str, *, ttl: float) -> Lease | None:
        _check_owner(owner)
        ttl_ms = ttl_millis(ttl)
        ns = self._b.namespace

        def acquire(conn: sqlite3.Connection) -> Lease | None:
            row = _lease_row(conn, ns, name)
            now = time.time()
            if row is not None and row[0] is not None and row[2] > now:
                if row[0] != owner:
                    return None
                expires_at = now + ttl_ms / 1000
                conn.execute(
                    "UPDATE leases SET expires_at = ? WHERE namespace = ? AND name = ?",
                    (expires_at, ns, name),
                )
                return Lease(name=name, owner=owner, token=row[1], expires_at=expires_at)
            return self._take(conn, name, owner, ttl_ms, row)

        return await self._b.run("acquire", acquire, write=True)

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        result = (await self.renew_all([lease], ttl=ttl))[0]
        if isinstance(result, LeaseLost):
            raise result
        return result

    async def renew_all(
        self, leases: Sequence[Lease], *, ttl: float
    ) -> builtins.list[Lease | LeaseLost]:
        if not leases:
            return []
        ttl_ms = ttl_millis(ttl)
        ns = self._b.namespace

        def renew_one(conn: sqlite3.Connection, lease: Lease, now: float) -> Lease | LeaseLost:
            row = _lease_row(conn, ns, lease.name)
            if row is None or row[0] != lease.owner or row[1] != lease.token:
                return LeaseLost(
                    f"lease {lease.name!r} token {lease.token} of {lease.owner!r} lost: "
                    f"now {_describe(row)}"
                )
            if row[2] <= now:
                return LeaseLost(f"lease {lease.name!r} of {lease.owner!r} expired before renewal")
            expires_at = now + ttl_ms / 1000
            conn.execute(
                "UPDATE leases SET expires_at = ? WHERE namespace = ? AND name = ?",
                (expires_at, ns, lease.name),
            )
            return Lease(
                name=lease.name, owner=lease.owner, token=lease.token, expires_at=expires_at
            )

        def renew(conn: sqlite3.Connection) -> builtins.list[Lease | LeaseLost]:
            now = time.time()
            return [renew_one(conn, lease, now) for lease in leases]

        return await self._b.run("renew", renew, write=True)

    async def release(self, lease: Lease) -> None:
        ns = self._b.namespace

        def release(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE leases SET owner = NULL, expires_at = 0 "
                "WHERE namespace = ? AND name = ? AND owner = ? AND token = ?",
                (ns, lease.name, lease.owner, lease.token),
            )

        await self._b.run("release", release, write=True)

    async def steal(
        self, name: str, owner: str, *, ttl: float, expected_owner: str | None = None
    ) -> Lease | None:
        _check_owner(owner)
        ttl_ms = ttl_millis(ttl)
        ns = self._b.namespace

        def steal(conn: sqlite3.Connection) -> Lease | None:
            row = _lease_row(conn, ns, name)
            if expected_owner is not None and (row is None or row[0] != expected_owner):
                return None
            return self._take(conn, name, owner, ttl_ms, row)

        return await self._b.run("steal", steal, write=True)

    async def list(self, prefix: str) -> builtins.list[LeaseInfo]:
        ns = self._b.namespace

        def rows(conn: sqlite3.Connection) -> builtins.list[LeaseInfo]:
            now = time.time()
            return [
                LeaseInfo(
                    name=str(name),
                    owner=owner,
                    token=int(token),
                    expires_at=float(expires_at),
                    expired=owner is None or float(expires_at) <= now,
                )
                for name, owner, token, expires_at in conn.execute(
                    "SELECT name, owner, token, expires_at FROM leases "
                    "WHERE namespace = ? AND substr(name, 1, length(?)) = ? ORDER BY name",
                    (ns, prefix, prefix),
                )
            ]

        return await self._b.run("list_leases", rows, write=False)


def _check_owner(owner: str) -> None:
    if not owner:
        raise ValueError("lease owner must be a non-empty string")


class SQLiteStateStore:
    """:class:`~pumphouse.state.base.StateStore` in one SQLite file."""

    kind = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        key_prefix: str = "pumphouse",
        timeout: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._backend = _SQLiteBackend(
            Path(path), namespace=key_prefix, timeout=timeout, metrics=metrics
        )
        self.checkpoints: CheckpointStore = SQLiteCheckpointStore(self._backend)
        self.leases: LeaseManager = SQLiteLeaseManager(self._backend)
        self.mappings: MappingStore = SQLiteMappingStore(self._backend)

    @property
    def path(self) -> Path:
        return self._backend.path

    @property
    def health(self) -> StoreHealth:
        return self._backend.health

    async def ping(self) -> None:
        await self._backend.run(
            "ping", lambda conn: conn.execute("SELECT 1").fetchone(), write=False
        )

    async def close(self) -> None:
        await self._backend.close()
