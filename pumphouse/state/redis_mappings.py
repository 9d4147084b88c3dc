"""Stored mappings on Redis (see :mod:`pumphouse.state.mappings`).

Keys, under the store's prefix::

    {prefix}:mappings           hash  uuid -> mapping JSON
    {prefix}:mapping-versions   hash  uuid -> version
    {prefix}:mappings-revision  int   grows on every write (INCR)

A write is one Lua script: compare the version, write the document and the new
version, bump the revision, atomically.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from pumphouse.errors import VersionConflict
from pumphouse.state.mappings import (
    StoredMapping,
    decode_stored_mapping,
    encode_stored_mapping,
)

if TYPE_CHECKING:
    from pumphouse.state.redis import _RedisBackend

# KEYS: docs, versions, revision   ARGV: uuid, expected version, JSON ('' to delete)
# -> {1, new version} written, {0, stored version} conflict
_PUT = """
local stored = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if stored ~= tonumber(ARGV[2]) then
  return {0, stored}
end
redis.call('INCR', KEYS[3])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {1, 0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], stored + 1)
return {1, stored + 1}
"""


class RedisMappingStore:
    """:class:`~pumphouse.state.mappings.MappingStore` on two Redis hashes."""

    def __init__(self, backend: _RedisBackend) -> None:
        self._b = backend
        self._put = backend.client.register_script(_PUT)
        prefix = backend.prefix
        self._keys = [
            f"{prefix}:mappings",
            f"{prefix}:mapping-versions",
            f"{prefix}:mappings-revision",
        ]

    async def get(self, uuid: str) -> StoredMapping | None:
        docs, versions, _ = self._keys

        async def fetch() -> list[Any]:
            async with self._b.client.pipeline(transaction=True) as pipe:
                pipe.hget(docs, uuid)
                pipe.hget(versions, uuid)
                replies: list[Any] = await pipe.execute()
            return replies

        doc, version = await self._b.call("get_mapping", fetch)
        return None if doc is None else decode_stored_mapping(uuid, doc, version=int(version or 0))

    async def list(self) -> builtins.list[StoredMapping]:
        docs, versions, _ = self._keys

        async def fetch() -> list[Any]:
            async with self._b.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(docs)
                pipe.hgetall(versions)
                replies: list[Any] = await pipe.execute()
            return replies

        found, numbers = await self._b.call("list_mappings", fetch)
        return [
            decode_stored_mapping(uuid, found[uuid], version=int(numbers.get(uuid) or 0))
            for uuid in sorted(found)
        ]

    async def _write(self, uuid: str, expected: int, doc: str) -> int:
        args: list[str | int] = [uuid, expected, doc]
        reply: list[Any] = await self._b.call(
            "put_mapping", lambda: self._put(keys=self._keys, args=args)
        )
        if int(reply[0]) != 1:
            raise VersionConflict(
                f"mapping {uuid} is at version {int(reply[1])}, not {expected}: "
                "it was changed meanwhile"
            )
        return int(reply[1])

    async def put(self, mapping: StoredMapping, *, expected_version: int) -> StoredMapping:
        version = await self._write(
            mapping.uuid, expected_version, encode_stored_mapping(mapping)
        )
        return decode_stored_mapping(mapping.uuid, encode_stored_mapping(mapping), version=version)

    async def delete(self, uuid: str, *, expected_version: int) -> None:
        await self._write(uuid, expected_version, "")

    async def revision(self) -> int:
        key = self._keys[2]
        value = await self._b.call("mappings_revision", lambda: self._b.client.get(key))
        return int(value or 0)
