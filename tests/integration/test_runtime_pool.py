"""Warm workers, concurrency limits, logs, environment, and shutdown — with real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from pumphouse.runtime import FunctionSpec, Outcome, Runtime, RuntimeStopped, protocol
from pumphouse.runtime.environment import build_environment, import_roots
from pumphouse.runtime.process import FunctionLogLine
from pumphouse.telemetry.metrics import Metrics
from pumphouse.testing import LocalInvoker, invoke_handler, sample_event

HANDLERS = Path(__file__).resolve().parents[1] / "handlers" / "runtime"
WORKER_SCRIPT = str(Path(__file__).resolve().parents[2] / "pumphouse" / "runtime" / "worker.py")

MakeRuntime = Callable[..., Runtime]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def spec(handler: str, *, name: str = "fn", **options: Any) -> FunctionSpec:
    return FunctionSpec(name=name, handler=handler, code_uri=HANDLERS, **options)


@pytest.fixture
async def make_runtime() -> AsyncIterator[MakeRuntime]:
    runtimes: list[Runtime] = []

    def make(*specs: FunctionSpec, **options: Any) -> Runtime:
        options.setdefault("metrics", Metrics())
        runtime = Runtime({s.name: s for s in specs}, **options)
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        pids = runtime.worker_pids()
        await runtime.stop(timeout=1)
        assert not [pid for pid in pids if pid_alive(pid)]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


# -- warm workers ------------------------------------------------------------------------


async def test_warm_worker_runs_init_once(make_runtime: MakeRuntime) -> None:
    lines: list[FunctionLogLine] = []
    runtime = make_runtime(spec("handlers.counter"), log_sink=lines.append)
    results = [await runtime.invoke("fn", {}) for _ in range(25)]
    assert [r.payload["count"] for r in results] == list(range(1, 26))
    assert {r.payload["pid"] for r in results} == {results[0].payload["init_pid"]}
    assert {r.payload["init_at"] for r in results} == {results[0].payload["init_at"]}
    assert [r.cold_start for r in results] == [True] + [False] * 24
    assert results[0].init_duration_ms is not None
    assert all(r.init_duration_ms is None for r in results[1:])
    assert [line.message for line in lines].count(
        f"init: loading handlers {results[0].payload['pid']}"
    ) == 1


async def test_one_worker_per_concurrent_invocation_then_reuse(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.sleep"), max_concurrency=3)
    first = await asyncio.gather(*(runtime.invoke("fn", {"seconds": 0.2}) for _ in range(3)))
    assert len({r.payload["pid"] for r in first}) == 3
    second = await asyncio.gather(*(runtime.invoke("fn", {"seconds": 0.05}) for _ in range(3)))
    assert {r.payload["pid"] for r in second} == {r.payload["pid"] for r in first}
    assert not any(r.cold_start for r in second)


async def test_worker_killed_while_idle_is_replaced(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.counter"))
    pid = (await runtime.invoke("fn", {})).payload["pid"]
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if pid not in runtime.worker_pids():
            break
        await asyncio.sleep(0.01)
    result = await runtime.invoke("fn", {})
    assert result.ok and result.cold_start and result.payload["pid"] != pid


async def test_idle_workers_are_retired(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.counter"), worker_idle_seconds=0.2)
    pid = (await runtime.invoke("fn", {})).payload["pid"]
    assert runtime.worker_pids() == [pid]
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not runtime.worker_pids():
            break
    assert runtime.worker_pids() == []
    assert not pid_alive(pid)
    assert (await runtime.invoke("fn", {})).cold_start


async def test_provisioned_workers_start_warm_and_stay(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(
        spec("handlers.context_info", provisioned_concurrency=2), worker_idle_seconds=0.1
    )
    await runtime.start()
    assert len(runtime.worker_pids()) == 2
    result = await runtime.invoke("fn", {"env": ["AWS_LAMBDA_INITIALIZATION_TYPE"]})
    assert not result.cold_start
    assert result.payload["env"] == {"AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency"}
    await asyncio.sleep(0.4)  # longer than the idle time: provisioned workers stay
    assert len(runtime.worker_pids()) == 2


# -- concurrency limits with real workers -------------------------------------------------


async def intervals(
    runtime: Runtime, count: int, seconds: float = 0.15, **kwargs: Any
) -> list[tuple[float, float]]:
    """When each of ``count`` concurrent invocations ran. Sleeps long enough to outlast
    the cold starts of the others where a test expects them to overlap."""
    results = await asyncio.gather(
        *(runtime.invoke("fn", {"seconds": seconds}, **kwargs) for _ in range(count))
    )
    assert all(r.ok for r in results), [r.error for r in results]
    return [(r.payload["start"], r.payload["end"]) for r in results]


async def test_global_limit_bounds_running_invocations(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.sleep"), max_concurrency=2)
    # Each sleeps long enough to outlast the other's cold start on a busy machine.
    assert max_overlap(await intervals(runtime, 4, seconds=1.5)) == 2
    assert len(runtime.worker_pids()) == 2


async def test_reserved_concurrency_bounds_the_function(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.sleep", reserved_concurrency=1), max_concurrency=4)
    assert max_overlap(await intervals(runtime, 3)) == 1


async def test_caller_limit_bounds_its_invocations(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.sleep"), max_concurrency=4)
    caller = runtime.caller("mapping-1", function="fn", limit=1)
    assert max_overlap(await intervals(runtime, 3, caller=caller)) == 1
    caller.set_limit(3)
    assert max_overlap(await intervals(runtime, 3, seconds=2.0, caller=caller)) == 3


async def test_slot_acquired_by_the_poller_is_used_and_kept(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.echo"))
    caller = runtime.caller("mapping-1", function="fn", limit=1)
    async with caller.slot() as slot:
        result = await runtime.invoke("fn", {"a": 1}, slot=slot)
        assert result.payload == {"a": 1}
        assert caller.in_use == 1  # still the poller's to release
    assert caller.in_use == 0
    other = FunctionSpec(name="other", handler="handlers.echo", code_uri=HANDLERS)
    runtime2 = make_runtime(spec("handlers.echo"), other)
    async with runtime2.caller("m", function="fn").slot() as slot:
        with pytest.raises(ValueError, match="cannot run"):
            await runtime2.invoke("other", {}, slot=slot)


# -- logs ----------------------------------------------------------------------------------


async def test_function_output_is_logged_with_its_request_id(make_runtime: MakeRuntime) -> None:
    with structlog.testing.capture_logs() as events:
        runtime = make_runtime(spec("handlers.printer"))
        first = await runtime.invoke("fn", {})
        second = await runtime.invoke("fn", {})
        await runtime.stop(timeout=1)
    lines = [e for e in events if e.get("stream")]
    init = [e for e in lines if e["event"].startswith("init: loading handlers")]
    assert len(init) == 1 and init[0]["request_id"] is None and init[0]["function"] == "fn"
    for result in (first, second):
        rid = result.request_id
        mine = [e for e in lines if e["request_id"] == rid]
        assert {"event": f"handler says {rid}", "stream": "stdout"}.items() <= next(
            e for e in mine if e["event"].startswith("handler says")
        ).items()
        assert any(e["event"] == "to stderr" and e["stream"] == "stderr" for e in mine)
        assert not [e for e in lines if e["event"].startswith("BASIC")]  # basicConfig no-op
        warning = next(e for e in mine if "logged warning" in e["event"])
        assert warning["event"].startswith("[WARNING]\t")
        assert warning["event"].endswith(f"\t{rid}\tlogged warning")
        # A line without a newline is attributed to its own invocation too.
        assert any(e["event"] == "no newline at the end" for e in mine)
    reports = [e for e in events if e["event"] == "REPORT"]
    assert [r["request_id"] for r in reports] == [first.request_id, second.request_id]
    assert reports[0]["outcome"] == "success" and "init_duration_ms" in reports[0]
    assert "init_duration_ms" not in reports[1]
    assert reports[1]["billed_duration_ms"] >= 1
    assert reports[1]["memory_size_mb"] == 128 and reports[1]["max_memory_used_mb"] > 0


async def test_error_is_logged_as_lambda_does(make_runtime: MakeRuntime) -> None:
    lines: list[FunctionLogLine] = []
    runtime = make_runtime(spec("handlers.fail"), log_sink=lines.append)
    result = await runtime.invoke("fn", {"n": 1})
    error_lines = [line for line in lines if line.message.startswith("[ERROR] ValueError: boom 1")]
    assert len(error_lines) == 1
    assert error_lines[0].request_id == result.request_id
    assert "Traceback (most recent call last):\n" in error_lines[0].message


# -- environment ---------------------------------------------------------------------------


async def test_environment_is_built_not_inherited(
    make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUMPHOUSE_TEST_SECRET", "s3cret")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local-key")
    runtime = make_runtime(
        spec("handlers.context_info", environment={"TABLE": "orders"}, region="eu-central-1")
    )
    names = [
        "PUMPHOUSE_TEST_SECRET",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ACCESS_KEY_ID",
        "TABLE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "LAMBDA_TASK_ROOT",
        "_HANDLER",
        "TZ",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
    ]
    result = await runtime.invoke("fn", {"env": names})
    env = result.payload["env"]
    assert env["PUMPHOUSE_TEST_SECRET"] is None
    assert env["AWS_ENDPOINT_URL_SQS"] == "http://127.0.0.1:1"
    assert env["AWS_ACCESS_KEY_ID"] == "local-key"
    assert env["TABLE"] == "orders"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/fn"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-central-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["LAMBDA_TASK_ROOT"] == str(HANDLERS)
    assert env["_HANDLER"] == "handlers.context_info"
    assert env["TZ"] == ":UTC"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert "HOME" not in result.payload["environ_keys"]
    assert result.payload["argv"] == [WORKER_SCRIPT]


async def test_pass_environment_globs(
    make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUMPHOUSE_TEST_SECRET", "s3cret")
    runtime = make_runtime(spec("handlers.context_info"), pass_environment=["PUMPHOUSE_TEST_*"])
    result = await runtime.invoke("fn", {"env": ["PUMPHOUSE_TEST_SECRET"]})
    assert result.payload["env"] == {"PUMPHOUSE_TEST_SECRET": "s3cret"}


async def test_each_worker_has_its_own_tmp_removed_at_exit(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.write_tmp"), max_concurrency=2)
    paths = await asyncio.gather(runtime.invoke("fn", {}), runtime.invoke("fn", {}))
    assert len(runtime.worker_pids()) == 2  # both were cold starts, one worker each
    files = [Path(r.payload) for r in paths]
    assert all(f.read_text() == "data" for f in files)
    assert files[0].parent != files[1].parent
    await runtime.stop(timeout=1)
    assert not any(f.parent.exists() for f in files)


# -- shutdown ------------------------------------------------------------------------------


async def test_stop_waits_for_in_flight_then_refuses(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.sleep"))
    caller = runtime.caller("m", function="fn", limit=1)
    running = asyncio.create_task(runtime.invoke("fn", {"seconds": 0.3}, caller=caller))
    await asyncio.sleep(0.15)  # started (cold start included)
    waiting = asyncio.create_task(runtime.invoke("fn", {"seconds": 0}, caller=caller))
    await asyncio.sleep(0.01)
    await runtime.stop(timeout=5)
    assert (await running).ok
    queued = await waiting
    assert queued.outcome is Outcome.SERVICE_ERROR and not queued.function_ran
    after = await runtime.invoke("fn", {"seconds": 0})
    assert after.outcome is Outcome.SERVICE_ERROR
    assert after.error is not None and after.error["errorType"] == "Pumphouse.RuntimeStopped"
    with pytest.raises(RuntimeStopped):
        async with caller.slot():
            pass
    assert runtime.worker_pids() == []


async def test_stop_abandons_what_outlives_the_timeout(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.sleep", timeout=30))
    running = asyncio.create_task(runtime.invoke("fn", {"seconds": 20}))
    await asyncio.sleep(0.3)
    pids = runtime.worker_pids()
    assert len(pids) == 1
    started = time.monotonic()
    await runtime.stop(timeout=0.2)
    assert time.monotonic() - started < 3
    result = await running
    assert result.outcome is Outcome.SERVICE_ERROR and not result.function_ran
    assert not pid_alive(pids[0])


async def test_no_process_is_left_behind(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.spawn_child"), max_concurrency=2)
    results = await asyncio.gather(runtime.invoke("fn", {}), runtime.invoke("fn", {}))
    children = [r.payload for r in results]
    workers = runtime.worker_pids()
    assert workers and all(pid_alive(pid) for pid in [*children, *workers])
    await runtime.stop(timeout=1)
    for _ in range(50):  # grandchildren are reaped by whoever adopted them
        if not any(pid_alive(pid) for pid in [*children, *workers]):
            break
        await asyncio.sleep(0.02)
    assert not [pid for pid in [*children, *workers] if pid_alive(pid)]


# -- pumphouse.testing --------------------------------------------------------------------


async def test_local_invoker_runs_a_handler_in_a_worker(tmp_path: Path) -> None:
    async with LocalInvoker("powertools_app.handler", code_uri=HANDLERS, timeout=10) as invoker:
        result = await invoker.invoke(sample_event("sqs", records=2))
        assert result.ok, result.error
        assert result.payload == {"batchItemFailures": []}
        pids = invoker.runtime.worker_pids()
    assert pids and not any(pid_alive(pid) for pid in pids)


def test_invoke_handler_in_process() -> None:
    def handler(event: Any, context: Any) -> Any:
        return {"n": len(event["Records"]), "fn": context.function_name}

    assert invoke_handler(handler, sample_event("kinesis", records=2)) == {
        "n": 2,
        "fn": "test-function",
    }
    assert invoke_handler("handlers.decimal_result", {}, code_uri=HANDLERS) == {
        "price": 1.1,
        "1": "int key",
    }
    assert invoke_handler("handlers.async_echo", {"a": 1}, code_uri=HANDLERS) == {
        "async": {"a": 1},
        "remaining": True,
    }
    with pytest.raises(TypeError, match="Unable to marshal response: Object of type set"):
        invoke_handler("handlers.not_serializable", {}, code_uri=HANDLERS)
    with pytest.raises(ValueError, match="boom 3"):
        invoke_handler("handlers.fail", {"n": 3}, code_uri=HANDLERS)


def test_worker_removes_its_tmp_when_the_runtime_is_gone(tmp_path: Path) -> None:
    """A worker whose runtime vanished (request pipe closed, no stop) cleans up itself."""
    worker_tmp = tmp_path / "pumphouse-orphan"
    worker_tmp.mkdir()
    (worker_tmp / "left-behind").write_text("x")
    env = build_environment(
        spec("handlers.echo"),
        tmpdir=str(worker_tmp),
        log_stream_name="s",
        extra_pythonpath=import_roots(),
    )
    request_r, request_w = os.pipe()
    answer_r, answer_w = os.pipe()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pumphouse.runtime.worker",
            str(request_r),
            str(answer_w),
            "128",
            "arn:aws:lambda:us-east-1:000000000000:function:fn",
        ],
        env=env,
        cwd=HANDLERS,
        pass_fds=(request_r, answer_w),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(request_r)
    os.close(answer_w)
    frames = protocol.BlockingFrames(answer_r, request_w)
    ready = frames.read()
    assert ready is not None and ready[0] == protocol.READY
    os.close(request_w)  # the runtime is gone
    assert proc.wait(timeout=10) == 0
    os.close(answer_r)
    assert not worker_tmp.exists()


SERVICE_THAT_DIES = """
import asyncio, sys
from pathlib import Path
from pumphouse.runtime import FunctionSpec, Runtime

async def main():
    spec = FunctionSpec(name="fn", handler="busy.handler", code_uri=Path(sys.argv[1]), timeout=600)
    await Runtime({"fn": spec}, max_concurrency=1).invoke("fn", {})

asyncio.run(main())
"""

BUSY_HANDLER = """
import os, pathlib, time

def handler(event, context):
    pathlib.Path(__file__).with_name("running").write_text(str(os.getpid()))
    while True:
        time.sleep(1)
"""


def test_a_busy_worker_does_not_outlive_a_killed_service(tmp_path: Path) -> None:
    (tmp_path / "busy.py").write_text(BUSY_HANDLER)
    marker = tmp_path / "running"
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE_THAT_DIES, str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            assert service.poll() is None, "the service exited before its handler ran"
            time.sleep(0.05)
        worker_pid = int(marker.read_text())  # the handler is running in this worker now
        service.send_signal(signal.SIGKILL)  # no cleanup code of the service runs
        service.wait(timeout=10)
        deadline = time.monotonic() + 10
        while pid_alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(worker_pid)
    finally:
        if service.poll() is None:
            service.kill()
