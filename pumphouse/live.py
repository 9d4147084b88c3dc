"""The live set of mappings: what runs now, and how a change gets there without a restart.

Where a mapping comes from
==========================

* **The configuration file** defines mappings; their UUID is derived from the function
  and the source (or given as ``UUID``).
* **The API** creates mappings: they are stored in the state store
  (:mod:`pumphouse.state.mappings`) with a random UUID, and survive restarts.
* **An API change of a file-defined mapping** (update, disable, delete, tags) is stored
  as an *override*, together with a fingerprint of the file's definition at that time.
  The override wins over the file on every restart, on every replica: a restart never
  undoes an API change, and a mapping deleted through the API stays deleted (a
  tombstone). When the operator **edits that mapping in the file** (its definition, and
  so its fingerprint, changes), the file wins again: the override is ignored and a
  warning names the UUID. Removing a mapping from the file removes it, override or not.

How a change is applied
=======================

Every replica holds the **desired** set (file + store) and the **running** set. Each
mapping's identity of content is its parameters as canonical JSON: when the desired
content of a UUID differs from what runs, that mapping alone is converged, one change at
a time (a per-UUID lock):

* new: started (``Creating`` → ``Enabled`` once its source answered);
* changed: its poller is told to stop, its in-flight batches finish (bounded by
  ``ShutdownTimeoutSeconds``), checkpoints are flushed and leases released — exactly what a
  shutdown does — then it starts again with the new parameters (``Updating``; for a
  change of ``Enabled`` alone, ``Disabling`` → ``Disabled`` / ``Enabling`` → ``Enabled``).
  Checkpoints, Kafka offsets and SQS messages stay where they are, so nothing is read
  again beyond the in-flight batches, as after a restart;
* gone: drained the same way, then its status and metric series are removed
  (``Deleting``, then not listed any more).

Other mappings never pause. The replica that served the API call applies the change at
once; the others notice it within ``poll_interval`` (one read of the store's revision
counter per interval, a full listing only when it moved). Writes are compare-and-set on
the stored version (the API retries a lost race on top of the winner's change), and
every replica converges to what the store holds, so replicas never stay in disagreement.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid as uuid_module
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog

from pumphouse.api.errors import (
    InvalidParameterValue,
    ResourceConflict,
    ResourceInUse,
    ResourceNotFound,
    ServiceError,
)
from pumphouse.api.shapes import MappingView
from pumphouse.config import Config, ConfigError, EventSourceMapping, parse_mapping
from pumphouse.errors import StateStoreError, VersionConflict
from pumphouse.pollers.base import MappingState
from pumphouse.state.mappings import StoredMapping

if TYPE_CHECKING:
    from pumphouse.pollers.base import MappingStatus
    from pumphouse.state import StateStore
    from pumphouse.telemetry.metrics import Metrics

__all__ = ["LiveMappings", "StartMapping"]

log = structlog.get_logger("pumphouse.live")

#: Starts one mapping's poller (the service's): returns its status and its task (None
#: for a disabled mapping). The poller stops when the event is set.
StartMapping = Callable[
    [EventSourceMapping, Config, asyncio.Event], "tuple[MappingStatus, asyncio.Task[None] | None]"
]

CREATING, UPDATING, DELETING = "Creating", "Updating", "Deleting"
_IN_USE = frozenset({CREATING, UPDATING, DELETING})
_CAS_ATTEMPTS = 10


def _canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def _spec(mapping: EventSourceMapping) -> dict[str, Any]:
    """A mapping's parameters as the store keeps them (JSON, AWS names)."""
    return mapping.model_dump(mode="json", exclude_none=True)


def _content(mapping: EventSourceMapping) -> str:
    """What running the mapping depends on; the UUID is the key it is kept under (a
    file-defined mapping's override pins it, without that being a change)."""
    return _canonical({k: v for k, v in _spec(mapping).items() if k != "UUID"})


def fingerprint(mapping: EventSourceMapping) -> str:
    """Identifies a file-defined mapping's definition (changes when the file does)."""
    return hashlib.sha256(_canonical(_spec(mapping)).encode()).hexdigest()[:32]


@dataclass(frozen=True, kw_only=True)
class _Desired:
    mapping: EventSourceMapping
    content: str
    record: StoredMapping | None
    last_modified: float


