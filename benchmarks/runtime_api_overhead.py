"""What an invocation through the Runtime API costs, against the loopback floor.

Prints, in one run, for events of 1 KB and 1 MB (pre-serialized, so that only transport
and bookkeeping are measured):

(a) the raw loopback HTTP request/response round trip: a child process asks over a
    keep-alive connection, an asyncio server in this process answers with the event
    (the floor for handing an event to another process over HTTP); and the raw cost of
    the Runtime API's two exchanges per invocation (GET answered with the event, then
    POST of the response answered 202), with nothing else done;
(b) ``Runtime.invoke`` of a no-op handler through the Runtime API: a minimal custom
    runtime (a ``bootstrap`` that speaks HTTP/1.1 over one keep-alive socket, no
    library) and AWS's Python runtime interface client ``awslambdaric``;
(c) the same no-op handler through today's Python worker (framed pipes);
(d) cold start of a Node.js worker (``aws-lambda-ric``, the first answer of a new
    process) against ``node -e 0``.

Target: the minimal runtime's warm invoke at 1 KB within 2 x the raw HTTP round trip.
Run: ``make bench`` or ``python benchmarks/runtime_api_overhead.py``. Prints only; exits 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import structlog

from pumphouse.runtime import FunctionSpec, Runtime
from pumphouse.telemetry.metrics import Metrics

SIZES = {"1 KB": 1024, "1 MB": 1024 * 1024}
ROUNDS = {"1 KB": 400, "1 MB": 20}
BLOCKS = 5
WARMUP = 20
COLD_STARTS = 10
NODE_HANDLERS = Path(__file__).resolve().parents[1] / "tests" / "handlers" / "ric_node"

_RAW_CLIENT = textwrap.dedent(
    """
    import json, socket, sys, time
    host, port, rounds, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = sock.makefile("rb")
    get = b"GET /event HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
    post = b"POST /answer HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 4\\r\\n\\r\\nnull"
    def reply():
        length = 0
        while (line := stream.readline()) != b"\\r\\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        stream.read(length)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        sock.sendall(get)
        reply()
        if mode == "exchange":
            sock.sendall(post)
            reply()
        samples.append(time.perf_counter() - started)
    print(json.dumps(samples))
    """
)

_MINIMAL_BOOTSTRAP = textwrap.dedent(
    """\
    #!{python}
    # A minimal custom runtime: HTTP/1.1 by hand over one keep-alive socket, no library.
    import os, re, socket
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    NEXT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: rt\\r\\n\\r\\n"
    POST = (b"POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\\r\\nHost: rt\\r\\n"
            b"Content-Length: 4\\r\\n\\r\\nnull")
    LENGTH = re.compile(rb"(?i)content-length: *(\\d+)")
    REQUEST_ID = re.compile(rb"(?i)lambda-runtime-aws-request-id: *([^\\r]+)")
    buffer = bytearray()

    def reply():
        while (end := buffer.find(b"\\r\\n\\r\\n")) < 0:
            buffer.extend(sock.recv(65536))
        head = bytes(buffer[:end])
        size = end + 4 + int(LENGTH.search(head).group(1))
        while len(buffer) < size:
            buffer.extend(sock.recv(65536))
        del buffer[:size]
        return head

    while True:
        sock.sendall(NEXT)
        request_id = REQUEST_ID.search(reply()).group(1)
        sock.sendall(POST % request_id)
        reply()
    """
)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


class _EventServer(asyncio.Protocol):
    """The raw baselines' server: a GET gets the event, a POST ``202 {"status":"OK"}``."""

    def __init__(self, body: bytes) -> None:
        self._event = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" \
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        self._accepted = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n" \
            b"Content-Length: 16\r\n\r\n{\"status\":\"OK\"}\n"
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, rest = self._buffer.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) < length:
                return
            self._buffer = rest[length:]
            assert self._transport is not None
            self._transport.write(self._event if head.startswith(b"GET") else self._accepted)


