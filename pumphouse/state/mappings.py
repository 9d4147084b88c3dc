"""Mappings created or changed through the API, as the state store keeps them.

Each stored mapping carries a **version**, set by the store: 1 on the first write, one
more on each write after. Every write is a compare-and-set on it
(``put(mapping, expected_version=v)`` succeeds only if the stored version is still ``v``;
``0`` means "not stored yet"), so two replicas changing one mapping at once cannot both
win: the loser gets :class:`~pumphouse.errors.VersionConflict`, reads again and retries
on top of the winner's change. The store also keeps a **revision**, one counter for the
whole set that grows on every write, so that replicas notice a change with one cheap
read and only then list the mappings.

Worked example (two replicas A and B, mapping ``m`` at version 3)::

    A: get(m) -> v3 (BatchSize 10)        B: get(m) -> v3 (BatchSize 10)
    A: put(m BatchSize=50, expected 3)    -> v4, revision 17 -> 18
    B: put(m Enabled=false, expected 3)   -> VersionConflict (stored: 4)
    B: get(m) -> v4; put(m BatchSize=50 Enabled=false, expected 4) -> v5, revision 19
    A and B see revision 19, list, and both run m v5.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["MappingStore", "StoredMapping", "decode_stored_mapping", "encode_stored_mapping"]

Origin = Literal["api", "file"]


@dataclass(frozen=True, kw_only=True)
class StoredMapping:
    """One mapping as the API left it."""

    uuid: str
    spec: dict[str, Any]
    """The mapping's parameters with AWS's names (JSON-able), as the configuration file
    would hold them (``FunctionName``, ``EventSourceArn``, ``BatchSize``, ...)."""
    origin: Origin = "api"
    """``api``: created through the API. ``file``: an API change of a mapping the
    configuration file defines (an override)."""
    file_fingerprint: str | None = None
    """For ``file`` overrides: the fingerprint of the file's definition when the change
    was made. When the file's definition changes, the file wins again."""
    deleted: bool = False
    """A file-defined mapping deleted through the API: kept so that a restart does not
    bring it back."""
    tags: dict[str, str] = field(default_factory=dict)
    last_modified: float = 0.0
    """Epoch seconds of the last change (the caller's clock)."""
    version: int = 0
    """Set by the store on every write; what :meth:`MappingStore.put` compares."""


class MappingStore(Protocol):
    """Stored mappings with per-mapping versions (compare-and-set)."""

    async def get(self, uuid: str) -> StoredMapping | None:
        ...

    async def list(self) -> builtins.list[StoredMapping]:
        """Every stored mapping, by UUID."""
        ...

    async def put(self, mapping: StoredMapping, *, expected_version: int) -> StoredMapping:
        """Write ``mapping`` if its stored version is ``expected_version`` (0: absent);
        returns it with its new version. Raises
        :class:`~pumphouse.errors.VersionConflict` otherwise."""
        ...

    async def delete(self, uuid: str, *, expected_version: int) -> None:
        """Remove the mapping if its stored version is ``expected_version``; raises
        :class:`~pumphouse.errors.VersionConflict` otherwise."""
        ...

    async def revision(self) -> int:
        """A number that grows with every write of any mapping (0: none ever)."""
        ...


def encode_stored_mapping(mapping: StoredMapping) -> str:
    """The mapping as JSON, without its UUID and version (the store keeps those)."""
    return json.dumps(
        {
            "spec": mapping.spec,
            "origin": mapping.origin,
            "file_fingerprint": mapping.file_fingerprint,
            "deleted": mapping.deleted,
            "tags": mapping.tags,
            "last_modified": mapping.last_modified,
        },
        separators=(",", ":"),
        sort_keys=True,
        allow_nan=False,
    )


def decode_stored_mapping(uuid: str, text: str, *, version: int) -> StoredMapping:
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
        raise ValueError(f"stored mapping {uuid} is not a mapping document: {text[:80]!r}")
    origin: Origin = "file" if doc.get("origin") == "file" else "api"
    fingerprint = doc.get("file_fingerprint")
    tags = doc.get("tags")
    return StoredMapping(
        uuid=uuid,
        spec=doc["spec"],
        origin=origin,
        file_fingerprint=str(fingerprint) if fingerprint is not None else None,
        deleted=bool(doc.get("deleted", False)),
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
        last_modified=float(doc.get("last_modified") or 0.0),
        version=version,
    )
