"""AWS's official runtime interface clients as pumphouse workers, unmodified: the Python
client ``awslambdaric`` (PyPI) as an ``ImageConfig`` function, the Node.js client
``aws-lambda-ric`` (npm, installed in the function's ``node_modules`` by ``make test``)
as a ``nodejs20.x`` function. Each handles an SQS batch end to end with partial batch
responses, and each outcome is classified as for Python workers."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_sqs_support import (
    ONE_LOOP,
    create_queue,
    eventually,
    mapping_labels,
    metric,
    queue_arn,
    running,
    send_bodies,
    sqs_client,
)

from pumphouse.config import parse_config
from pumphouse.devstack import MotoServer
from pumphouse.runtime import Outcome, Runtime
from pumphouse.runtime.process import FunctionLogLine
from pumphouse.telemetry.metrics import Metrics

pytestmark = pytest.mark.slow

HANDLERS = Path(__file__).resolve().parents[1] / "handlers"
PYTHON_CODE = HANDLERS / "ric_python"
NODE_CODE = HANDLERS / "ric_node"
"""Its node_modules holds aws-lambda-ric (``make test`` installs it from package.json)."""


def python_client(name: str, **extra: Any) -> dict[str, Any]:
    """An ImageConfig function run by awslambdaric: ``app.<name>``."""
    return {
        "CodeUri": str(PYTHON_CODE),
        "ImageConfig": {
            "EntryPoint": [sys.executable, "-m", "awslambdaric"],
            "Command": [f"app.{name}"],
        },
        **extra,
    }


def node_client(name: str, **extra: Any) -> dict[str, Any]:
    """A nodejs20.x function run by aws-lambda-ric: ``handlers.<name>``."""
    return {"CodeUri": str(NODE_CODE), "Runtime": "nodejs20.x", "Handler": f"handlers.{name}",
            **extra}


CLIENTS = {"awslambdaric": python_client, "aws-lambda-ric": node_client}
ERROR_TYPES = {"awslambdaric": "ValueError", "aws-lambda-ric": "TypeError"}


@pytest.fixture(params=list(CLIENTS))
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def config_text(tmp_path: Path, functions: dict[str, Any], **settings: Any) -> str:
    return yaml.safe_dump({
        "Settings": {
            "StateStore": f"sqlite:///{tmp_path / 'state.db'}",
            "MetricsAddress": "127.0.0.1:0",
            "ShutdownTimeoutSeconds": 5,
            **settings,
        },
        "Functions": functions,
        "EventSourceMappings": [],
    })


MakeRuntime = Callable[..., Runtime]


@pytest.fixture
async def make_runtime(tmp_path: Path) -> AsyncIterator[MakeRuntime]:
    runtimes: list[Runtime] = []

    def make(functions: dict[str, Any], logs: list[FunctionLogLine] | None = None) -> Runtime:
        for function in functions.values():
            function.setdefault("Environment", {"Variables": {"OUT_DIR": str(tmp_path)}})
        config = parse_config(config_text(tmp_path, functions), base_dir=tmp_path)
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


async def test_success_warm_reuse_context_and_logs(client: str, make_runtime: MakeRuntime) -> None:
    logs: list[FunctionLogLine] = []
    runtime = make_runtime({"fn": CLIENTS[client]("echo")}, logs)
    first = await runtime.invoke("fn", {"n": 1})
    assert first.outcome is Outcome.SUCCESS, first.error
    assert first.cold_start and first.init_duration_ms is not None
    assert first.payload["event"] == {"n": 1}
    assert first.payload["function"] == "fn"
    assert first.payload["handler"] in ("app.echo", "handlers.echo")
    assert 0 < first.payload["remaining_ms"] <= 3000
    pid = runtime.worker_pids("fn")
    second = await runtime.invoke("fn", {"n": 2})
    assert (second.outcome, second.cold_start, second.payload["event"]) == (
        Outcome.SUCCESS, False, {"n": 2}
    )
    assert runtime.worker_pids("fn") == pid, "the warm process is reused"
    # Node's console.log lines are "<time>\t<request id>\tINFO\t<message>".
    echoed = [line for line in logs if line.message.split("\t")[-1].startswith("echo ")]
    assert [line.request_id for line in echoed] == [first.request_id, second.request_id]
    assert second.max_memory_used_mb > 0


async def test_unhandled_exception_is_a_function_error(client: str,
                                                       make_runtime: MakeRuntime) -> None:
    runtime = make_runtime({"fn": CLIENTS[client]("boom")})
    result = await runtime.invoke("fn", {})
    assert result.outcome is Outcome.FUNCTION_ERROR
    assert result.function_error == "Unhandled"
    assert result.error is not None
    assert result.error["errorType"] == ERROR_TYPES[client]
    assert result.error["errorMessage"] == "boom"
    assert result.error["requestId"] == result.request_id
    trace = {"awslambdaric": "stackTrace", "aws-lambda-ric": "trace"}[client]
    assert result.error[trace], "the stack as the client posted it"
    pid = runtime.worker_pids("fn")
    assert (await runtime.invoke("fn", {})).outcome is Outcome.FUNCTION_ERROR
    assert runtime.worker_pids("fn") == pid, "a function error keeps the process warm"


async def test_timeout_kills_the_process(client: str, make_runtime: MakeRuntime) -> None:
    runtime = make_runtime({"fn": CLIENTS[client]("sleep", Timeout=1)})
    result = await runtime.invoke("fn", {})
    assert result.outcome is Outcome.TIMEOUT
    assert result.error is not None
    assert result.error["errorType"] == "Sandbox.Timedout"
    assert result.error["errorMessage"] == "Task timed out after 1.00 seconds"
    await eventually(lambda: runtime.worker_pids("fn") == [], what="the process reaped")


async def test_process_exit_is_a_crash(client: str, make_runtime: MakeRuntime) -> None:
    runtime = make_runtime({"fn": CLIENTS[client]("leave")})
    result = await runtime.invoke("fn", {})
    assert result.outcome is Outcome.CRASH
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ExitError"
    assert result.error["errorMessage"] == "Runtime exited with error: exit status 3"


async def test_memory_spike_over_memory_size_is_out_of_memory(
    client: str, make_runtime: MakeRuntime
) -> None:
    runtime = make_runtime({"fn": CLIENTS[client]("spike", MemorySize=128)})
    result = await runtime.invoke("fn", {})
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.OutOfMemory"
    assert result.max_memory_used_mb > 128


async def test_missing_handler_is_an_init_error_and_cached(client: str,
                                                           make_runtime: MakeRuntime) -> None:
    runtime = make_runtime({"fn": CLIENTS[client]("no_such_handler")})
    first = await runtime.invoke("fn", {})
    assert first.outcome is Outcome.INIT_ERROR
    assert first.error is not None
    assert first.error["errorType"] == "Runtime.HandlerNotFound"
    second = await runtime.invoke("fn", {})
    assert (second.outcome, second.cold_start) == (Outcome.INIT_ERROR, False), "cached"
    assert second.error == {**first.error, "requestId": second.request_id}


async def test_node_es_module_handler(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime({"fn": node_client("x", Handler="esm.handler")})
    result = await runtime.invoke("fn", {"a": 1})
    assert (result.outcome, result.payload) == (Outcome.SUCCESS, {"esm": True, "event": {"a": 1}})


async def test_sqs_batch_with_partial_failure_end_to_end(
    client: str, moto_server: MotoServer, unique_name: str, tmp_path: Path
) -> None:
    """ReportBatchItemFailures through an official client: the failed message comes back
    (after its visibility timeout), the others are deleted once."""
    function = CLIENTS[client]("batch", Timeout=2)
    function["Environment"] = {"Variables": {"OUT_DIR": str(tmp_path)}}
    mapping = {
        "FunctionName": "batch",
        "EventSourceArn": queue_arn(unique_name),
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }
    document = yaml.safe_load(config_text(
        tmp_path, {"batch": function}, Region="us-east-1", Endpoints={"Sqs": moto_server.url}
    ))
    document["EventSourceMappings"] = [mapping]
    config = parse_config(yaml.safe_dump(document), base_dir=tmp_path)
    out = tmp_path / "batch.jsonl"

    def deliveries() -> Counter[str]:
        if not out.exists():
            return Counter()
        lines = out.read_text().splitlines()
        return Counter(body for line in lines for body in json.loads(line)["bodies"])

    async with sqs_client(moto_server.url) as sqs:
        url = await create_queue(sqs, unique_name, visibility=2)
        await send_bodies(sqs, url, ["ok-1", "ok-2", "fail", "ok-3"])
        async with running(config, factory=ONE_LOOP) as service:
            labels = mapping_labels(service)
            await eventually(lambda: deliveries()["fail"] >= 2, what="the failed message again")
            await eventually(
                lambda: metric(service, "pumphouse_deleted_events_total", **labels) == 3,
                what="three deletes",
            )
    seen = deliveries()
    assert {body: seen[body] for body in ("ok-1", "ok-2", "ok-3")} == {
        "ok-1": 1, "ok-2": 1, "ok-3": 1
    }