@dataclass(kw_only=True)
class _Running:
    mapping: EventSourceMapping
    content: str
    status: MappingStatus
    stopping: asyncio.Event
    task: asyncio.Task[None] | None


class LiveMappings:
    """The desired and running mappings of one replica; the API's :class:`MappingControl`."""

    def __init__(
        self,
        *,
        config: Config,
        store: StateStore,
        metrics: Metrics,
        statuses: dict[str, MappingStatus],
        start_mapping: StartMapping,
        service_stopping: asyncio.Event,
        drain_timeout: float,
        poll_interval: float = 1.0,
    ) -> None:
        self.file_config = config
        self.settings = config.Settings
        self.store = store
        self.metrics = metrics
        self.statuses = statuses
        self._start_mapping = start_mapping
        self._service_stopping = service_stopping
        self.drain_timeout = drain_timeout
        self.poll_interval = poll_interval
        self.started_at = time.time()
        self._file = {m.uuid: m for m in config.EventSourceMappings}
        self._fingerprints = {u: fingerprint(m) for u, m in self._file.items()}
        self.config = config
        """The configuration with the live set of mappings (labels, contexts)."""
        self._desired: dict[str, _Desired] = {}
        self._running: dict[str, _Running] = {}
        self._transitions: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._converging: dict[str, asyncio.Task[None]] = {}
        self._refresh_lock = asyncio.Lock()
        self._revision: int | None = None
        self._warned: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._loaded = False
        self._new: set[str] = set()
        """Mappings that appeared while the service ran: ``Creating`` until enabled."""

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Load the stored mappings, start every desired one, and follow the store."""
        await self._drop_stale_overrides()
        await self.refresh(force=True)
        # Nothing runs yet, so this only starts pollers: every mapping has its status
        # (``/mappings``, ``/readyz``) when the service reports it started.
        await self.settled()
        self._loaded = True
        self._tasks.append(asyncio.create_task(self._follow(), name="live-mappings:follow"))
        self._tasks.append(asyncio.create_task(self._link_stop(), name="live-mappings:stop"))

    async def stop(self) -> None:
        """Stop following the store; tell every mapping to stop and let the changes in
        progress finish their drain (bounded). The service then waits for the pollers."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for running in self._running.values():
            running.stopping.set()
        converging = [t for t in self._converging.values() if not t.done()]
        if converging:
            await asyncio.wait(converging, timeout=self.drain_timeout + 5)

    async def settled(self) -> None:
        """Wait until every change in progress on this replica is applied."""
        while self._converging:
            await asyncio.gather(*self._converging.values())

    async def _drop_stale_overrides(self) -> None:
        """Remove the overrides of file-defined mappings that the file changed or removed
        since: the file's decision is the newer one, and reverting the file later must
        not bring an old override back."""
        for record in await self.store.mappings.list():
            if record.origin != "file":
                continue
            mapping = self._file.get(record.uuid)
            if mapping is not None and record.file_fingerprint == self._fingerprints[record.uuid]:
                continue
            with contextlib.suppress(VersionConflict):  # changed meanwhile: theirs to judge
                await self.store.mappings.delete(record.uuid, expected_version=record.version)
                self._warned.add((record.uuid, record.file_fingerprint or ""))
                log.warning(
                    "the configuration file changed this mapping since it was changed "
                    "through the API: the file's definition applies"
                    if mapping is not None
                    else "the configuration file no longer has this mapping: its API "
                    "changes are dropped",
                    uuid=record.uuid,
                    mapping=mapping.label if mapping is not None else None,
                )

    async def _link_stop(self) -> None:
        await self._service_stopping.wait()
        for running in self._running.values():
            running.stopping.set()

    async def _follow(self) -> None:
        while not self._service_stopping.is_set():
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except StateStoreError as err:
                log.warning("cannot read the API's mappings; retrying", error=str(err))
            except Exception:  # never stop following: the next change must still apply
                log.exception("applying the API's mappings failed; retrying")

    # -- desired set -------------------------------------------------------------------
    async def refresh(self, *, force: bool = False) -> None:
        """Read the store if it changed, recompute the desired set, converge."""
        async with self._refresh_lock:
            revision = await self.store.mappings.revision()
            if revision == self._revision and not force:
                return
            records = await self.store.mappings.list()
            self._revision = revision
            self._set_desired(self._desired_from(records))

    def _desired_from(self, records: list[StoredMapping]) -> dict[str, _Desired]:
        desired: dict[str, _Desired] = {}
        stored = {r.uuid: r for r in records}
        for uuid, mapping in self._file.items():
            record = stored.pop(uuid, None)
            if record is not None and record.file_fingerprint != self._fingerprints[uuid]:
                if (uuid, record.file_fingerprint or "") not in self._warned:
                    self._warned.add((uuid, record.file_fingerprint or ""))
                    log.warning(
                        "the configuration file changed this mapping since it was changed "
                        "through the API: the file's definition applies",
                        uuid=uuid,
                        mapping=mapping.label,
                    )
                record = None
            if record is None:
                desired[uuid] = self._entry(mapping, None)
            elif not record.deleted:
                parsed = self._parse_stored(record)
                if parsed is not None:
                    desired[uuid] = self._entry(parsed, record)
        for record in stored.values():
            if record.origin == "api" and not record.deleted:
                parsed = self._parse_stored(record)
                if parsed is not None:
                    desired[record.uuid] = self._entry(parsed, record)
        return desired

    def _entry(self, mapping: EventSourceMapping, record: StoredMapping | None) -> _Desired:
        return _Desired(
            mapping=mapping,
            content=_content(mapping),
            record=record,
            last_modified=record.last_modified if record is not None else self.started_at,
        )

    def _parse_stored(self, record: StoredMapping) -> EventSourceMapping | None:
        try:
            return self._validate(record.spec)
        except ConfigError as err:
            if ("invalid", f"{record.uuid}@{record.version}") not in self._warned:
                self._warned.add(("invalid", f"{record.uuid}@{record.version}"))
                log.error(
                    "a stored mapping is no longer valid; not running it",
                    uuid=record.uuid,
                    problems=err.problems,
                )
            return None

    def _validate(self, spec: dict[str, Any]) -> EventSourceMapping:
        return parse_mapping(
            spec, settings=self.settings, function_names=list(self.file_config.Functions)
        )

    def _set_desired(self, desired: dict[str, _Desired]) -> None:
        cfg = self.file_config
        try:
            live = Config.model_validate(
                {
                    "Settings": cfg.Settings,
                    "Functions": dict(cfg.Functions),
                    "EventSourceMappings": [d.mapping for d in desired.values()],
                    "Dev": cfg.Dev,
                },
                context={"base_dir": cfg.base_dir, "now": time.time()},
            )
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            log.error("the live set of mappings is not valid; keeping the last one", error=str(err))
            return
        self.config = live
        self._desired = {
            m.uuid: replace(d, mapping=m)
            for d, m in zip(desired.values(), live.EventSourceMappings, strict=True)
        }
        for uuid in set(self._desired) | set(self._running):
            self._converge_soon(uuid)

    # -- running set -------------------------------------------------------------------
    def _converge_soon(self, uuid: str) -> None:
        want, have = self._desired.get(uuid), self._running.get(uuid)
        if (have is None and want is None) or (
            have is not None and want is not None and have.content == want.content
        ):
            if uuid not in self._converging:
                self._transitions.pop(uuid, None)  # applied already (another refresh)
            return
        if uuid in self._converging and not self._converging[uuid].done():
            return  # the running convergence re-reads the desired set when it is done
        task = asyncio.create_task(self._converge(uuid), name=f"live-mappings:{uuid}")
        self._converging[uuid] = task

    async def _converge(self, uuid: str) -> None:
        lock = self._locks.setdefault(uuid, asyncio.Lock())
        try:
            async with lock:
                while not self._service_stopping.is_set():
                    want, have = self._desired.get(uuid), self._running.get(uuid)
                    if want is None and have is None:
                        break
                    if have is not None and want is not None and have.content == want.content:
                        break
                    if have is not None:
                        self._transitions.setdefault(uuid, DELETING if want is None else UPDATING)
                        await self._drain(have)
                        del self._running[uuid]
                        want = self._desired.get(uuid)  # it may have changed meanwhile
                        if want is None or want.mapping.label != have.mapping.label:
                            self.metrics.forget_mapping(have.mapping.label)
                        if want is None:
                            self.statuses.pop(uuid, None)
                            self._new.discard(uuid)
                            log.info("mapping deleted", uuid=uuid, mapping=have.mapping.label)
                            continue
                    assert want is not None
                    if self._service_stopping.is_set():
                        break  # shutting down: drained, and nothing new starts
                    stopping = asyncio.Event()
                    if have is None and self._loaded:
                        self._new.add(uuid)
                    elif have is not None:
                        self._new.discard(uuid)  # restarted: Enabling -> Enabled
                    status, task = self._start_mapping(want.mapping, self.config, stopping)
                    self._running[uuid] = _Running(
                        mapping=want.mapping,
                        content=want.content,
                        status=status,
                        stopping=stopping,
                        task=task,
                    )
                    log.info(
                        "mapping started" if have is None else "mapping restarted",
                        uuid=uuid,
                        mapping=want.mapping.label,
                        enabled=want.mapping.Enabled,
                    )
        finally:
            self._transitions.pop(uuid, None)
            self._converging.pop(uuid, None)

    async def _drain(self, running: _Running) -> None:
        """Stop one mapping's poller and wait for its in-flight batches (bounded)."""
        running.stopping.set()
        if running.task is None:
            return
        if running.mapping.Enabled:
            running.status.set_state(MappingState.DISABLING, "User action")
        done, _ = await asyncio.wait({running.task}, timeout=self.drain_timeout + 5)
        if not done:
            log.warning("mapping did not drain in time", mapping=running.mapping.label)
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running.task

    # -- views -------------------------------------------------------------------------
    def _view(self, uuid: str, *, state: str | None = None) -> MappingView:
        want = self._desired.get(uuid)
        running = self._running.get(uuid)
        if want is None and (running is None or self._transitions.get(uuid) != DELETING):
            raise ResourceNotFound(f"The resource you requested does not exist: {uuid}")
        status = running.status if running is not None else None
        mapping = want.mapping if want is not None else running.mapping if running else None
        assert mapping is not None
        shown = state or self._transitions.get(uuid)
        if shown is None:
            shown = status.state.value if status is not None else CREATING
            if status is not None and uuid in self._new:
                # A new mapping is Creating until its source answered, as in Lambda
                # (Creating -> Enabled); a restarted one goes Enabling -> Enabled.
                if status.state is MappingState.ENABLING:
                    shown = CREATING
                else:
                    self._new.discard(uuid)
        return MappingView(
            mapping=mapping,
            state=shown,
            state_transition_reason=(
                status.state_transition_reason if status is not None else "User action"
            ),
            last_processing_result=(
                status.last_processing_result if status is not None else "No records processed"
            ),
            last_modified=want.last_modified if want is not None else time.time(),
            region=self.settings.Region,
            account_id=self.settings.AccountId,
        )

    def _check_not_in_use(self, uuid: str) -> None:
        state = self._transitions.get(uuid)
        if state in _IN_USE:
            raise ResourceInUse(
                f"Cannot change the event source mapping {uuid}: it is currently in "
                f"{state} state. Retry when the change in progress is done."
            )

    # -- the API's operations ----------------------------------------------------------
    async def _fresh(self) -> None:
        try:
            await self.refresh()
        except StateStoreError as err:
            raise ServiceError(f"the state store did not answer: {err}") from err

    def _parse_request(self, spec: dict[str, Any]) -> EventSourceMapping:
        try:
            return self._validate(spec)
        except ConfigError as err:
            missing = [p for p in err.problems if p.startswith("FunctionName: no function")]
            if missing:
                raise ResourceNotFound(
                    f"Function not found: {spec.get('FunctionName')} ({missing[0]})"
                ) from None
            raise InvalidParameterValue("; ".join(err.problems)) from None

    def _check_conflict(
        self,
        mapping: EventSourceMapping,
        *,
        uuid: str | None,
        among: dict[str, _Desired] | None = None,
    ) -> None:
        key = _source_key(mapping)
        for other_uuid, other in (self._desired if among is None else among).items():
            if other_uuid != uuid and _source_key(other.mapping) == key:
                source = mapping.EventSourceArn or f"Kafka topic {','.join(mapping.Topics or [])}"
                raise ResourceConflict(
                    f'The event source arn (" {source} ") and function (" '
                    f'{mapping.function_name} ") provided mapping already exists. Please '
                    f"update or delete the existing mapping with UUID {other_uuid}"
                )

    async def create_mapping(self, params: dict[str, Any], tags: dict[str, str]) -> MappingView:
        await self._fresh()
        mapping = self._parse_request(params)
        self._check_conflict(mapping, uuid=None)
        uuid = str(uuid_module.uuid4())
        spec = {**_spec(mapping), "UUID": uuid}
        record = StoredMapping(uuid=uuid, spec=spec, tags=dict(tags), last_modified=time.time())
        self._transitions[uuid] = CREATING
        try:
            await self._write(record, expected_version=0)
            await self._check_created(mapping, uuid)
        except BaseException:
            self._transitions.pop(uuid, None)
            raise
        await self._fresh()
        self._converge_soon(uuid)
        log.info("mapping created through the API", uuid=uuid, function=mapping.function_name)
        return self._view(uuid, state=CREATING)

    async def _check_created(self, mapping: EventSourceMapping, uuid: str) -> None:
        """Two replicas creating the same function and source at once both pass the
        check before writing; the store, read after the write, sees every write that
        came before ours. Whoever sees another takes its own back (possibly both: each
        caller gets ResourceConflictException and may retry), so two never stay."""
        try:
            records = await self.store.mappings.list()
        except StateStoreError as err:
            raise ServiceError(f"the state store did not answer: {err}") from err
        try:
            self._check_conflict(mapping, uuid=uuid, among=self._desired_from(records))
        except ResourceConflict:
            with contextlib.suppress(StateStoreError, VersionConflict):
                await self.store.mappings.delete(uuid, expected_version=1)
            raise

    async def get_mapping(self, uuid: str) -> MappingView:
        await self._fresh()
        return self._view(uuid)

    async def list_mappings(
        self, *, function_name: str | None, event_source_arn: str | None
    ) -> list[MappingView]:
        await self._fresh()
        views = []
        for uuid in sorted(self._desired):
            mapping = self._desired[uuid].mapping
            if function_name is not None and function_name not in (
                mapping.function_name,
                mapping.function_arn,
                mapping.FunctionName,
            ):
                continue
            if event_source_arn is not None and mapping.EventSourceArn != event_source_arn:
                continue
            views.append(self._view(uuid))
        return views

    async def update_mapping(self, uuid: str, params: dict[str, Any]) -> MappingView:
        await self._fresh()
        before = self._view(uuid).mapping
        self._check_not_in_use(uuid)
        if not params:
            return self._view(uuid)

        def change(current: dict[str, Any]) -> dict[str, Any]:
            # The UUID is pinned: a file-defined mapping's is derived from its function
            # and source, and must not move when an update changes FunctionName.
            mapping = self._parse_request({**current, **params, "UUID": uuid})
            self._check_conflict(mapping, uuid=uuid)
            return _spec(mapping)

        enabled = params.get("Enabled")
        if set(params) == {"Enabled"} and enabled is not before.Enabled:
            state = MappingState.ENABLING.value if enabled else MappingState.DISABLING.value
        else:
            state = UPDATING
        self._transitions[uuid] = state
        try:
            await self._change(uuid, spec=change)
        except BaseException:
            self._transitions.pop(uuid, None)
            raise
        await self._fresh()
        self._converge_soon(uuid)
        log.info("mapping updated through the API", uuid=uuid, changed=sorted(params))
        return self._view(uuid, state=state)

    async def delete_mapping(self, uuid: str) -> MappingView:
        await self._fresh()
        self._view(uuid)
        self._check_not_in_use(uuid)
        view = self._view(uuid, state=DELETING)
        self._transitions[uuid] = DELETING
        try:
            await self._change(uuid, delete=True)
        except BaseException:
            self._transitions.pop(uuid, None)
            raise
        await self._fresh()
        self._converge_soon(uuid)
        log.info("mapping deleted through the API", uuid=uuid)
        return view

    async def _change(
        self,
        uuid: str,
        *,
        spec: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        tags: Callable[[dict[str, str]], dict[str, str]] | None = None,
        delete: bool = False,
    ) -> None:
        """Read, change, compare-and-set; again on top of a concurrent change."""
        for _ in range(_CAS_ATTEMPTS):
            try:
                record = await self.store.mappings.get(uuid)
            except StateStoreError as err:
                raise ServiceError(f"the state store did not answer: {err}") from err
            file_mapping = self._file.get(uuid)
            stale = record is not None and record.file_fingerprint != self._fingerprints.get(uuid)
            if record is not None and file_mapping is not None and stale:
                record = replace(record, deleted=False, spec=_spec(file_mapping), tags={})
            if record is None or record.deleted:
                if file_mapping is None or (record is not None and record.deleted):
                    raise ResourceNotFound(f"The resource you requested does not exist: {uuid}")
                record = StoredMapping(
                    uuid=uuid,
                    spec=_spec(file_mapping),
                    origin="file",
                    file_fingerprint=self._fingerprints[uuid],
                )
                expected = 0
            else:
                expected = record.version
            if file_mapping is not None:
                record = replace(record, origin="file", file_fingerprint=self._fingerprints[uuid])
            now = time.time()
            try:
                if delete and record.origin == "api":
                    await self.store.mappings.delete(uuid, expected_version=expected)
                    return
                if delete:
                    record = replace(record, deleted=True, last_modified=now)
                if spec is not None:
                    record = replace(record, spec=spec(record.spec), last_modified=now)
                if tags is not None:
                    record = replace(record, tags=tags(record.tags))
                await self._write(record, expected_version=expected)
                return
            except VersionConflict:
                continue
        raise ResourceConflict(
            f"The event source mapping {uuid} is being changed by someone else; retry"
        )

    async def _write(self, record: StoredMapping, *, expected_version: int) -> None:
        try:
            await self.store.mappings.put(record, expected_version=expected_version)
        except VersionConflict:
            raise
        except StateStoreError as err:
            raise ServiceError(f"the state store did not answer: {err}") from err

    # -- tags --------------------------------------------------------------------------
    def _uuid_of(self, arn: str) -> str:
        prefix, _, uuid = arn.rpartition(":")
        if not prefix.endswith(":event-source-mapping"):
            raise InvalidParameterValue(
                f"{arn!r}: pumphouse tags event source mappings only "
                "(arn:aws:lambda:<region>:<account>:event-source-mapping:<UUID>)"
            )
        self._view(uuid)
        return uuid

    async def list_tags(self, arn: str) -> dict[str, str]:
        await self._fresh()
        uuid = self._uuid_of(arn)
        record = self._desired[uuid].record
        return dict(record.tags) if record is not None else {}

    async def tag(self, arn: str, tags: dict[str, str]) -> None:
        await self._fresh()
        await self._change(self._uuid_of(arn), tags=lambda current: {**current, **tags})
        await self._fresh()

    async def untag(self, arn: str, keys: list[str]) -> None:
        await self._fresh()
        await self._change(
            self._uuid_of(arn),
            tags=lambda current: {k: v for k, v in current.items() if k not in keys},
        )
        await self._fresh()

    # -- functions (read-only) ---------------------------------------------------------
    def functions(self) -> list[dict[str, Any]]:
        settings = self.settings
        out = []
        for name in sorted(self.file_config.Functions):
            function = self.file_config.Functions[name]
            out.append(
                {
                    "FunctionName": name,
                    "FunctionArn": (
                        f"arn:aws:lambda:{settings.Region}:{settings.AccountId}:function:{name}"
                    ),
                    "Runtime": function.Runtime,
                    "Handler": function.Handler,
                    "MemorySize": function.MemorySize,
                    "Timeout": function.Timeout,
                    "Role": function.role_arn(settings),
                    "Description": function.Description,
                    "PackageType": "Zip",
                    "State": "Active",
                    "Version": "$LATEST",
                }
            )
        return out


def _source_key(mapping: EventSourceMapping) -> tuple[str, str, tuple[str, ...]]:
    """What makes two mappings "the same function and source" (a conflict)."""
    source = mapping.EventSourceArn or "self-managed-kafka"
    return (mapping.function_name, source, tuple(mapping.Topics or ()))
