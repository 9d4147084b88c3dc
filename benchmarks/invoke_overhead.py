"""What pumphouse's runtime costs per invocation, against the physical floor.

Prints, in one run:

(a) a raw ping-pong between two Python processes over a pair of pipes — length-prefixed
    frames, the same payload both ways — in three flavours: the bytes alone; the bytes
    plus orjson encoding and decoding on both sides (the floor for any JSON RPC, which
    the ratios are taken against); and the latter with the parent driven by an asyncio
    event loop, as pumphouse's is (what the event loop alone adds);
(b) the same round trip through ``Runtime.invoke`` with a handler that returns its event,
    for payloads of 1 KB, 100 KB and 1 MB (SQS-shaped events);
(c) cold start: time to the first answer of a new worker, against ``python -c "import
    json"`` (interpreter start and exit).

Targets: warm p50 <= 3 x the raw JSON ping-pong at 1 KB and <= 1.5 x at 1 MB; cold start
<= 2 x the bare interpreter (the handler imports nothing). Run: ``make bench`` or
``python benchmarks/invoke_overhead.py``. Prints only; exits 0.
"""

from __future__ import annotations

import asyncio
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
from typing import Any

import orjson
import structlog

from pumphouse.runtime import FunctionSpec, Runtime, protocol
from pumphouse.telemetry.metrics import Metrics
from pumphouse.testing import sample_event

SIZES = {"1 KB": 1024, "100 KB": 100 * 1024, "1 MB": 1024 * 1024}
ROUNDS = {"1 KB": 3000, "100 KB": 600, "1 MB": 120}
COLD_STARTS = 15
BLOCKS = 10

_CHILD = textwrap.dedent(
    """
    import os, struct, sys
    decode = sys.argv[3] == "json"
    if decode:
        import orjson
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    head = struct.Struct("!I")
    def read_exact(n):
        buf = bytearray(n); view = memoryview(buf); got = 0
        while got < n:
            k = os.readv(rfd, [view[got:]])
            if not k:
                sys.exit(0)
            got += k
        return buf
    while True:
        (size,) = head.unpack(read_exact(4))
        data = read_exact(size)
        if decode:
            data = orjson.dumps(orjson.loads(data))
        os.writev(wfd, [head.pack(len(data)), data])
    """
)


def event_of(size: int) -> dict[str, Any]:
    """An SQS event whose JSON is about ``size`` bytes."""
    records = max(1, size // 10_000)
    base = len(orjson.dumps(sample_event("sqs", records=records, body="")))
    body = "x" * max(0, (size - base) // records)
    return sample_event("sqs", records=records, body=body)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def summary(samples: list[float]) -> tuple[float, float, float]:
    """(round trips per second, p50 µs, p99 µs) of samples in seconds."""
    return len(samples) / sum(samples), percentile(samples, 0.5) * 1e6, percentile(
        samples, 0.99
    ) * 1e6


class RawPeer:
    """A child Python process echoing length-prefixed frames over two pipes."""

    def __init__(self, *, decode: bool) -> None:
        self.decode = decode
        to_child_r, self._to_child = os.pipe()
        self._from_child, to_parent_w = os.pipe()
        for fd in (self._to_child, to_parent_w):
            protocol.enlarge_pipe(fd)  # as the runtime does for its control pipes
        self._child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(to_child_r), str(to_parent_w),
             "json" if decode else "bytes"],
            pass_fds=(to_child_r, to_parent_w),
        )
        os.close(to_child_r)
        os.close(to_parent_w)
        self._answer: asyncio.Future[bytes] | None = None
        self._pending = bytearray()

    def _read_exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            got += os.readv(self._from_child, [view[got:]])
        return buf

    def round_trip(self, event: dict[str, Any], payload: bytes) -> float:
        start = time.perf_counter()
        data = orjson.dumps(event) if self.decode else payload
        os.writev(self._to_child, [len(data).to_bytes(4, "big"), data])
        answer = self._read_exact(int.from_bytes(self._read_exact(4), "big"))
        if self.decode:
            orjson.loads(answer)
        return time.perf_counter() - start

    async def round_trip_async(self, event: dict[str, Any]) -> float:
        """The same exchange driven by the event loop (a reader kept registered and a
        future per round trip), as the runtime's parent side is: what asyncio itself
        adds to the floor."""
        loop = asyncio.get_running_loop()
        if self._answer is None:
            os.set_blocking(self._from_child, False)
            loop.add_reader(self._from_child, self._readable)
        start = time.perf_counter()
        data = orjson.dumps(event)
        self._answer = answer = loop.create_future()
        os.writev(self._to_child, [len(data).to_bytes(4, "big"), data])
        orjson.loads(await answer)
        return time.perf_counter() - start

    def _readable(self) -> None:
        self._pending += os.read(self._from_child, 1 << 20)
        if len(self._pending) >= 4:
            end = 4 + int.from_bytes(self._pending[:4], "big")
            if len(self._pending) >= end and self._answer is not None:
                self._answer.set_result(bytes(self._pending[4:end]))
                del self._pending[:end]

    def close(self) -> None:
        if self._answer is not None:
            asyncio.get_running_loop().remove_reader(self._from_child)
        os.close(self._to_child)
        self._child.wait()
        os.close(self._from_child)


