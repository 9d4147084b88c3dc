"""Every invocation outcome, with real handler files run in real worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from pumphouse.runtime import FunctionSpec, InvocationResult, Outcome, Runtime, protocol
from pumphouse.runtime.process import FunctionLogLine
from pumphouse.telemetry.metrics import Metrics
from pumphouse.testing import sample_event

HANDLERS = Path(__file__).resolve().parents[1] / "handlers" / "runtime"

MakeRuntime = Callable[..., Runtime]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def spec(handler: str, *, code_uri: Path = HANDLERS, **options: Any) -> FunctionSpec:
    return FunctionSpec(name="fn", handler=handler, code_uri=code_uri, **options)


@pytest.fixture
async def make_runtime() -> AsyncIterator[MakeRuntime]:
    runtimes: list[Runtime] = []
    logs: list[FunctionLogLine] = []

    def make(*specs: FunctionSpec, **options: Any) -> Runtime:
        options.setdefault("metrics", Metrics())
        options.setdefault("log_sink", logs.append)  # keep the test output quiet
        runtime = Runtime({s.name: s for s in specs}, **options)
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        pids = runtime.worker_pids()
        await runtime.stop(timeout=1)
        assert runtime.worker_pids() == []
        assert not [pid for pid in pids if pid_alive(pid)]


async def invoke(runtime: Runtime, event: Any = None) -> InvocationResult:
    return await runtime.invoke("fn", {} if event is None else event)


def write(tmp_path: Path, name: str, source: str) -> Path:
    (tmp_path / name).write_text(source)
    return tmp_path


# -- success -----------------------------------------------------------------------------


async def test_success_returns_the_decoded_value(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.echo", memory_size=256))
    event = {"Records": [{"body": "hé", "n": 1}], "list": [1, 2.5, None, True]}
    result = await invoke(runtime, event)
    assert result.ok and result.outcome is Outcome.SUCCESS
    assert result.payload == event
    assert result.error is None and result.function_error is None
    assert result.cold_start and result.init_duration_ms is not None
    assert result.init_duration_ms > 0
    assert result.billed_duration_ms >= 1 and result.billed_duration_ms >= result.duration_ms
    assert result.memory_size_mb == 256
    assert 5 < result.max_memory_used_mb < 256
    assert result.function_ran


async def test_pre_serialized_event_bytes_are_sent_as_is(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.echo"))
    result = await runtime.invoke("fn", b'{"already": "json"}')
    assert result.payload == {"already": "json"}


async def test_context_matches_lambdas(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.context_info", timeout=5, region="eu-west-1",
                                account_id="123456789012", memory_size=512))
    result = await invoke(runtime, {})
    info = result.payload
    assert info["function_name"] == "fn"
    assert info["function_version"] == "$LATEST"
    assert info["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:123456789012:function:fn"
    assert info["memory_limit_in_mb"] == "512"  # a string, as awslambdaric has it
    assert info["aws_request_id"] == result.request_id
    assert info["log_group_name"] == "/aws/lambda/fn"
    assert "/[$LATEST]" in info["log_stream_name"]
    assert info["identity"] == [None, None]
    assert info["client_context"] is None
    assert 4000 < info["remaining_ms"] <= 5000
    assert info["cwd"] == str(HANDLERS)
    assert info["sys_path0"] == str(HANDLERS)


async def test_async_handler_is_awaited(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.async_echo"))
    for n in range(2):  # the worker's event loop is reused
        result = await invoke(runtime, {"n": n})
        assert result.payload == {"async": {"n": n}, "remaining": True}


async def test_decimal_and_int_keys_serialize_like_lambda(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.decimal_result"))
    result = await invoke(runtime)
    assert result.payload == {"price": 1.1, "1": "int key"}


async def test_bytes_are_passed_through_undecoded(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.raw_bytes"))
    result = await invoke(runtime)
    assert result.ok and result.payload == b"not json"


async def test_powertools_batch_processor_runs_unmodified(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("powertools_app.handler", timeout=10, memory_size=256))
    event = sample_event("sqs", records=3, body=lambda i: "fail" if i == 1 else f"ok {i}")
    result = await invoke(runtime, event)
    assert result.ok, result.error
    failed = event["Records"][1]["messageId"]
    assert result.payload == {"batchItemFailures": [{"itemIdentifier": failed}]}


# -- function errors ---------------------------------------------------------------------


async def test_handler_exception_is_a_function_error(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.fail"))
    result = await invoke(runtime, {"n": 7})
    assert result.outcome is Outcome.FUNCTION_ERROR and not result.ok
    assert result.function_error == "Unhandled"
    assert result.payload is None
    assert result.error is not None
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"] == "boom 7"
    assert result.error["requestId"] == result.request_id
    trace = "".join(result.error["stackTrace"])
    assert "handlers.py" in trace and "in fail" in trace and "worker.py" not in trace
    # The worker survives a handler error and is reused.
    again = await invoke(runtime, {"n": 8})
    assert not again.cold_start and again.error is not None
    assert again.error["errorMessage"] == "boom 8"


async def test_unserializable_result_is_a_marshal_error(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.not_serializable"))
    result = await invoke(runtime)
    assert result.outcome is Outcome.MARSHAL_ERROR
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.MarshalError"
    assert result.error["errorMessage"] == (
        "Unable to marshal response: Object of type set is not JSON serializable"
    )
    assert result.function_error == "Unhandled"


async def test_response_over_6_mb_is_refused(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.too_large", memory_size=512))
    result = await invoke(runtime)
    assert result.outcome is Outcome.RESPONSE_TOO_LARGE
    assert result.error is not None
    assert result.error["errorType"] == "Function.ResponseSizeTooLarge"
    assert "exceeded maximum allowed payload size (6291556 bytes)" in result.error["errorMessage"]


async def test_events_of_every_size_arrive_whole(make_runtime: MakeRuntime) -> None:
    """Events from SHARED_BODY_MIN_BYTES to SHARED_BODY_BYTES go through the worker's
    shared body, the others through the pipe: each arrives exactly as sent, a shorter
    one after a longer one included (nothing of the earlier event is read), up to the
    largest allowed."""
    runtime = make_runtime(spec("handlers.echo", memory_size=512))
    low, high = protocol.SHARED_BODY_MIN_BYTES, protocol.SHARED_BODY_BYTES
    overhead = len(b'{"data":""}')
    sizes = [10, low - 1, low, high, high + 1, low + 5, 3, protocol.MAX_REQUEST_BYTES, high - 7]
    for size in sizes:
        data = "".join(chr(97 + i % 26) for i in range(size - overhead))
        result = await invoke(runtime, {"data": data})
        assert result.outcome is Outcome.SUCCESS, (size, result.error)
        assert result.payload == {"data": data}
    [pid] = runtime.worker_pids()  # one warm worker took them all
    maps = Path(f"/proc/{pid}/maps").read_text()  # noqa: ASYNC240 - a procfs read, instant
    assert "memfd:pumphouse-event" in maps


async def test_large_event_with_extra_meta(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """The meta of an event in the shared body keeps its other fields (client context)."""
    code = write(
        tmp_path,
        "app.py",
        "def handler(event, context):\n"
        "    return [context.aws_request_id, context.client_context.custom, event]\n",
    )
    runtime = make_runtime(spec("app.handler", code_uri=code))
    event = {"pad": "p" * protocol.SHARED_BODY_MIN_BYTES}
    pool = runtime._pool("fn")
    result = await pool.invoke(
        "req-1", orjson.dumps(event), extra_meta={"client_context": {"custom": {"a": 1}}}
    )
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.payload == ["req-1", {"a": 1}, event]


async def test_request_over_6_mb_is_a_service_error(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.echo"))
    result = await invoke(runtime, {"data": "x" * (6 * 1024 * 1024)})
    assert result.outcome is Outcome.SERVICE_ERROR and not result.function_ran
    assert result.error is not None
    assert result.error["errorType"] == "RequestEntityTooLargeException"
    assert runtime.worker_pids() == []  # nothing was started for it


# -- init errors -------------------------------------------------------------------------


async def test_import_error_is_cached(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    code = write(tmp_path, "app.py", "import no_such_dependency_here\n")
    metrics = Metrics()
    runtime = make_runtime(spec("app.handler", code_uri=code), metrics=metrics)
    result = await invoke(runtime)
    assert result.outcome is Outcome.INIT_ERROR and result.function_ran
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert result.error["errorMessage"] == (
        "Unable to import module 'app': No module named 'no_such_dependency_here'"
    )
    assert result.cold_start and result.init_duration_ms is not None
    # Every later invocation fails the same way, at once, without a process.
    again = await invoke(runtime)
    cold_starts = metrics.registry.get_sample_value(
        "pumphouse_cold_starts_total", {"function": "fn"}
    )
    assert cold_starts == 1  # the second one started no worker
    assert again.error is not None and again.outcome is Outcome.INIT_ERROR
    assert again.error["errorType"] == "Runtime.ImportModuleError"
    assert again.error["requestId"] == again.request_id
    assert not again.cold_start
    assert runtime.worker_pids() == []
    # Fixed code is picked up after a reset.
    write(tmp_path, "app.py", "def handler(event, context):\n    return 'fixed'\n")
    runtime.reset("fn")
    assert (await invoke(runtime)).payload == "fixed"


async def test_missing_handler_is_handler_not_found(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.no_such_function"))
    result = await invoke(runtime)
    assert result.outcome is Outcome.INIT_ERROR
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.HandlerNotFound"
    assert result.error["errorMessage"] == (
        "Handler 'no_such_function' missing on module 'handlers'"
    )
    again = await invoke(runtime)
    assert again.error == {**result.error, "requestId": again.request_id}
    assert runtime.worker_pids() == []


async def test_syntax_error_is_user_code_syntax_error(
    make_runtime: MakeRuntime, tmp_path: Path
) -> None:
    code = write(tmp_path, "broken.py", "def handler(event, context)\n    return 1\n")
    runtime = make_runtime(spec("broken.handler", code_uri=code))
    result = await invoke(runtime)
    assert result.outcome is Outcome.INIT_ERROR
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.UserCodeSyntaxError"
    assert result.error["errorMessage"].startswith("Syntax error in module 'broken':")
    assert "broken.py" in result.error["stackTrace"][0]
    again = await invoke(runtime)
    assert again.error is not None
    assert again.error["errorType"] == "Runtime.UserCodeSyntaxError"
    assert runtime.worker_pids() == []


async def test_malformed_handler_name(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("nodot"))
    result = await invoke(runtime)
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.MalformedHandlerName"


async def test_exception_in_init_code_is_retried(
    make_runtime: MakeRuntime, tmp_path: Path
) -> None:
    code = write(
        tmp_path,
        "flaky.py",
        "import os, pathlib\n"
        "marker = pathlib.Path(os.environ['MARKER'])\n"
        "if not marker.exists():\n"
        "    marker.write_text('seen')\n"
        "    raise RuntimeError('database not up yet')\n"
        "def handler(event, context):\n"
        "    return 'up'\n",
    )
    runtime = make_runtime(
        spec("flaky.handler", code_uri=code, environment={"MARKER": str(tmp_path / "m")})
    )
    first = await invoke(runtime)
    assert first.outcome is Outcome.INIT_ERROR
    assert first.error is not None
    assert first.error["errorType"] == "RuntimeError"
    assert first.error["errorMessage"] == "database not up yet"
    second = await invoke(runtime)  # not cached: a fresh worker initializes fine
    assert second.ok and second.payload == "up" and second.cold_start


# -- kills and crashes -------------------------------------------------------------------


async def test_timeout_kills_the_worker_and_the_next_gets_a_new_one(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime(spec("handlers.sleep", timeout=0.5))
    warm = await invoke(runtime, {"seconds": 0})
    pid = warm.payload["pid"]
    started = time.monotonic()
    result = await invoke(runtime, {"seconds": 30})
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.TIMEOUT
    assert result.error is not None
    assert result.error["errorType"] == "Sandbox.Timedout"
    assert result.error["errorMessage"] == "Task timed out after 0.50 seconds"
    assert result.function_error == "Unhandled" and result.function_ran
    assert 0.45 <= elapsed < 2.0
    assert 450 <= result.duration_ms < 2000
    await asyncio.sleep(0.05)
    assert not pid_alive(pid)
    recovered = await invoke(runtime, {"seconds": 0})
    assert recovered.ok and recovered.cold_start
    assert recovered.payload["pid"] != pid


async def test_memory_over_memory_size_is_out_of_memory(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.allocate", memory_size=128, timeout=20))
    first = await invoke(runtime, {"mb": 1})
    assert first.ok
    pids = runtime.worker_pids()
    result = await invoke(runtime, {"mb": 256, "hold": 10})  # 2 x MemorySize
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.OutOfMemory"
    assert result.max_memory_used_mb > 128
    assert result.duration_ms < 10_000  # stopped, not left to hold it for its 10 s
    await asyncio.sleep(0.05)
    assert not any(pid_alive(pid) for pid in pids)
    recovered = await invoke(runtime, {"mb": 1})
    assert recovered.ok and recovered.cold_start


async def test_short_memory_spike_is_caught_at_the_answer(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.allocate", memory_size=128))
    result = await invoke(runtime, {"mb": 256, "hold": 0})
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert (await invoke(runtime, {"mb": 1})).ok


async def test_a_large_parent_does_not_count_as_the_workers_memory(
    make_runtime: MakeRuntime,
) -> None:
    # ru_maxrss survives execve: a worker spawned by a big process must not inherit it.
    ballast = bytearray(300 * 1024 * 1024)
    runtime = make_runtime(spec("handlers.allocate", memory_size=128))
    result = await invoke(runtime, {"mb": 1})
    assert ballast[-1] == 0  # still held while the worker ran
    assert result.ok, result.error
    assert result.max_memory_used_mb < 128
    # ... and its own peak is still measured once it passes the inherited one.
    assert (await invoke(runtime, {"mb": 400})).outcome is Outcome.OUT_OF_MEMORY


async def test_address_space_backstop_raises_memory_error(make_runtime: MakeRuntime) -> None:
    # Over RLIMIT_AS (2 x 128 MB + 4 GiB): the allocation itself fails inside the worker.
    runtime = make_runtime(spec("handlers.allocate", memory_size=128))
    result = await invoke(runtime, {"mb": 16 * 1024})
    assert result.outcome is Outcome.OUT_OF_MEMORY
    assert (await invoke(runtime, {"mb": 1})).ok


async def test_exit_is_a_crash_with_the_status(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(spec("handlers.exit_now"))
    result = await invoke(runtime, {"status": 3})
    assert result.outcome is Outcome.CRASH
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ExitError"
    assert result.error["errorMessage"] == "Runtime exited with error: exit status 3"
    again = await invoke(runtime, {"status": 4})
    assert again.cold_start and again.error is not None
    assert again.error["errorMessage"] == "Runtime exited with error: exit status 4"


async def test_segfault_is_a_crash_and_the_pool_recovers(make_runtime: MakeRuntime) -> None:
    crashing = FunctionSpec(name="crash", handler="handlers.segfault", code_uri=HANDLERS)
    runtime = make_runtime(crashing, spec("handlers.echo"))
    result = await runtime.invoke("crash", {})
    assert result.outcome is Outcome.CRASH
    assert result.error is not None
    assert result.error["errorMessage"] == "Runtime exited with error: signal: segmentation fault"
    assert (await runtime.invoke("fn", {"x": 1})).payload == {"x": 1}
    assert (await runtime.invoke("crash", {})).outcome is Outcome.CRASH


async def test_crash_during_init_is_an_init_error(
    make_runtime: MakeRuntime, tmp_path: Path
) -> None:
    code = write(tmp_path, "dies.py", "import os\nos._exit(9)\n")
    runtime = make_runtime(spec("dies.handler", code_uri=code))
    result = await invoke(runtime)
    assert result.outcome is Outcome.INIT_ERROR
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ExitError"
    assert result.error["errorMessage"] == "Runtime exited with error: exit status 9"


async def test_metrics_count_outcomes(make_runtime: MakeRuntime) -> None:
    metrics = Metrics()
    runtime = make_runtime(spec("handlers.fail"), metrics=metrics)
    await invoke(runtime)
    await invoke(runtime)

    def sample(metric: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(metric, labels)

    assert sample("pumphouse_invocations_total", function="fn", outcome="function_error") == 2
    assert sample("pumphouse_cold_starts_total", function="fn") == 1
    assert sample("pumphouse_init_duration_seconds_count", function="fn") == 1
    assert sample("pumphouse_invocation_duration_seconds_count", function="fn") == 2
    assert sample("pumphouse_workers", function="fn") == 1
    assert sample("pumphouse_concurrent_executions", function="fn") == 0
    assert os.getpid() not in runtime.worker_pids()
