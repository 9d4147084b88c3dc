"""The runtime's pure parts: environment, wire format, results, reports, specs."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from pumphouse.runtime import FunctionSpec, InvocationResult, Outcome, format_report, protocol
from pumphouse.runtime.channel import FrameChannel
from pumphouse.runtime.environment import (
    DEFAULT_PASS_ENVIRONMENT,
    build_environment,
    passed_variables,
)
from pumphouse.runtime.process import describe_exit
from pumphouse.runtime.result import billed_ms


def spec(**options: object) -> FunctionSpec:
    return FunctionSpec(name="orders", handler="app.handler", code_uri=Path("/srv/code"),
                        **options)  # type: ignore[arg-type]  # options are FunctionSpec's


# -- environment ---------------------------------------------------------------------------


def test_passed_variables_supports_prefix_globs() -> None:
    source = {"AWS_ENDPOINT_URL": "a", "AWS_ENDPOINT_URL_SQS": "b", "AWS_ENDPOINT_URLX": "c",
              "AWS_PROFILE": "p", "SECRET": "s"}
    assert passed_variables(DEFAULT_PASS_ENVIRONMENT, source) == {
        "AWS_ENDPOINT_URL": "a", "AWS_ENDPOINT_URL_SQS": "b", "AWS_PROFILE": "p"
    }


def test_build_environment_layers() -> None:
    parent = {"PATH": "/bin", "HOME": "/root", "AWS_ACCESS_KEY_ID": "parent-key",
              "AWS_REGION": "parent-region", "DATABASE_PASSWORD": "x"}
    env = build_environment(
        spec(environment={"TABLE": "t", "AWS_ACCESS_KEY_ID": "function-key",
                          "PYTHONPATH": "/opt/lib"},
             region="eu-west-1", memory_size=256, runtime="python3.12"),
        tmpdir="/tmp/w1",
        log_stream_name="2024/01/01/[$LATEST]abc",
        parent=parent,
        extra_pythonpath=["/srv/pumphouse"],
    )
    assert env["PATH"] == "/bin"
    assert env["LANG"] == "en_US.UTF-8"
    assert "HOME" not in env and "DATABASE_PASSWORD" not in env
    assert env["AWS_ACCESS_KEY_ID"] == "function-key"  # the function's own wins
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["TABLE"] == "t"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == "2024/01/01/[$LATEST]abc"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["LAMBDA_TASK_ROOT"] == "/srv/code"
    assert env["_HANDLER"] == "app.handler"
    assert env["TMPDIR"] == env["TMP"] == env["TEMP"] == "/tmp/w1"
    assert env["TZ"] == ":UTC"
    assert env["PYTHONPATH"].split(os.pathsep) == ["/srv/code", "/opt/lib", "/srv/pumphouse"]


def test_reserved_variables_cannot_be_overridden() -> None:
    env = build_environment(
        spec(environment={"AWS_LAMBDA_FUNCTION_NAME": "evil", "_HANDLER": "x.y"}),
        tmpdir="/t", log_stream_name="s", parent={},
    )
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "orders"
    assert env["_HANDLER"] == "app.handler"


# -- spec and results ----------------------------------------------------------------------


def test_function_spec() -> None:
    s = spec(region="ap-south-1", account_id="123456789012")
    assert s.invoked_function_arn == "arn:aws:lambda:ap-south-1:123456789012:function:orders"
    assert s.log_group_name == "/aws/lambda/orders"
    with pytest.raises(TypeError):
        s.environment["X"] = "y"  # type: ignore[index]  # read-only on purpose
    with pytest.raises(ValueError, match="timeout"):
        spec(timeout=0)


def test_billed_duration_rounds_up_to_the_millisecond() -> None:
    assert [billed_ms(d) for d in (0.0, 0.2, 1.0, 1.01, 99.999)] == [1, 1, 1, 2, 100]


def test_describe_exit_words_it_like_lambda() -> None:
    assert describe_exit(1) == "exit status 1"
    assert describe_exit(-11) == "signal: segmentation fault"
    assert describe_exit(-9) == "signal: killed"


def result(**changes: object) -> InvocationResult:
    fields: dict[str, object] = dict(
        request_id="8f5c6d52-0000-4000-8000-000000000001", outcome=Outcome.SUCCESS,
        payload=None, error=None, function_error=None, duration_ms=1.234,
        billed_duration_ms=2, init_duration_ms=80.1, max_memory_used_mb=40,
        memory_size_mb=128, cold_start=True,
    )
    fields.update(changes)
    return InvocationResult(**fields)  # type: ignore[arg-type]  # test data


def test_format_report() -> None:
    assert format_report(result()) == (
        "REPORT RequestId: 8f5c6d52-0000-4000-8000-000000000001\tDuration: 1.23 ms\t"
        "Billed Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\t"
        "Init Duration: 80.10 ms"
    )
    timeout = format_report(result(outcome=Outcome.TIMEOUT, init_duration_ms=None))
    assert timeout.endswith("Max Memory Used: 40 MB\tStatus: timeout")
    oom = format_report(result(outcome=Outcome.OUT_OF_MEMORY, init_duration_ms=None,
                               error={"errorType": "Runtime.OutOfMemory"}))
    assert oom.endswith("Status: error\tError Type: Runtime.OutOfMemory")


def test_result_flags() -> None:
    assert result().ok and result().function_ran
    assert not result(outcome=Outcome.TIMEOUT).ok
    assert result(outcome=Outcome.TIMEOUT).function_ran
    assert not result(outcome=Outcome.SERVICE_ERROR).function_ran


# -- wire format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes",
    [[0, 0, 0], [10, 10, 10], [300_000] * 3, [3_000_000] * 3, [10, 300_000, 5, 70_000, 0, 4_100]],
    ids=["empty", "small", "large", "huge", "mixed"],
)
async def test_frames_cross_the_pipes_intact(sizes: list[int]) -> None:
    """Parent channel (event loop) <-> worker side (blocking), frames sent back to back
    so that several may arrive in one read."""
    to_worker_r, to_worker_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    for fd in (to_worker_w, to_parent_w):
        protocol.enlarge_pipe(fd)
    bodies = [bytes(range(256)) * (size // 256) + b"x" * (size % 256) for size in sizes]

    def echo_worker() -> None:
        frames = protocol.BlockingFrames(to_worker_r, to_parent_w)
        while (frame := frames.read()) is not None:
            _, meta, data = frame
            frames.write(protocol.RESULT, bytes(meta), data)
        os.close(to_parent_w)

    thread = threading.Thread(target=echo_worker)
    thread.start()
    received: list[tuple[int, bytes, bytes]] = []
    all_received = asyncio.Event()
    closed = asyncio.Event()

    def on_frame(kind: int, meta: memoryview, data: memoryview) -> None:
        received.append((kind, bytes(meta), bytes(data)))
        if len(received) == len(sizes):
            all_received.set()

    channel = FrameChannel(
        asyncio.get_running_loop(), read_fd=to_parent_r, write_fd=to_worker_w,
        on_frame=on_frame, on_close=lambda err: closed.set(),
    )
    for n, body in enumerate(bodies):
        channel.send(protocol.INVOKE, b'{"n": %d}' % n, body)
    await asyncio.wait_for(all_received.wait(), 10)
    channel.close_requests()
    await asyncio.wait_for(closed.wait(), 5)
    await asyncio.to_thread(thread.join)
    os.close(to_worker_r)
    assert [(k, m) for k, m, _ in received] == [
        (protocol.RESULT, b'{"n": %d}' % n) for n in range(len(sizes))
    ]
    assert [b for _, _, b in received] == bodies


def test_a_bad_header_is_refused() -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_header(protocol.header(99, 0, 0))
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_header(protocol.header(protocol.RESULT, protocol.MAX_FRAME_BYTES, 1))
