"""The API as operators run it: ``pumphouse run`` processes, restarted, side by side on
one Redis, and probed with unsigned and wrongly signed requests.

* API changes survive a restart on SQLite and on Redis, file-defined mappings included
  (an update or a delete is remembered until the file's definition of that mapping
  changes);
* two replicas on Redis apply a change made through either within seconds, and agree
  after concurrent updates;
* unsigned, wrongly signed and unknown-key requests are refused with AWS's errors, and
  the secret is in no log line, no error, ``/mappings`` or ``/metrics``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
import yaml
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from handlers.streams.support import ServiceProcess

from pumphouse.devstack import MotoServer, RedisServer, free_port

pytestmark = pytest.mark.slow

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
KEY, SECRET = "AKIDPROCESSES", "pr0cess-secret-0f-the-api"
HANDLERS = Path(__file__).resolve().parent.parent / "handlers" / "sqs"


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


class Replica:
    """One ``pumphouse run`` with its API and metrics ports."""

    def __init__(
        self,
        tmp_path: Path,
        name: str,
        *,
        state_store: str,
        moto: MotoServer,
        mappings: list[dict[str, Any]],
        credentials: bool = True,
    ) -> None:
        self.api_port, self.metrics_port = free_port(), free_port()
        settings: dict[str, Any] = {
            "StateStore": state_store,
            "Region": REGION,
            "MetricsAddress": f"127.0.0.1:{self.metrics_port}",
            "ApiAddress": f"127.0.0.1:{self.api_port}",
            "ShutdownTimeoutSeconds": 5,
            "LogLevel": "DEBUG",
            "Endpoints": {"Sqs": moto.url},
        }
        if credentials:
            settings["ApiCredentials"] = [
                {"AccessKeyId": KEY, "SecretAccessKey": "${PUMPHOUSE_API_SECRET}"}
            ]
        self.document = {
            "Settings": settings,
            "Functions": {
                "orders": {
                    "Handler": "sqs_handlers.record",
                    "CodeUri": str(HANDLERS),
                    "Environment": {"Variables": {"OUT_DIR": str(tmp_path)}},
                }
            },
            "EventSourceMappings": mappings,
        }
        self.config_path = tmp_path / f"{name}.yaml"
        self.log_path = tmp_path / f"{name}.log"
        self.process: ServiceProcess | None = None

    def write(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.document, sort_keys=False))

    def start(self) -> Replica:
        self.write()
        self.process = ServiceProcess(
            self.config_path,
            log_path=self.log_path,
            env={"PUMPHOUSE_API_SECRET": SECRET, "PYTHONUNBUFFERED": "1"},
        ).start()
        eventually(lambda: _status(self.url("/readyz")) == 200, what=f"{self.log_tail()}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stop() == 0, self.log_tail()
            self.process = None

    def log_tail(self) -> str:
        return self.process.log_tail() if self.process is not None else ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def client(self, *, key: str = KEY, secret: str = SECRET) -> Any:
        return boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{self.api_port}",
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=BotoConfig(retries={"max_attempts": 1}),
        )

    def mappings(self) -> dict[str, dict[str, Any]]:
        """``/mappings`` by UUID."""
        with urllib.request.urlopen(self.url("/mappings"), timeout=5) as response:
            views = json.load(response)["EventSourceMappings"]
        return {v["UUID"]: v for v in views}

    def listed(self) -> dict[str, dict[str, Any]]:
        """ListEventSourceMappings by UUID (every page)."""
        pages = self.client().get_paginator("list_event_source_mappings").paginate()
        return {m["UUID"]: m for page in pages for m in page["EventSourceMappings"]}


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def eventually(check: Callable[[], Any], *, within: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except (ClientError, OSError, KeyError):  # not there yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def create_queues(moto: MotoServer, *names: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto.url, region_name=REGION)
    for name in names:
        sqs.create_queue(QueueName=name)


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        if replica.process is not None:
            replica.process.stop()


def fresh_redis(server: RedisServer, db: int) -> str:
    """A Redis database of its own (the session's server is shared), emptied."""
    url = server.url.rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_api_changes_survive_restarts_until_the_file_changes(
    backend: str,
    tmp_path: Path,
    moto_server: MotoServer,
    unique_name: str,
    replicas: list[Replica],
    request: pytest.FixtureRequest,
) -> None:
    if backend == "redis":
        state_store = fresh_redis(request.getfixturevalue("redis_server"), 5)
    else:
        state_store = f"sqlite:///{tmp_path}/state.db"
    qa, qb, qc = (f"{unique_name}-{x}" for x in "abc")
    create_queues(moto_server, qa, qb, qc)
    file_mappings = [
        {"FunctionName": "orders", "EventSourceArn": queue_arn(qa), "BatchSize": 5},
        {"FunctionName": "orders", "EventSourceArn": queue_arn(qb)},
    ]

    def replica() -> Replica:
        r = Replica(
            tmp_path, "pumphouse", state_store=state_store, moto=moto_server, mappings=file_mappings
        )
        replicas.append(r)
        return r

    first = replica().start()
    listed = first.listed()
    by_queue = {m["EventSourceArn"]: m["UUID"] for m in listed.values()}
    a, b = by_queue[queue_arn(qa)], by_queue[queue_arn(qb)]
    client = first.client()
    c = client.create_event_source_mapping(FunctionName="orders", EventSourceArn=queue_arn(qc))[
        "UUID"
    ]
    client.update_event_source_mapping(UUID=a, BatchSize=7, Enabled=False)
    eventually(lambda: first.mappings()[a]["State"] == "Disabled", what="a disabled")
    client.delete_event_source_mapping(UUID=b)
    eventually(lambda: b not in first.mappings(), what="b deleted")
    arn_a = listed[a]["EventSourceMappingArn"]
    client.tag_resource(Resource=arn_a, Tags={"owner": "ops"})
    first.stop()

    second = replica().start()
    listed = second.listed()
    assert set(listed) == {a, c}
    assert (listed[a]["BatchSize"], listed[a]["State"]) == (7, "Disabled")
    assert listed[c]["State"] == "Enabled"
    assert set(second.mappings()) == {a, c}
    assert second.client().list_tags(Resource=arn_a)["Tags"] == {"owner": "ops"}
    with pytest.raises(second.client().exceptions.ResourceNotFoundException):
        second.client().get_event_source_mapping(UUID=b)
    second.stop()

    # The operator edits mapping a in the file: the file's definition applies again.
    file_mappings[0]["BatchSize"] = 3
    third = replica().start()
    listed = third.listed()
    assert set(listed) == {a, c}
    assert (listed[a]["BatchSize"], listed[a]["State"]) == (3, "Enabled")
    third.stop()
    log = third.log_path.read_text()
    assert "the configuration file changed this mapping" in log
    assert a in log
    assert SECRET not in log

    # Reverting the edit does not bring the old override back; removing b from the file
    # drops its tombstone, so adding it back later brings it back.
    file_mappings[0]["BatchSize"] = 5
    removed_b = file_mappings.pop(1)
    fourth = replica().start()
    listed = fourth.listed()
    assert set(listed) == {a, c}
    assert (listed[a]["BatchSize"], listed[a]["State"]) == (5, "Enabled")
    fourth.stop()
    file_mappings.append(removed_b)
    fifth = replica().start()
    assert set(fifth.listed()) == {a, b, c}
    fifth.stop()


def test_two_replicas_on_redis_agree_after_changes_through_each(
    tmp_path: Path,
    moto_server: MotoServer,
    redis_server: RedisServer,
    unique_name: str,
    replicas: list[Replica],
) -> None:
    state_store = fresh_redis(redis_server, 6)
    create_queues(moto_server, unique_name)
    one, two = (
        Replica(tmp_path, name, state_store=state_store, moto=moto_server, mappings=[])
        for name in ("one", "two")
    )
    replicas.extend([one, two])
    one.start()
    two.start()

    uuid = one.client().create_event_source_mapping(
        FunctionName="orders", EventSourceArn=queue_arn(unique_name), BatchSize=2
    )["UUID"]
    eventually(lambda: two.mappings()[uuid]["State"] == "Enabled", what="created on two")
    eventually(lambda: one.mappings()[uuid]["State"] == "Enabled", what="enabled on one")

    two.client().update_event_source_mapping(UUID=uuid, BatchSize=9)
    eventually(
        lambda: one.client().get_event_source_mapping(UUID=uuid)["BatchSize"] == 9,
        what="update through two seen on one",
    )

    def settled() -> bool:
        states = {r.client().get_event_source_mapping(UUID=uuid)["State"] for r in (one, two)}
        return states == {"Enabled"}

    eventually(settled, what="both running the update")

    # Two updates at once, one through each replica: both land (compare-and-set, the
    # loser retries on top of the winner), and the replicas end up running the same.
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def update(replica: Replica, change: dict[str, Any]) -> None:
        client = replica.client()
        barrier.wait()
        try:
            client.update_event_source_mapping(UUID=uuid, **change)
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [
        threading.Thread(target=update, args=(one, {"BatchSize": 8})),
        threading.Thread(target=update, args=(two, {"MaximumBatchingWindowInSeconds": 2})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    def agree() -> bool:
        seen = [r.client().get_event_source_mapping(UUID=uuid) for r in (one, two)]
        keys = ("BatchSize", "MaximumBatchingWindowInSeconds", "State")
        return [tuple(s[k] for k in keys) for s in seen] == [(8, 2, "Enabled")] * 2

    eventually(agree, what="both replicas agreeing on both changes")

    # The same function and source created through both at once: never two mappings.
    for round_ in range(3):
        queue = queue_arn(f"{unique_name}-race-{round_}")
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def create(
            replica: Replica,
            queue: str = queue,
            barrier: threading.Barrier = barrier,
            outcomes: list[str] = outcomes,
        ) -> None:
            client = replica.client()
            barrier.wait()
            try:
                client.create_event_source_mapping(FunctionName="orders", EventSourceArn=queue)
                outcomes.append("created")
            except client.exceptions.ResourceConflictException:
                outcomes.append("conflict")

        threads = [threading.Thread(target=create, args=(r,)) for r in (one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) in (["conflict", "created"], ["conflict", "conflict"])
        for replica in (one, two):
            found = replica.client().list_event_source_mappings(EventSourceArn=queue)
            assert len(found["EventSourceMappings"]) == outcomes.count("created")

    one.client().delete_event_source_mapping(UUID=uuid)
    eventually(lambda: uuid not in two.mappings(), what="deleted on two")
    with pytest.raises(two.client().exceptions.ResourceNotFoundException):
        two.client().get_event_source_mapping(UUID=uuid)
    for replica in (one, two):
        replica.stop()
        assert SECRET not in replica.log_path.read_text()


def test_unsigned_wrongly_signed_and_unknown_key_requests_are_refused(
    tmp_path: Path, moto_server: MotoServer, replicas: list[Replica]
) -> None:
    replica = Replica(
        tmp_path, "auth", state_store=f"sqlite:///{tmp_path}/state.db", moto=moto_server,
        mappings=[],
    )
    replicas.append(replica)
    replica.start()
    api = f"http://127.0.0.1:{replica.api_port}/2015-03-31/event-source-mappings/"
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(api, timeout=5)
    assert unsigned.value.code == 403
    assert unsigned.value.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"
    assert json.load(unsigned.value)["Type"] == "User"

    for client, code in (
        (replica.client(secret="not-" + SECRET), "InvalidSignatureException"),
        (replica.client(key="AKIDSOMEONEELSE"), "UnrecognizedClientException"),
    ):
        with pytest.raises(ClientError) as refused:
            client.create_event_source_mapping(
                FunctionName="orders", EventSourceArn=queue_arn("anything")
            )
        assert refused.value.response["Error"]["Code"] == code
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert SECRET not in str(refused.value)
    assert replica.client().list_event_source_mappings()["EventSourceMappings"] == []

    with urllib.request.urlopen(replica.url("/metrics"), timeout=5) as response:
        metrics = response.read().decode()
    assert (
        'pumphouse_api_requests_total{code="UnrecognizedClientException",'
        'operation="ListEventSourceMappings"} 1.0' in metrics
    )
    assert SECRET not in metrics
    with urllib.request.urlopen(replica.url("/mappings"), timeout=5) as response:
        assert SECRET not in response.read().decode()
    replica.stop()
    log = replica.log_path.read_text()
    assert "api request refused" in log
    assert SECRET not in log


def test_without_credentials_the_api_does_not_start_and_says_so_once(
    tmp_path: Path, moto_server: MotoServer, replicas: list[Replica]
) -> None:
    replica = Replica(
        tmp_path,
        "nocreds",
        state_store=f"sqlite:///{tmp_path}/state.db",
        moto=moto_server,
        mappings=[],
        credentials=False,
    )
    replicas.append(replica)
    replica.start()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{replica.api_port}/", timeout=2)
    replica.stop()
    log = replica.log_path.read_text()
    assert log.count("event-source-mapping API not started") == 1
