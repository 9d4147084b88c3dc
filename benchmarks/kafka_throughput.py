"""Kafka throughput: pumphouse next to a raw aiokafka consumer, on one tansu broker.

One run, one tansu broker (memory storage). ``RECORDS`` records of ``VALUE_BYTES`` bytes
are produced once into a ``PARTITIONS``-partition topic; then each reader consumes all
of them with a fresh consumer group, in its own fresh process:

* **raw**: ``getmany(max_records=500)`` + ``commit`` of each returned batch, in one loop,
  touching no record — what a hand-written aiokafka consumer gets from this broker;
* **pumphouse**: the real :class:`~pumphouse.service.Service` with one Kafka mapping,
  ``BatchSize`` 500, window 0, a no-op Python handler on warm workers
  (``ProvisionedConcurrency``): every record is shaped, serialized, batched, invoked in
  a worker process and its offset committed.

Both consumers get the same aiokafka options (pumphouse's defaults, so the fetch wait
is pumphouse's ``FetchMaxWaitMs``; short group timeouts) and are measured between the
same events, stamped when they happen (see :mod:`kafka_harness`):

* **end to end**: from just before the consumer is created (group join included) to
  the return of the ``OffsetCommit`` that covered the last record;
* **steady**: from the first ``getmany`` that returned records to that same commit;
* **CPU**: the consumer process's CPU time over the end to end span, per record (the
  service's own process; its workers' CPU is printed apart). On 2 cores shared with
  the broker and the workers, it is the steadier figure of what a record costs.

``ROUNDS`` interleaved rounds (raw, pumphouse, raw, ...), so drift hits both alike;
each figure is the median with the range, and the ratio is taken per round (pumphouse
over the raw run next to it) and of the medians. Target: >= 0.9 both.

``--profile FILE``: one more pumphouse run with py-spy (``pip install py-spy``)
sampling the service process (not its workers) while it drains; writes the 25 hottest
functions by own and by cumulative time, and the own time per group (aiokafka, event
building, invoke path, other), to FILE. ``--rounds 0`` runs only that.

Run: ``.venv/bin/python benchmarks/kafka_throughput.py``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafka_harness import (
    PARTITIONS,
    VALUE_BYTES,
    ServiceRun,
    consumer_settings,
    peak_rss_mb,
    produce_backlog,
    pumphouse_config,
    raw_drain,
    run_child,
    spread,
)

RECORDS = 200_000
BATCH = 500
ROUNDS = 5
TARGET_RATIO = 0.9
TOP = 25
PROFILE_RATE = 1000
SCRIPT = str(Path(__file__).resolve())


# ---------------------------------------------------------------------------------------
# Children


async def child_raw(bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    return await raw_drain(bootstrap, topic, records, batch=BATCH, settings=consumer_settings())


def _start_profiler(out: str) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return subprocess.Popen(
        [spy, "record", "--pid", str(os.getpid()), "--format", "raw", "--nolineno",
         "--rate", str(PROFILE_RATE), "--output", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def child_pumphouse(
    bootstrap: str, topic: str, records: int, profile: str | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as state_dir:
        config = pumphouse_config(bootstrap, topic, state_dir, handler="noop.handler", batch=BATCH)
        run = ServiceRun(config, records)
        spy = None
        try:
            started = await run.start()
            cpu_started = time.process_time()
            if profile:
                # Attached while the group is joined; the join is idle, and idle samples
                # are left out (py-spy's default): the profile is the draining.
                spy = _start_profiler(profile)
            await asyncio.wait_for(run.done.wait(), timeout=240)
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
            await run.stop()
    assert run.first_polled is not None and run.done_at is not None
    assert run.cpu_done is not None and run.worker_cpu is not None
    return {
        "total": run.done_at - started,
        "steady": run.done_at - run.first_polled,
        "cpu": run.cpu_done - cpu_started,
        "worker_cpu": run.worker_cpu,
        "rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------
# The profile


GROUPS = (
    ("aiokafka", ("(aiokafka/", "(kafka/")),
    (
        "event building",
        (
            *(
                f"(pumphouse/pollers/{name}.py)"
                for name in ("kafka_records", "kafka_lanes", "batching", "shapes")
            ),
            "KafkaPoller._preparer",
        ),
    ),
    (
        "invoke path",
        (
            "(pumphouse/runtime/",
            "(pumphouse/pollers/policy.py)",
            "KafkaPoller._invoke",
            "KafkaPoller._run_step",
        ),
    ),
)
"""py-spy names a frame ``function (path)``, the path relative to its ``sys.path`` entry."""


def group_of(frame: str) -> str:
    for name, marks in GROUPS:
        if any(mark in frame for mark in marks):
            return name
    return "other"


def owner(frames: list[str]) -> str:
    """The group a sample's own time goes to: its innermost frame's, or for generated
    code (a dataclass's ``__init__``, file ``<string>``) its caller's."""
    for frame in reversed(frames):
        if not frame.endswith("(<string>)"):
            return group_of(frame)
    return "other"


def summarize_profile(raw_path: str, out_path: str) -> None:
    """The ``TOP`` hottest functions of a py-spy raw (collapsed) profile, by own and by
    cumulative samples, with the own time per group."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = threads = 0
    for line in Path(raw_path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if "Thread._bootstrap (threading.py)" in frames:
            # Another thread (the state store's executor, waiting on its queue: py-spy
            # does not see that wait as idle), not the event loop.
            threads += count
            continue
        total += count
        own[frames[-1]] += count
        groups[owner(frames)] += count
        for frame in set(frames):
            cumulative[frame] += count

    lines = [
        f"py-spy, {total} samples at {PROFILE_RATE} Hz (non-idle) of the service process's "
        f"event loop thread (+{threads} samples in other threads, left out)",
        "",
    ]
    lines.append("own time by group:")
    for name, count in groups.most_common():
        lines.append(f"  {100 * count / total:5.1f} %  {name}")
    # The event loop's own frames are in nearly every sample: they say nothing.
    cumulative = Counter({f: c for f, c in cumulative.items() if c < 0.9 * total})
    for title, table in (("own", own), ("cumulative", cumulative)):
        lines += ["", f"top {TOP} by {title} time:"]
        for frame, count in table.most_common(TOP):
            lines.append(f"  {100 * count / total:5.1f} %  [{group_of(frame)}] {frame}")
    Path(out_path).write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------
# The driver


async def main(profile: str | None, rounds: int) -> int:
    from pumphouse.devstack import TansuBroker, create_kafka_topics

    broker = TansuBroker()
    broker.start()
    results: dict[str, list[dict[str, Any]]] = {"raw": [], "pumphouse": []}
    try:
        bootstrap = broker.bootstrap
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        await create_kafka_topics(bootstrap, {topic: PARTITIONS})
        produce_rate = await produce_backlog(bootstrap, topic, RECORDS)
        for _ in range(rounds):  # interleaved, so drift hits both readers alike
            for mode in ("raw", "pumphouse"):
                results[mode].append(run_child(SCRIPT, mode, bootstrap, topic, RECORDS))
        if profile:
            with tempfile.TemporaryDirectory() as scratch:
                raw_profile = f"{scratch}/profile.txt"
                run_child(SCRIPT, "pumphouse", bootstrap, topic, RECORDS, "--profile", raw_profile)
                summarize_profile(raw_profile, profile)
    finally:
        broker.stop()

    if rounds:
        report(results, produce_rate)
    if profile:
        print(f"profile of the service process while draining: {profile}")
    return 0


def report(results: dict[str, list[dict[str, Any]]], produce_rate: float) -> None:
    settings = consumer_settings()
    rounds = len(results["raw"])
    total = {k: [RECORDS / r["total"] for r in v] for k, v in results.items()}
    steady = {k: [RECORDS / r["steady"] for r in v] for k, v in results.items()}
    print(
        f"tansu, {RECORDS} records x {VALUE_BYTES} B, {PARTITIONS} partitions, batch {BATCH}, "
        f"produced at {produce_rate:,.0f} rec/s; fetch wait {settings.FetchMaxWaitMs} ms on "
        f"both sides; {rounds} interleaved rounds, median (min-max)"
    )
    cpu = {k: [1e6 * r["cpu"] / RECORDS for r in v] for k, v in results.items()}
    print(
        f"{'reader':>10} {'end to end rec/s':>28} {'steady rec/s':>28} {'CPU µs/rec':>18} "
        f"{'peak RSS MB':>12}"
    )
    for mode in ("raw", "pumphouse"):
        rss = max(r["rss_mb"] for r in results[mode])
        print(
            f"{mode:>10} {spread(total[mode]):>28} {spread(steady[mode]):>28} "
            f"{spread(cpu[mode], '{:.2f}'):>18} {rss:>12.0f}"
        )
    for name, rates in (("end to end", total), ("steady", steady)):
        paired = [p / r for p, r in zip(rates["pumphouse"], rates["raw"], strict=True)]
        ratio = statistics.median(rates["pumphouse"]) / statistics.median(rates["raw"])
        verdict = "met" if ratio >= TARGET_RATIO else "missed"
        print(
            f"pumphouse / raw, {name}: {ratio:.2f} of the medians; per round "
            f"{spread(paired, '{:.2f}')} (target >= {TARGET_RATIO}: {verdict})"
        )
    cpu_ratio = statistics.median(cpu["pumphouse"]) / statistics.median(cpu["raw"])
    workers = [1e6 * r["worker_cpu"] / RECORDS for r in results["pumphouse"]]
    print(
        f"CPU per record, pumphouse / raw: {cpu_ratio:.2f} of the medians; pumphouse's "
        f"workers (no-op handler) used {spread(workers, '{:.2f}')} µs/rec more"
    )


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["raw", "pumphouse"], required=True)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("records", type=int)
    parser.add_argument("--profile")
    args = parser.parse_args(argv)
    if args.child == "raw":
        result = asyncio.run(child_raw(args.bootstrap, args.topic, args.records))
    else:
        result = asyncio.run(
            child_pumphouse(args.bootstrap, args.topic, args.records, args.profile)
        )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.exit(child_main(sys.argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="also profile the service process into this file")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="0: the profile only")
    options = parser.parse_args()
    sys.exit(asyncio.run(main(options.profile, options.rounds)))
