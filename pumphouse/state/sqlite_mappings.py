"""Stored mappings in SQLite (see :mod:`pumphouse.state.mappings`).

Tables (created with the store's others)::

    mappings(namespace, uuid, version, data)
    mapping_revisions(namespace, revision)   -- one row per namespace

Every write is one ``BEGIN IMMEDIATE`` transaction: compare the version, write, bump
the revision; several processes sharing the file see one order of writes.
"""

from __future__ import annotations

import builtins
import sqlite3
from typing import TYPE_CHECKING

from pumphouse.errors import VersionConflict
from pumphouse.state.mappings import (
    StoredMapping,
    decode_stored_mapping,
    encode_stored_mapping,
)

if TYPE_CHECKING:
    from pumphouse.state.sqlite import _SQLiteBackend

SCHEMA = """
CREATE TABLE IF NOT EXISTS mappings (
    namespace TEXT NOT NULL,
    uuid      TEXT NOT NULL,
    version   INTEGER NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (namespace, uuid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mapping_revisions (
    namespace TEXT NOT NULL PRIMARY KEY,
    revision  INTEGER NOT NULL
) WITHOUT ROWID;
"""


class SQLiteMappingStore:
    """:class:`~pumphouse.state.mappings.MappingStore` in one SQLite table."""

    def __init__(self, backend: _SQLiteBackend) -> None:
        self._b = backend

    async def get(self, uuid: str) -> StoredMapping | None:
        ns = self._b.namespace

        def get(conn: sqlite3.Connection) -> tuple[int, str] | None:
            row = conn.execute(
                "SELECT version, data FROM mappings WHERE namespace = ? AND uuid = ?", (ns, uuid)
            ).fetchone()
            return None if row is None else (int(row[0]), str(row[1]))

        found = await self._b.run("get_mapping", get, write=False)
        return None if found is None else decode_stored_mapping(uuid, found[1], version=found[0])

    async def list(self) -> builtins.list[StoredMapping]:
        ns = self._b.namespace

        def rows(conn: sqlite3.Connection) -> builtins.list[tuple[str, int, str]]:
            return [
                (str(uuid), int(version), str(data))
                for uuid, version, data in conn.execute(
                    "SELECT uuid, version, data FROM mappings WHERE namespace = ? ORDER BY uuid",
                    (ns,),
                )
            ]

        found = await self._b.run("list_mappings", rows, write=False)
        return [decode_stored_mapping(uuid, data, version=version) for uuid, version, data in found]

    async def _write(self, uuid: str, expected: int, doc: str | None) -> int:
        ns = self._b.namespace

        def write(conn: sqlite3.Connection) -> tuple[bool, int]:
            row = conn.execute(
                "SELECT version FROM mappings WHERE namespace = ? AND uuid = ?", (ns, uuid)
            ).fetchone()
            stored = 0 if row is None else int(row[0])
            if stored != expected:
                return False, stored
            conn.execute(
                "INSERT INTO mapping_revisions (namespace, revision) VALUES (?, 1) "
                "ON CONFLICT (namespace) DO UPDATE SET revision = revision + 1",
                (ns,),
            )
            if doc is None:
                conn.execute("DELETE FROM mappings WHERE namespace = ? AND uuid = ?", (ns, uuid))
                return True, 0
            conn.execute(
                "INSERT INTO mappings (namespace, uuid, version, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, uuid) DO UPDATE SET "
                "version = excluded.version, data = excluded.data",
                (ns, uuid, stored + 1, doc),
            )
            return True, stored + 1

        written, version = await self._b.run("put_mapping", write, write=True)
        if not written:
            raise VersionConflict(
                f"mapping {uuid} is at version {version}, not {expected}: it was changed meanwhile"
            )
        return version

    async def put(self, mapping: StoredMapping, *, expected_version: int) -> StoredMapping:
        doc = encode_stored_mapping(mapping)
        version = await self._write(mapping.uuid, expected_version, doc)
        return decode_stored_mapping(mapping.uuid, doc, version=version)

    async def delete(self, uuid: str, *, expected_version: int) -> None:
        await self._write(uuid, expected_version, None)

    async def revision(self) -> int:
        ns = self._b.namespace

        def revision(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT revision FROM mapping_revisions WHERE namespace = ?", (ns,)
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._b.run("mappings_revision", revision, write=False)