async def measure(
    runtime: Runtime, event: dict[str, Any], rounds: int
) -> dict[str, list[float]]:
    """Round trips of the three paths, interleaved in blocks so that they share
    whatever else the machine is doing; the first block of each warms up."""
    peers = {"raw pipe, bytes": RawPeer(decode=False), "raw pipe + orjson": RawPeer(decode=True)}
    asynchronous = RawPeer(decode=True)
    payload = orjson.dumps(event)
    samples: dict[str, list[float]] = {
        name: [] for name in [*peers, "asyncio pipe + orjson", "pumphouse Runtime"]
    }
    block = max(10, rounds // BLOCKS)
    try:
        for n in range(BLOCKS + 1):
            for name, peer in peers.items():
                times = [peer.round_trip(event, payload) for _ in range(block)]
                if n:
                    samples[name].extend(times)
            times = [await asynchronous.round_trip_async(event) for _ in range(block)]
            if n:
                samples["asyncio pipe + orjson"].extend(times)
            times = []
            for _ in range(block):
                start = time.perf_counter()
                result = await runtime.invoke("echo", event)
                times.append(time.perf_counter() - start)
                if not result.ok:
                    print(f"  invocation failed: {result.error}")
                del result  # as the raw peers drop their answer: no decoding next to it
            if n:
                samples["pumphouse Runtime"].extend(times)
    finally:
        for peer in [*peers.values(), asynchronous]:
            peer.close()
    return samples


async def cold_starts(runtime: Runtime, count: int) -> tuple[list[float], list[float]]:
    """Wall time of invocations that start a new worker, and their init durations."""
    walls: list[float] = []
    inits: list[float] = []
    for _ in range(count):
        runtime.reset("echo")  # retire the warm worker: the next invocation is cold
        while runtime.worker_pids():  # noqa: ASYNC110 - a process exit has no event to await
            await asyncio.sleep(0.005)
        start = time.perf_counter()
        result = await runtime.invoke("echo", {"cold": True})
        walls.append(time.perf_counter() - start)
        if result.init_duration_ms is not None:
            inits.append(result.init_duration_ms / 1000)
    return walls, inits


def bare_interpreter(count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import json"], check=True)
        samples.append(time.perf_counter() - start)
    return samples


async def main() -> None:
    # REPORT events are info-level: keep them out of the timings and the output.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    code = Path(tempfile.mkdtemp(prefix="pumphouse-bench-"))
    (code / "noop.py").write_text("def handler(event, context):\n    return event\n")
    runtime = Runtime(
        {"echo": FunctionSpec(name="echo", handler="noop.handler", code_uri=code,
                              memory_size=1024, timeout=30)},
        max_concurrency=1,
        metrics=Metrics(),
    )
    print(f"pumphouse invoke overhead — Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, sequential round trips, payload echoed back\n")
    print(f"{'payload':<8} {'path':<24} {'rt/s':>9} {'p50 µs':>10} {'p99 µs':>10}"
          f" {'p50 ratio':>10}")
    ratios: dict[str, float] = {}
    try:
        for label, size in SIZES.items():
            samples = await measure(runtime, event_of(size), ROUNDS[label])
            floor = summary(samples["raw pipe + orjson"])[1]
            ratios[label] = summary(samples["pumphouse Runtime"])[1] / floor
            for name, times in samples.items():
                rate, p50, p99 = summary(times)
                ratio = "" if name == "raw pipe, bytes" else f"{p50 / floor:.2f}x"
                print(f"{label:<8} {name:<24} {rate:>9.0f} {p50:>10.1f} {p99:>10.1f}"
                      f" {ratio:>10}")
        walls, inits = await cold_starts(runtime, COLD_STARTS)
    finally:
        await runtime.stop(timeout=5)
        shutil.rmtree(code, ignore_errors=True)
    bare = bare_interpreter(COLD_STARTS)
    cold_ms = statistics.median(walls) * 1000
    init_ms = statistics.median(inits) * 1000 if inits else float("nan")
    bare_ms = statistics.median(bare) * 1000
    print()
    print(f"cold start, first answer of a new worker (median of {COLD_STARTS}): "
          f"{cold_ms:.1f} ms (init phase {init_ms:.1f} ms)")
    print(f"bare interpreter, python -c 'import json' (median of {COLD_STARTS}): "
          f"{bare_ms:.1f} ms")
    print()
    print("ratios (targets: 1 KB <= 3x, 1 MB <= 1.5x, cold <= 2x):")
    for label, ratio in ratios.items():
        print(f"  warm p50 vs raw pipe + orjson, {label:<7} {ratio:5.2f}x")
    print(f"  cold start vs bare interpreter         {cold_ms / bare_ms:5.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
