"""The event-source-mapping API with boto3's own ``lambda`` client, against the real
service in-process and moto's SQS: mappings created, listed, updated, disabled,
enabled and deleted while the service runs, and every error as botocore's own class.

boto3 is synchronous: its calls run in a thread (``api``), so that the service on this
event loop answers them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from test_sqs_support import (
    HANDLERS,
    REGION,
    create_queue,
    delivered,
    eventually,
    handler_log,
    metric,
    queue_arn,
    queue_counts,
    running,
    send_bodies,
    sqs_client,
    sqs_pollers,
)

from pumphouse.config import Config, parse_config
from pumphouse.service import Service

pytestmark = pytest.mark.slow

KEY, SECRET = "AKIDAPITESTS", "api-secret-never-logged"
MISSING = "6f1c52bc-0000-4000-8000-000000000000"


def api_config(tmp_path: Path, endpoint: str, *, mappings: list[dict[str, Any]] = ()) -> Config:  # type: ignore[assignment]  # an empty tuple default
    document = {
        "Settings": {
            "StateStore": f"sqlite:///{tmp_path / 'state.db'}",
            "MetricsAddress": "127.0.0.1:0",
            "ApiAddress": "127.0.0.1:0",
            "ApiCredentials": [{"AccessKeyId": KEY, "SecretAccessKey": SECRET}],
            "ShutdownTimeoutSeconds": 5,
            "Region": REGION,
            "Endpoints": {"Sqs": endpoint},
        },
        "Functions": {
            name: {
                "Handler": handler,
                "CodeUri": str(HANDLERS),
                "Timeout": 10,
                "Environment": {"Variables": {"OUT_DIR": str(tmp_path), **variables}},
            }
            for name, handler, variables in (
                ("orders", "sqs_handlers.record", {}),
                ("gated", "sqs_handlers.gated", {"GATE": str(tmp_path / "gate")}),
            )
        },
        "EventSourceMappings": list(mappings),
    }
    return parse_config(yaml.safe_dump(document), base_dir=tmp_path)


def lambda_client(service: Service, *, key: str = KEY, secret: str = SECRET) -> Any:
    assert service.api is not None
    return boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{service.api.port}",
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=BotoConfig(retries={"max_attempts": 1}),
    )


async def api(call: Callable[..., Any], **kwargs: Any) -> Any:
    return await asyncio.to_thread(call, **kwargs)


#: One receive loop (no duplicates from moto) with 1 s long polls: a long poll abandoned
#: when a mapping stops is over (on moto's side too) a second later.
SHORT_POLLS = sqs_pollers(initial_pollers=1, max_pollers=1, max_wait_seconds=1)


@pytest.fixture
async def service(tmp_path: Path, moto_server: Any) -> AsyncIterator[Service]:
    async with running(api_config(tmp_path, moto_server.url), factory=SHORT_POLLS) as svc:
        yield svc


async def test_create_an_sqs_mapping_while_running_and_see_messages_processed(
    tmp_path: Path, moto_server: Any, service: Service, unique_name: str
) -> None:
    client = lambda_client(service)
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        await send_bodies(sqs, url, [f"m{i}" for i in range(5)])
        created = await api(
            client.create_event_source_mapping,
            FunctionName="orders",
            EventSourceArn=queue_arn(unique_name),
            BatchSize=5,
            Tags={"team": "orders"},
        )
        assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
        assert created["State"] == "Creating"
        uuid = created["UUID"]
        assert (await api(client.get_event_source_mapping, UUID=uuid))["State"] in (
            "Creating",  # until the queue answered
            "Enabled",
        )
        assert created["EventSourceMappingArn"] == (
            f"arn:aws:lambda:{REGION}:000000000000:event-source-mapping:{uuid}"
        )
        assert created["FunctionArn"] == f"arn:aws:lambda:{REGION}:000000000000:function:orders"
        assert created["BatchSize"] == 5
        assert created["MaximumBatchingWindowInSeconds"] == 0
        assert created["LastModified"].timestamp() > 0  # epoch seconds, parsed by botocore
        await eventually(
            lambda: sorted(r["body"] for r in delivered(tmp_path, "orders"))
            == [f"m{i}" for i in range(5)],
            what="the five messages processed",
        )
        got = await api(client.get_event_source_mapping, UUID=uuid)
        assert got["State"] == "Enabled"
        assert got["LastProcessingResult"] == "OK"
        tags = await api(client.list_tags, Resource=created["EventSourceMappingArn"])
        assert tags["Tags"] == {"team": "orders"}
        await api(client.tag_resource, Resource=created["EventSourceMappingArn"], Tags={"a": "1"})
        await api(
            client.untag_resource, Resource=created["EventSourceMappingArn"], TagKeys=["team"]
        )
        tags = await api(client.list_tags, Resource=created["EventSourceMappingArn"])
        assert tags["Tags"] == {"a": "1"}
    views = {v["UUID"]: v for v in service.mapping_views()}
    assert views[uuid]["State"] == "Enabled"
    labels = {"operation": "CreateEventSourceMapping", "code": "OK"}
    assert metric(service, "pumphouse_api_requests_total", **labels) == 1


async def test_list_paginates_with_botocore_paginator(
    service: Service, unique_name: str
) -> None:
    client = lambda_client(service)
    created = set()
    for i in range(25):
        reply = await api(
            client.create_event_source_mapping,
            FunctionName="orders",
            EventSourceArn=queue_arn(f"{unique_name}-{i}"),
            Enabled=False,
        )
        assert reply["State"] == "Creating"
        created.add(reply["UUID"])

    def pages() -> list[list[str]]:
        paginator = client.get_paginator("list_event_source_mappings")
        return [
            [m["UUID"] for m in page["EventSourceMappings"]]
            for page in paginator.paginate(
                FunctionName="orders", PaginationConfig={"PageSize": 10}
            )
        ]

    found = await asyncio.to_thread(pages)
    assert [len(p) for p in found] == [10, 10, 5]
    assert {u for p in found for u in p} == created
    first = await api(client.list_event_source_mappings, MaxItems=10)
    assert len(first["EventSourceMappings"]) == 10 and "NextMarker" in first
    by_arn = await api(
        client.list_event_source_mappings, EventSourceArn=queue_arn(f"{unique_name}-3")
    )
    assert [m["EventSourceArn"] for m in by_arn["EventSourceMappings"]] == [
        queue_arn(f"{unique_name}-3")
    ]
    assert all(m["State"] == "Disabled" for p in [first["EventSourceMappings"]] for m in p)


async def test_update_batch_size_and_filter_live(
    tmp_path: Path, moto_server: Any, service: Service, unique_name: str
) -> None:
    client = lambda_client(service)
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        uuid = (
            await api(
                client.create_event_source_mapping,
                FunctionName="orders",
                EventSourceArn=queue_arn(unique_name),
                BatchSize=1,
            )
        )["UUID"]
        await send_bodies(sqs, url, ["a1", "a2"])
        await eventually(lambda: len(delivered(tmp_path, "orders")) == 2, what="first two")
        await eventually(
            lambda: service.statuses[uuid].state.value == "Enabled", what="enabled again"
        )
        pattern = json.dumps({"body": {"kind": [{"prefix": "keep"}]}})
        updated = await api(
            client.update_event_source_mapping,
            UUID=uuid,
            BatchSize=10,
            MaximumBatchingWindowInSeconds=1,
            FilterCriteria={"Filters": [{"Pattern": pattern}]},
        )
        assert updated["ResponseMetadata"]["HTTPStatusCode"] == 202
        assert updated["State"] == "Updating"
        assert updated["BatchSize"] == 10
        await eventually(
            lambda: service.statuses[uuid].state.value == "Enabled", what="enabled again"
        )
        await asyncio.sleep(1.5)  # the long poll the restart abandoned is over on moto's side
        kinds = ["keep-1", "drop-1", "keep-2", "keep-3"]
        await send_bodies(sqs, url, [json.dumps({"kind": kind}) for kind in kinds])
        await eventually(lambda: len(delivered(tmp_path, "orders")) == 5, what="three more")
        await eventually(lambda: _empty(sqs, url), what="the filtered-out one deleted")
        entries = handler_log(tmp_path, "orders")
        assert [len(e["records"]) for e in entries[:2]] == [1, 1]
        later = sorted(json.loads(r["body"])["kind"] for e in entries[2:] for r in e["records"])
        assert later == ["keep-1", "keep-2", "keep-3"]
        got = await api(client.get_event_source_mapping, UUID=uuid)
        assert json.loads(got["FilterCriteria"]["Filters"][0]["Pattern"]) == json.loads(pattern)


async def test_disable_stops_draining_and_enable_resumes(
    tmp_path: Path, moto_server: Any, service: Service, unique_name: str
) -> None:
    client = lambda_client(service)
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        uuid = (
            await api(
                client.create_event_source_mapping,
                FunctionName="orders",
                EventSourceArn=queue_arn(unique_name),
            )
        )["UUID"]
        await send_bodies(sqs, url, ["before"])
        await eventually(lambda: len(delivered(tmp_path, "orders")) == 1, what="first message")
        disabled = await api(client.update_event_source_mapping, UUID=uuid, Enabled=False)
        assert disabled["State"] == "Disabling"
        await eventually(
            lambda: service.statuses[uuid].state.value == "Disabled", what="disabled"
        )
        assert (await api(client.get_event_source_mapping, UUID=uuid))["State"] == "Disabled"
        await asyncio.sleep(1.5)  # the long poll the stop abandoned is over on moto's side
        await send_bodies(sqs, url, ["while-disabled-1", "while-disabled-2"])
        # The queue keeps them: nothing receives while the mapping is disabled.
        assert await queue_counts(sqs, url) == (2, 0)
        assert len(delivered(tmp_path, "orders")) == 1
        enabled = await api(client.update_event_source_mapping, UUID=uuid, Enabled=True)
        assert enabled["State"] == "Enabling"
        await eventually(lambda: len(delivered(tmp_path, "orders")) == 3, what="resumed")
        await eventually(lambda: _empty(sqs, url), what="queue drained")


async def _empty(sqs: Any, url: str) -> bool:
    return await queue_counts(sqs, url) == (0, 0)


async def test_delete_stops_polling_and_removes_the_metric_series(
    tmp_path: Path, moto_server: Any, service: Service, unique_name: str
) -> None:
    client = lambda_client(service)
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        uuid = (
            await api(
                client.create_event_source_mapping,
                FunctionName="orders",
                EventSourceArn=queue_arn(unique_name),
            )
        )["UUID"]
        await send_bodies(sqs, url, ["one"])
        await eventually(lambda: len(delivered(tmp_path, "orders")) == 1, what="processed")
        label = service.statuses[uuid].label
        series = {"mapping": label, "function": "orders", "source": "sqs"}
        assert metric(service, "pumphouse_polled_events_total", **series) == 1
        deleted = await api(client.delete_event_source_mapping, UUID=uuid)
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
        assert deleted["State"] == "Deleting"
        await eventually(lambda: uuid not in service.statuses, what="gone from /mappings")
        await asyncio.sleep(1.5)  # the long poll the stop abandoned is over on moto's side
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            await api(client.get_event_source_mapping, UUID=uuid)
        await send_bodies(sqs, url, ["after"])
        assert await queue_counts(sqs, url) == (1, 0)
        assert len(delivered(tmp_path, "orders")) == 1
        assert service.metrics.registry.get_sample_value(
            "pumphouse_polled_events_total", series
        ) is None
        listed = await api(client.list_event_source_mappings)
        assert uuid not in [m["UUID"] for m in listed["EventSourceMappings"]]


async def test_errors_are_botocores_own_exception_classes(
    tmp_path: Path, moto_server: Any, service: Service, unique_name: str
) -> None:
    client = lambda_client(service)
    with pytest.raises(client.exceptions.InvalidParameterValueException) as bad:
        await api(
            client.create_event_source_mapping,
            FunctionName="orders",
            EventSourceArn=queue_arn(unique_name),
            BatchSize=20000,
        )
    assert "BatchSize: 20000 is above the maximum 10000" in str(bad.value)
    with pytest.raises(client.exceptions.InvalidParameterValueException) as bad:
        await api(
            client.create_event_source_mapping,
            FunctionName="orders",
            EventSourceArn=f"arn:aws:kinesis:{REGION}:000000000000:stream/{unique_name}",
        )
    assert "StartingPosition: required for Kinesis" in str(bad.value)
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="nope"):
        await api(
            client.create_event_source_mapping,
            FunctionName="nope",
            EventSourceArn=queue_arn(unique_name),
        )
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        await api(client.get_event_source_mapping, UUID=MISSING)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        await api(client.delete_event_source_mapping, UUID=MISSING)
    first = await api(
        client.create_event_source_mapping,
        FunctionName="gated",
        EventSourceArn=queue_arn(unique_name),
    )
    with pytest.raises(client.exceptions.ResourceConflictException) as conflict:
        await api(
            client.create_event_source_mapping,
            FunctionName="gated",
            EventSourceArn=queue_arn(unique_name),
        )
    assert first["UUID"] in str(conflict.value)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        await api(client.get_function, FunctionName="nope")
    got = await api(client.get_function, FunctionName="gated")
    assert got["Configuration"]["Handler"] == "sqs_handlers.gated"
    assert "Environment" not in got["Configuration"]

    # In use: an update drains the in-flight batch first (held by the gate); meanwhile
    # the mapping refuses other changes, and the other mappings run on.
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        other_url = await create_queue(sqs, f"{unique_name}-other")
        other = await api(
            client.create_event_source_mapping,
            FunctionName="orders",
            EventSourceArn=queue_arn(f"{unique_name}-other"),
        )
        await send_bodies(sqs, url, ["held"])
        started = tmp_path / "gated.started"
        await eventually(started.exists, what="the gated batch in flight")
        updating = await api(client.update_event_source_mapping, UUID=first["UUID"], BatchSize=3)
        assert updating["State"] == "Updating"
        with pytest.raises(client.exceptions.ResourceInUseException, match="Updating"):
            await api(client.update_event_source_mapping, UUID=first["UUID"], BatchSize=4)
        with pytest.raises(client.exceptions.ResourceInUseException):
            await api(client.delete_event_source_mapping, UUID=first["UUID"])
        await send_bodies(sqs, other_url, ["meanwhile"])
        await eventually(
            lambda: [r["body"] for r in delivered(tmp_path, "orders")] == ["meanwhile"],
            what="the other mapping processing during the drain",
        )
        still = await api(client.get_event_source_mapping, UUID=first["UUID"])
        assert still["State"] == "Updating"
        assert (await api(client.get_event_source_mapping, UUID=other["UUID"]))[
            "State"
        ] == "Enabled"
        (tmp_path / "gate").touch()
        await eventually(lambda: len(delivered(tmp_path, "gated")) == 1, what="held batch done")
        await eventually(lambda: _empty(sqs, url), what="held message deleted")
        await eventually(
            lambda: service.statuses[first["UUID"]].state.value == "Enabled", what="restarted"
        )
        done = await api(client.get_event_source_mapping, UUID=first["UUID"])
        assert (done["State"], done["BatchSize"]) == ("Enabled", 3)

    with pytest.raises(ClientError) as refused:
        await api(lambda_client(service, secret="wrong").list_event_source_mappings)
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as refused:
        await api(lambda_client(service, key="AKIDUNKNOWN").list_event_source_mappings)
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert metric(
        service,
        "pumphouse_api_requests_total",
        operation="ListEventSourceMappings",
        code="InvalidSignatureException",
    ) == 1


# --- the AWS CLI ---------------------------------------------------------------------


async def aws(service: Service, tmp_path: Path, *args: str) -> tuple[int, Any, str]:
    """``aws lambda ARGS --endpoint-url ...``: (exit status, parsed JSON output, stderr)."""
    assert service.api is not None
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_MAX_ATTEMPTS": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "awscli",
        "lambda",
        *args,
        "--endpoint-url",
        f"http://127.0.0.1:{service.api.port}",
        "--output",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    text = out.decode()
    return proc.returncode or 0, json.loads(text) if text.strip() else None, err.decode()


async def test_the_aws_cli_manages_mappings_while_the_service_runs(
    tmp_path: Path, moto_server: Any, service: Service, unique_name: str
) -> None:
    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name)
        await send_bodies(sqs, url, ["cli-1", "cli-2"])
        code, created, err = await aws(
            service,
            tmp_path,
            "create-event-source-mapping",
            "--function-name",
            "orders",
            "--event-source-arn",
            queue_arn(unique_name),
            "--batch-size",
            "2",
        )
        assert code == 0, err
        uuid = created["UUID"]
        assert created["State"] == "Creating"
        await eventually(lambda: len(delivered(tmp_path, "orders")) == 2, what="processed")

        code, _, err = await aws(
            service,
            tmp_path,
            "create-event-source-mapping",
            "--function-name",
            "orders",
            "--event-source-arn",
            queue_arn(unique_name),
        )
        assert code != 0
        assert "(ResourceConflictException)" in err and uuid in err
        code, _, err = await aws(service, tmp_path, "get-event-source-mapping", "--uuid", MISSING)
        assert code != 0 and "(ResourceNotFoundException)" in err

        pattern = json.dumps({"body": {"kind": ["keep"]}})
        code, updated, err = await aws(
            service,
            tmp_path,
            "update-event-source-mapping",
            "--uuid",
            uuid,
            "--batch-size",
            "10",
            "--filter-criteria",
            json.dumps({"Filters": [{"Pattern": pattern}]}),
        )
        assert code == 0, err
        assert updated["State"] == "Updating" and updated["BatchSize"] == 10
        await eventually(lambda: service.statuses[uuid].state.value == "Enabled", what="updated")

        code, disabled, err = await aws(
            service, tmp_path, "update-event-source-mapping", "--uuid", uuid, "--no-enabled"
        )
        assert code == 0, err
        assert disabled["State"] == "Disabling"
        await eventually(lambda: service.statuses[uuid].state.value == "Disabled", what="off")
        await asyncio.sleep(1.5)  # the long poll the stop abandoned is over on moto's side
        await send_bodies(sqs, url, [json.dumps({"kind": "keep"}), json.dumps({"kind": "no"})])
        assert await queue_counts(sqs, url) == (2, 0)
        code, enabled, err = await aws(
            service, tmp_path, "update-event-source-mapping", "--uuid", uuid, "--enabled"
        )
        assert code == 0 and enabled["State"] == "Enabling", err
        await eventually(lambda: len(delivered(tmp_path, "orders")) == 3, what="resumed")
        await eventually(lambda: _empty(sqs, url), what="filtered one deleted too")

        for i in range(24):  # 25 with the one above
            await api(
                lambda_client(service).create_event_source_mapping,
                FunctionName="orders",
                EventSourceArn=queue_arn(f"{unique_name}-{i}"),
                Enabled=False,
            )
        pages: list[list[str]] = []
        token: list[str] = []
        while True:
            code, page, err = await aws(
                service,
                tmp_path,
                "list-event-source-mappings",
                "--function-name",
                "orders",
                "--max-items",
                "10",
                *token,
            )
            assert code == 0, err
            pages.append([m["UUID"] for m in page["EventSourceMappings"]])
            if "NextToken" not in page:
                break
            token = ["--starting-token", page["NextToken"]]
        assert [len(p) for p in pages] == [10, 10, 5]
        assert uuid in {u for p in pages for u in p}

        code, deleted, err = await aws(
            service, tmp_path, "delete-event-source-mapping", "--uuid", uuid
        )
        assert code == 0 and deleted["State"] == "Deleting", err
        await eventually(lambda: uuid not in service.statuses, what="deleted")
        await asyncio.sleep(1.5)  # the long poll the stop abandoned is over on moto's side
        await send_bodies(sqs, url, [json.dumps({"kind": "keep"})])
        assert await queue_counts(sqs, url) == (1, 0)
        code, functions, err = await aws(service, tmp_path, "list-functions")
        assert code == 0, err
        assert [f["FunctionName"] for f in functions["Functions"]] == ["gated", "orders"]
        assert all("Environment" not in f for f in functions["Functions"])