async def raw_http(body: bytes, rounds: int, mode: str) -> list[float]:
    """Round trips of a child process with a keep-alive connection to this process:
    ``get`` (request, event back) or ``exchange`` (that, then a POST answered 202: the
    Runtime API's two exchanges per invocation, with nothing else done)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _EventServer(body), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RAW_CLIENT, "127.0.0.1", str(port), str(rounds + WARMUP), mode,
        stdout=subprocess.PIPE,
    )
    out, _ = await child.communicate()
    server.close()
    samples: list[float] = json.loads(out)
    return samples[WARMUP:]


async def warm_invokes(runtime: Runtime, function: str, body: bytes, rounds: int) -> list[float]:
    """Wall times of ``rounds`` back-to-back invocations after a warm-up."""
    for _ in range(WARMUP):
        result = await runtime.invoke(function, body)
        assert result.ok, result.error
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await runtime.invoke(function, body)
        samples.append(time.perf_counter() - started)
    return samples


def event_of(size: int) -> bytes:
    return json.dumps({"Records": [{"body": "x" * max(0, size - 40)}]}).encode()


async def node_cold_starts(count: int) -> list[float] | None:
    if not (NODE_HANDLERS / "node_modules" / "aws-lambda-ric").is_dir() or not shutil.which(
        "node"
    ):
        return None
    spec = FunctionSpec(name="node", handler="handlers.echo", code_uri=NODE_HANDLERS,
                        runtime="nodejs20.x", timeout=30)
    runtime = Runtime({"node": spec}, metrics=Metrics(), log_sink=lambda line: None)
    walls = []
    try:
        for _ in range(count):
            runtime.reset("node")
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            result = await runtime.invoke("node", {})
            walls.append(time.perf_counter() - started)
            assert result.ok and result.cold_start, result.error
    finally:
        await runtime.stop(timeout=1)
    return walls


def bare_node(count: int) -> float:
    walls = []
    for _ in range(count):
        started = time.perf_counter()
        subprocess.run(["node", "-e", "0"], check=True)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


async def main() -> None:
    # REPORT events are structlog INFO lines: not what is measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    code = Path(tempfile.mkdtemp(prefix="pumphouse-bench-"))
    try:
        (code / "bench.py").write_text("def noop(event, context):\n    return None\n")
        bootstrap = code / "bootstrap"
        bootstrap.write_text(_MINIMAL_BOOTSTRAP.format(python=sys.executable))
        bootstrap.chmod(0o755)
        specs = {
            "minimal": FunctionSpec(name="minimal", handler="bench.noop", code_uri=code,
                                    runtime="provided.al2023"),
            "awslambdaric": FunctionSpec(
                name="awslambdaric", handler="", code_uri=code,
                entry_point=(sys.executable, "-m", "awslambdaric"), command=("bench.noop",)),
            "pipes": FunctionSpec(name="pipes", handler="bench.noop", code_uri=code),
        }
        runtime = Runtime(specs, metrics=Metrics(), log_sink=lambda line: None)
        paths = {
            "raw": "raw loopback HTTP round trip",
            "exchange": "raw HTTP GET + POST (the API's 2 exchanges)",
            "minimal": "Runtime API, minimal bootstrap",
            "awslambdaric": "Runtime API, awslambdaric",
            "pipes": "Python worker, framed pipes",
        }
        # Blocks interleave the paths, so that load from elsewhere on the machine hits
        # them alike; each figure is the median over blocks of the block's p50.
        medians: dict[tuple[str, str], float] = {}
        try:
            for label, size in SIZES.items():
                body = event_of(size)
                rounds = ROUNDS[label]
                p50s: dict[str, list[float]] = {key: [] for key in paths}
                for _ in range(BLOCKS):
                    for mode in ("raw", "exchange"):
                        samples = await raw_http(body, rounds, "get" if mode == "raw" else mode)
                        p50s[mode].append(percentile(samples, 0.5))
                    for name in ("minimal", "awslambdaric", "pipes"):
                        samples = await warm_invokes(runtime, name, body, rounds)
                        p50s[name].append(percentile(samples, 0.5))
                for key, values in p50s.items():
                    medians[label, key] = statistics.median(values)
        finally:
            await runtime.stop(timeout=1)
        print(f"warm invoke of a no-op handler, back to back: p50 (median of {BLOCKS} "
              "blocks), and its ratio to the raw HTTP round trip / to the raw GET + POST")
        for label in SIZES:
            raw, exchange = medians[label, "raw"], medians[label, "exchange"]
            for key, what in paths.items():
                value = medians[label, key]
                print(f"  {label:>5}  {what:45} {value * 1e6:9.1f} µs  "
                      f"{value / raw:5.2f}x  {value / exchange:5.2f}x")
        raw_1kb = medians["1 KB", "raw"]
        ratio = medians["1 KB", "minimal"] / raw_1kb
        added = medians["1 KB", "minimal"] - medians["1 KB", "pipes"]
        print(f"target: Runtime API (minimal bootstrap) at 1 KB <= 2x the raw HTTP round trip: "
              f"{ratio:.2f}x {'met' if ratio <= 2 else 'NOT met'}; the API's two exchanges "
              f"alone cost {medians['1 KB', 'exchange'] / raw_1kb:.2f}x raw, and the invoke "
              f"{medians['1 KB', 'minimal'] / medians['1 KB', 'exchange']:.2f}x those")
        print(f"what the Runtime API adds to an invoke over the pipes at 1 KB: {added * 1e6:.1f} "
              f"µs = {added / raw_1kb:.2f}x the raw HTTP round trip "
              f"({'within' if added <= 2 * raw_1kb else 'above'} 2x)")
        walls = await node_cold_starts(COLD_STARTS)
        if walls is None:
            print("Node.js cold start: skipped (no node or no aws-lambda-ric in "
                  f"{NODE_HANDLERS}/node_modules: make test installs it)")
        else:
            cold = statistics.median(walls)
            bare = bare_node(COLD_STARTS)
            print(f"Node.js cold start, first answer of a new aws-lambda-ric worker (median "
                  f"of {COLD_STARTS}): {cold * 1000:.1f} ms; node -e 0: {bare * 1000:.1f} ms; "
                  f"{cold / bare:.2f}x")
    finally:
        shutil.rmtree(code, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    asyncio.run(main())
