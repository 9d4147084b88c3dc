"""Custom runtimes (``Runtime: provided.al2023``): an executable ``bootstrap`` in
``CodeUri`` speaking the Runtime API with ``curl``, as AWS's tutorial writes one."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from handlers.streams import support as s
from structlog.testing import capture_logs

from pumphouse.config import parse_config
from pumphouse.devstack import KinesisMock, MotoServer
from pumphouse.errors import ConfigError
from pumphouse.runtime import Outcome, Runtime
from pumphouse.runtime import pool as pool_module
from pumphouse.runtime.process import FunctionLogLine
from pumphouse.runtime.protocol import MAX_RESPONSE_BYTES
from pumphouse.telemetry.metrics import Metrics

pytestmark = pytest.mark.slow

CUSTOM = Path(__file__).resolve().parents[1] / "handlers" / "custom_runtime"


def custom(name: str, **extra: Any) -> dict[str, Any]:
    variables = {"PYTHON": sys.executable, **extra.pop("variables", {})}
    return {
        "Runtime": "provided.al2023",
        "Handler": "function.handler",
        "CodeUri": str(CUSTOM / name),
        "Environment": {"Variables": variables},
        **extra,
    }


def load(tmp_path: Path, functions: dict[str, Any], mappings: list[Any] | None = None,
         **settings: Any) -> Any:
    document = {
        "Settings": {"StateStore": f"sqlite:///{tmp_path / 'state.db'}",
                     "MetricsAddress": "127.0.0.1:0", **settings},
        "Functions": functions,
        "EventSourceMappings": mappings or [],
    }
    return parse_config(yaml.safe_dump(document), base_dir=tmp_path)


MakeRuntime = Callable[..., Runtime]


@pytest.fixture
async def make_runtime(tmp_path: Path) -> AsyncIterator[MakeRuntime]:
    runtimes: list[Runtime] = []

    def make(functions: dict[str, Any], logs: list[FunctionLogLine] | None = None) -> Runtime:
        config = load(tmp_path, functions)
        runtime = Runtime(
            {name: config.function_spec(name) for name in functions},
            metrics=Metrics(),
            log_sink=(logs if logs is not None else []).append,
        )
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        await runtime.stop(timeout=1)
        assert runtime.worker_pids() == []


async def test_bootstrap_processes_a_kinesis_batch(
    kinesis_mock: KinesisMock, tmp_path: Path, unique_name: str
) -> None:
    out = tmp_path / "kin.jsonl"
    async with s.client("kinesis", kinesis_mock.url) as kinesis:
        arn = await s.create_stream(kinesis, unique_name, 1)
        await s.put_records(kinesis, unique_name, [("pk", {"i": i}) for i in range(5)])
        function = custom("kinesis", Timeout=10, variables={"OUT_DIR": str(tmp_path)})
        config = s.config_yaml(
            settings=s.settings(state_store=f"sqlite:///{tmp_path}/state.db",
                                kinesis_url=kinesis_mock.url),
            functions={"kin": function},
            mappings=[{"FunctionName": "kin", "EventSourceArn": arn, "BatchSize": 10,
                       "StartingPosition": "TRIM_HORIZON",
                       "FunctionResponseTypes": ["ReportBatchItemFailures"]}],
        )

        def received() -> list[Any]:
            if not out.exists():
                return []
            return [json.loads(item) for line in out.read_text().splitlines()
                    for item in json.loads(line)]

        async with s.running(config) as service:
            await s.wait_for(lambda: len(received()) == 5, what="five records")
            await s.wait_for(
                lambda: s.metric(service, "pumphouse_invocations_total", function="kin",
                                 outcome="success") >= 1,
                what="a successful invocation",
            )
    assert received() == [{"i": i} for i in range(5)]


async def test_posted_errors_bisect_retry_and_reach_the_destination(
    kinesis_mock: KinesisMock, moto_server: MotoServer, tmp_path: Path, unique_name: str
) -> None:
    """An error a custom runtime posts is a function error: the batch is bisected down to
    the poison record, retried, and its failure record lands on the on-failure queue."""
    out = tmp_path / "poison.jsonl"
    async with (
        s.client("kinesis", kinesis_mock.url) as kinesis,
        s.client("sqs", moto_server.url) as sqs,
    ):
        arn = await s.create_stream(kinesis, unique_name, 1)
        queue_url, queue_arn = await s.create_queue(sqs, f"{unique_name}-dlq")
        put = await s.put_records(
            kinesis, unique_name, [("p", {"i": i, "poison": i == 5}) for i in range(8)]
        )
        config = s.config_yaml(
            settings=s.settings(state_store=f"sqlite:///{tmp_path}/state.db",
                                kinesis_url=kinesis_mock.url, moto_url=moto_server.url),
            functions={"f": custom("poison", Timeout=10, variables={"OUT_DIR": str(tmp_path)})},
            mappings=[{
                "FunctionName": "f", "EventSourceArn": arn, "StartingPosition": "TRIM_HORIZON",
                "BatchSize": 8, "BisectBatchOnFunctionError": True, "MaximumRetryAttempts": 1,
                "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
            }],
        )

        def processed() -> set[int]:
            if not out.exists():
                return set()
            batches = [json.loads(line) for line in out.read_text().splitlines()]
            return {x["i"] for batch in batches if not any(x["poison"] for x in batch)
                    for x in batch}

        with capture_logs() as logs:
            async with s.running(config) as service:
                failures = await s.drain_queue(sqs, queue_url, expect=1)
                await s.wait_for(lambda: processed() == set(range(8)) - {5},
                                 what="every other record processed")
                errors = s.metric(service, "pumphouse_invocations_total", function="f",
                                  outcome="function_error")
    reports = [e for e in logs if e["event"] == "REPORT" and e.get("function") == "f"]
    assert {e.get("error_type") for e in reports} == {None, "RecordError"}
    assert len(failures) == 1
    info = failures[0]["KinesisBatchInfo"]
    assert info["startSequenceNumber"] == put[5][1] == info["endSequenceNumber"]
    assert failures[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failures[0]["responseContext"]["functionError"] == "Unhandled"
    assert errors >= 2


async def test_init_error_is_reported_and_cached(make_runtime: MakeRuntime) -> None:
    logs: list[FunctionLogLine] = []
    runtime = make_runtime({"fn": custom("broken")}, logs)
    first = await runtime.invoke("fn", {})
    assert first.outcome is Outcome.INIT_ERROR
    assert first.cold_start and first.init_duration_ms is not None
    assert first.error == {
        "errorMessage": "Unable to import module function: no such file",
        "errorType": "Runtime.ImportModuleError",
        "requestId": first.request_id,
        "stackTrace": [],
    }
    assert any(line.message == "cannot load function.handler" for line in logs)
    second = await runtime.invoke("fn", {})
    assert (second.outcome, second.cold_start) == (Outcome.INIT_ERROR, False)
    assert runtime.worker_pids("fn") == []


async def test_runtime_that_never_calls_next_times_out_in_init(
    make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "INIT_TIMEOUT_SECONDS", 1.0)
    runtime = make_runtime({"fn": custom("silent", Timeout=1)})
    result = await runtime.invoke("fn", {})
    assert result.outcome is Outcome.TIMEOUT
    assert result.error is not None
    assert result.error["errorType"] == "Sandbox.Timedout"
    assert result.error["errorMessage"] == "Task timed out after 1.00 seconds"


def session_members(session: int) -> list[int]:
    """Live processes of a session (a runtime process leads its own)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members


