"""The live set's rules, fast: a SQLite state store in a temporary file and pollers
replaced by tasks that run until told to stop (and, when a test holds them, until it
lets them go, like a batch in flight)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from pumphouse.api.errors import ResourceInUse, ResourceNotFound
from pumphouse.config import Config, EventSourceMapping, parse_config
from pumphouse.live import LiveMappings
from pumphouse.pollers.base import MappingState, MappingStatus
from pumphouse.state import StateStore, open_state_store
from pumphouse.telemetry.metrics import Metrics

QUEUE = "arn:aws:sqs:us-east-1:000000000000:"


def config(tmp_path: Path, *, batch_size: int = 5) -> Config:
    document = {
        "Functions": {"f": {"Handler": "app.handler"}, "g": {"Handler": "app.handler"}},
        "EventSourceMappings": [
            {"FunctionName": "f", "EventSourceArn": QUEUE + "a", "BatchSize": batch_size},
            {"FunctionName": "f", "EventSourceArn": QUEUE + "b"},
        ],
    }
    return parse_config(yaml.safe_dump(document), base_dir=tmp_path)


class Pollers:
    """Stands in for the service's pollers: each runs until its event is set, then
    waits for ``release`` (an in-flight batch) before it returns."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.statuses: dict[str, MappingStatus] = {}

    def start(
        self, mapping: EventSourceMapping, cfg: Config, stopping: asyncio.Event
    ) -> tuple[MappingStatus, asyncio.Task[None] | None]:
        status = MappingStatus(
            uuid=mapping.uuid, label=mapping.label, function=mapping.function_name, source="sqs"
        )
        self.statuses[mapping.uuid] = status
        self.started.append((mapping.uuid, mapping.batch_size))
        if not mapping.Enabled:
            status.set_state(MappingState.DISABLED)
            return status, None
        status.set_state(MappingState.ENABLED)

        async def run() -> None:
            await stopping.wait()
            await self.release.wait()

        return status, asyncio.create_task(run())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    state = open_state_store(f"sqlite:///{tmp_path}/state.db")
    yield state
    await state.close()


async def live(cfg: Config, store: StateStore, pollers: Pollers) -> LiveMappings:
    mappings = LiveMappings(
        config=cfg,
        store=store,
        metrics=Metrics(CollectorRegistry()),
        statuses=pollers.statuses,
        start_mapping=pollers.start,
        service_stopping=asyncio.Event(),
        drain_timeout=5,
        poll_interval=0.05,
    )
    await mappings.start()
    return mappings


def uuids(cfg: Config) -> tuple[str, str]:
    a, b = (m.uuid for m in cfg.EventSourceMappings)
    return a, b


async def test_an_update_restarts_that_mapping_only_and_tags_restart_nothing(
    tmp_path: Path, store: StateStore
) -> None:
    cfg, pollers = config(tmp_path), Pollers()
    mappings = await live(cfg, store, pollers)
    a, b = uuids(cfg)
    assert sorted(pollers.started) == sorted([(a, 5), (b, 10)])
    arn = f"arn:aws:lambda:us-east-1:000000000000:event-source-mapping:{a}"
    await mappings.tag(arn, {"team": "orders"})
    await mappings.settled()
    assert len(pollers.started) == 2
    assert await mappings.list_tags(arn) == {"team": "orders"}
    view = await mappings.update_mapping(a, {"BatchSize": 7})
    assert view.state == "Updating"
    await mappings.settled()
    assert pollers.started[2:] == [(a, 7)]
    assert (await mappings.get_mapping(a)).state == "Enabled"
    await mappings.stop()


async def test_changes_in_progress_refuse_others(tmp_path: Path, store: StateStore) -> None:
    cfg, pollers = config(tmp_path), Pollers()
    mappings = await live(cfg, store, pollers)
    a, _ = uuids(cfg)
    pollers.release.clear()  # a batch in flight: the drain waits for it
    await mappings.update_mapping(a, {"BatchSize": 7})
    with pytest.raises(ResourceInUse, match="Updating"):
        await mappings.update_mapping(a, {"BatchSize": 8})
    with pytest.raises(ResourceInUse):
        await mappings.delete_mapping(a)
    assert (await mappings.get_mapping(a)).state == "Updating"
    pollers.release.set()
    await mappings.settled()
    await mappings.update_mapping(a, {"BatchSize": 8})
    await mappings.settled()
    assert pollers.started[-1] == (a, 8)
    await mappings.stop()


async def test_file_mapping_changes_survive_until_the_file_changes(
    tmp_path: Path, store: StateStore
) -> None:
    cfg = config(tmp_path)
    a, b = uuids(cfg)
    first = await live(cfg, store, Pollers())
    await first.update_mapping(a, {"Enabled": False})
    await first.delete_mapping(b)
    await first.settled()
    await first.stop()

    pollers = Pollers()
    second = await live(config(tmp_path), store, pollers)
    assert pollers.started == [(a, 5)]
    assert pollers.statuses[a].state is MappingState.DISABLED
    with pytest.raises(ResourceNotFound):
        await second.get_mapping(b)
    await second.stop()

    pollers = Pollers()
    third = await live(config(tmp_path, batch_size=6), store, pollers)
    assert sorted(pollers.started) == sorted([(a, 6)])  # a: the file's again; b: deleted
    assert pollers.statuses[a].state is MappingState.ENABLED
    await third.stop()