async def test_memory_cap_counts_the_whole_process_tree(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime({"fn": custom("hog", Timeout=30, MemorySize=128)})
    task = asyncio.ensure_future(runtime.invoke("fn", {}))
    await s.wait_for(lambda: len(runtime.worker_pids("fn")) == 1, what="the runtime process")
    (session,) = runtime.worker_pids("fn")
    await s.wait_for(lambda: len(session_members(session)) > 1 or task.done(),
                     what="the runtime's child")
    result = await task
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.OutOfMemory"
    assert result.max_memory_used_mb > 128
    await s.wait_for(lambda: session_members(session) == [], what="the whole tree gone")


async def test_provisioned_runtimes_start_warm_and_idle_ones_are_reaped(
    tmp_path: Path,
) -> None:
    config = load(tmp_path, {
        "kept": custom("echo", ProvisionedConcurrency=1),
        "reaped": custom("echo"),
    })
    runtime = Runtime({name: config.function_spec(name) for name in ("kept", "reaped")},
                      metrics=Metrics(), log_sink=lambda line: None, worker_idle_seconds=0.3)
    try:
        await runtime.start()
        (provisioned,) = runtime.worker_pids("kept")
        first = await runtime.invoke("kept", {"n": 1})
        assert (first.outcome, first.cold_start) == (Outcome.SUCCESS, False)
        assert first.payload["pid"] == str(provisioned)
        assert (await runtime.invoke("reaped", {})).cold_start
        (reaped,) = runtime.worker_pids("reaped")
        await s.wait_for(lambda: runtime.worker_pids("reaped") == [], what="idle reaping")
        assert session_members(reaped) == []
        assert runtime.worker_pids("kept") == [provisioned], "provisioned stays"
    finally:
        pids = runtime.worker_pids()
        await runtime.stop(timeout=1)
    assert runtime.worker_pids() == []
    assert [pid for pid in pids if session_members(pid)] == []


@pytest.mark.parametrize(("size", "outcome"), [
    (1024 * 1024, Outcome.SUCCESS),
    (MAX_RESPONSE_BYTES + 1, Outcome.RESPONSE_TOO_LARGE),
])
async def test_response_size_limit_through_curl(
    make_runtime: MakeRuntime, size: int, outcome: Outcome
) -> None:
    runtime = make_runtime({"fn": custom("large", variables={"SIZE": str(size)})})
    result = await runtime.invoke("fn", {})
    assert result.outcome is outcome
    if outcome is Outcome.SUCCESS:
        assert result.payload == "x" * (size - 2)
    else:
        assert result.error is not None
        assert result.error["errorType"] == "Function.ResponseSizeTooLarge"
        again = await runtime.invoke("fn", {})
        assert again.outcome is outcome and not again.cold_start, "the runtime stays warm"


async def test_parallel_runtimes_get_only_their_own_events(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime({"fn": custom("echo", Timeout=10)})
    events = [{"n": n, "blob": base64.b64encode(bytes([n]) * 32).decode()} for n in range(6)]
    results = await asyncio.gather(*(runtime.invoke("fn", event) for event in events))
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * 6
    assert [r.payload["event"] for r in results] == events
    assert [r.payload["request_id"] for r in results] == [r.request_id for r in results]
    assert len({r.payload["pid"] for r in results}) > 1, "several processes ran at once"


async def test_missing_bootstrap_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "bootstrap").write_text("#!/bin/sh\n")  # not executable
    config = load(tmp_path, {"fn": {"Runtime": "provided.al2", "Handler": "f.h",
                                    "CodeUri": "code"}})
    with pytest.raises(ConfigError) as info:
        Runtime({"fn": config.function_spec("fn")}, metrics=Metrics())
    assert info.value.problems == [
        f"Functions.fn.CodeUri: a provided.al2 function needs an executable 'bootstrap' in "
        f"{tmp_path / 'code'} (chmod +x bootstrap)"
    ]


STARTS_A_RUNTIME_AND_WAITS = """
import asyncio, sys
from pumphouse.runtime import FunctionSpec, Runtime
from pumphouse.telemetry.metrics import Metrics

async def main():
    spec = FunctionSpec(name="fn", handler="f.h", code_uri=sys.argv[1], runtime="provided",
                        provisioned_concurrency=1)
    runtime = Runtime({"fn": spec}, metrics=Metrics(), log_sink=lambda line: None)
    await runtime.start()
    print("PID", runtime.worker_pids("fn")[0], flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""

STUBBORN_BOOTSTRAP = """#!/bin/sh
# Asks for work once (its init ends there); whatever happens to that request, it stays.
curl -sS -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
sleep 600
"""


def test_runtime_processes_do_not_outlive_a_killed_service(tmp_path: Path) -> None:
    bootstrap = tmp_path / "bootstrap"
    bootstrap.write_text(STUBBORN_BOOTSTRAP)
    bootstrap.chmod(0o755)
    service = subprocess.Popen(
        [sys.executable, "-c", STARTS_A_RUNTIME_AND_WAITS, str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    pid = -1
    try:
        assert service.stdout is not None
        line = ""
        while not line.startswith("PID "):  # log lines come first
            line = service.stdout.readline()
        pid = int(line.split()[1])
        assert pid in session_members(pid)
        service.send_signal(signal.SIGKILL)  # no cleanup code of the service runs
        service.wait(timeout=10)
        deadline = time.monotonic() + 10
        while pid in session_members(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid not in session_members(pid)
    finally:
        if service.poll() is None:
            service.kill()
        for member in session_members(pid):  # the orphaned sleep (SIGKILL reaches no child)
            os.kill(member, signal.SIGKILL)
