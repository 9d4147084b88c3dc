"""What do idle mappings cost? 50 mappings on one service, nothing to read.

One run: moto (SQS), tansu (Kafka), kinesis-mock and Redis (the production state store)
on loopback; 20 SQS queues, 20 Kafka topics (one partition each, the consumer's fetch
wait 500 ms) and 10 Kinesis streams (one shard each), each with one mapping to a no-op
Python function. ``pumphouse run`` runs as its own process; once every mapping is
``Enabled`` and has had ``WARMUP`` seconds to settle, the benchmark samples for
``SAMPLE`` seconds:

* the service's RSS and its CPU time (user + system, from ``/proc``), as % of one core;
* Redis commands per second (``INFO stats`` before and after);
* wakeups per second: the process's voluntary context switches (every thread, from
  ``/proc``), i.e. how often it went to sleep — each wait of the event loop that ended
  in a timer or a socket counts one;
* the same figures for the same service with **no mappings**, measured in the same run:
  the baseline, so the ratio is what the 50 idle mappings add.

With ``--by-kind`` the same service also runs with only the SQS, only the Kafka and only
the Kinesis mappings (each its own run, ~1 minute more each), and a second table says
what each kind adds over the baseline, in total and per mapping.

Targets: RSS <= 150 MB and CPU <= 2 % of one core with 50 idle mappings.

Run: ``.venv/bin/python benchmarks/scale_idle.py [--by-kind]``
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from pumphouse.config import parse_config
from pumphouse.devstack import DevStack, create_resources, free_port, localize, plan_for

SQS = 20
KAFKA = 20
KINESIS = 10
WARMUP = 30.0
"""An SQS mapping starts with five receive loops and is down to one only after its first
20 s long polls came back empty: idle is measured after that."""
SAMPLE = 30.0
TARGET_RSS_MB = 150.0
TARGET_CPU = 2.0
HANDLERS = Path(__file__).resolve().parent.parent / "tests" / "handlers" / "basic"
TICKS = os.sysconf("SC_CLK_TCK")


KINDS = ("sqs", "kafka", "kinesis")


def config_text(
    *,
    mappings: bool,
    metrics_port: int,
    redis_port: int,
    kinds: tuple[str, ...] = KINDS,
) -> str:
    account, region = "000000000000", "us-east-1"
    lines = [
        "Settings:",
        f"  Region: {region}",
        f"  AccountId: '{account}'",
        f"  StateStore: redis://127.0.0.1:{redis_port}/0",
        f"  MetricsAddress: 127.0.0.1:{metrics_port}",
        "Functions:",
        "  noop:",
        "    Handler: echo.handler",
        f"    CodeUri: {HANDLERS}",
        "EventSourceMappings:" + ("" if mappings else " []"),
    ]
    if not mappings:
        return "\n".join(lines) + "\n"
    for i in range(SQS if "sqs" in kinds else 0):
        lines += [
            "  - FunctionName: noop",
            f"    EventSourceArn: arn:aws:sqs:{region}:{account}:idle-{i:02d}",
        ]
    for i in range(KAFKA if "kafka" in kinds else 0):
        lines += [
            "  - FunctionName: noop",
            "    SelfManagedEventSource:",
            "      Endpoints: {KAFKA_BOOTSTRAP_SERVERS: ['127.0.0.1:9092']}",
            f"    Topics: [idle-{i:02d}]",
            "    StartingPosition: LATEST",
            "    Kafka: {FetchMaxWaitMs: 500}",
        ]
    for i in range(KINESIS if "kinesis" in kinds else 0):
        lines += [
            "  - FunctionName: noop",
            f"    EventSourceArn: arn:aws:kinesis:{region}:{account}:stream/idle-{i:02d}",
            "    StartingPosition: LATEST",
        ]
    lines += ["Dev:", "  Topics:"] + [f"    idle-{i:02d}: 1" for i in range(KAFKA)]
    lines += ["  Streams:"] + [f"    idle-{i:02d}: 1" for i in range(KINESIS)]
    return "\n".join(lines) + "\n"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _sleeps(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid`` (times it went to sleep)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _redis_commands(stack: DevStack) -> int:
    import redis

    assert stack.redis is not None
    client = redis.Redis.from_url(stack.redis.url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def measure(stack: DevStack, config: Any, env: dict[str, str], label: str) -> dict[str, float]:
    expected = len(config.EventSourceMappings)
    port = config.Settings.metrics_port
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pumphouse.yaml"
        path.write_text(config.to_yaml())
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "pumphouse"),
                "--log-level",
                "warning",
                "run",
                "-c",
                str(path),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=tmp,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    assert proc.stderr is not None
                    raise SystemExit(f"{label}: exited: {proc.stderr.read().decode()[-2000:]}")
                try:
                    doc = _get(f"http://127.0.0.1:{port}/mappings")
                    states = [m["State"] for m in doc["EventSourceMappings"]]
                    if states.count("Enabled") == expected:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{label}: mappings not Enabled in 120 s")
                time.sleep(0.5)
            time.sleep(WARMUP)
            cpu0, cmd0, t0 = _cpu_seconds(proc.pid), _redis_commands(stack), time.monotonic()
            sleeps0 = _sleeps(proc.pid)
            time.sleep(SAMPLE)
            cpu1, cmd1, t1 = _cpu_seconds(proc.pid), _redis_commands(stack), time.monotonic()
            sleeps1 = _sleeps(proc.pid)
            rss = _rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    elapsed = t1 - t0
    return {
        "cpu": 100.0 * (cpu1 - cpu0) / elapsed,
        "rss": rss,
        "redis": (cmd1 - cmd0) / elapsed,
        "wakeups": (sleeps1 - sleeps0) / elapsed,
    }


ROWS = (
    ("CPU, % of one core", "cpu", TARGET_CPU),
    ("RSS, MB", "rss", TARGET_RSS_MB),
    ("Redis commands/s", "redis", None),
    ("wakeups/s", "wakeups", None),
)


def by_kind_table(base: dict[str, float], kinds: dict[str, dict[str, float]]) -> None:
    """What each kind of mapping adds over the baseline, in total and per mapping."""
    counts = {"sqs": SQS, "kafka": KAFKA, "kinesis": KINESIS}
    print("by kind (each its own run; added over no mappings, total / per mapping):")
    for title, key, _ in ROWS:
        cells = []
        for kind, figures in kinds.items():
            added = figures[key] - base[key]
            cells.append(f"{kind} {added:8.2f} / {added / counts[kind]:6.3f}")
        print(f"  {title:20s} " + "   ".join(cells))


def main() -> None:
    by_kind = "--by-kind" in sys.argv[1:]
    redis_port = free_port()
    full = parse_config(config_text(mappings=True, metrics_port=free_port(), redis_port=redis_port))
    empty = parse_config(
        config_text(mappings=False, metrics_port=free_port(), redis_port=redis_port)
    )
    kinds: dict[str, dict[str, float]] = {}
    stack = DevStack(plan_for(full))
    stack.start(account_id="000000000000", redis_port=redis_port)
    try:
        env = {**os.environ, **stack.environment("us-east-1")}
        os.environ.update(stack.environment("us-east-1"))
        arns = asyncio.run(create_resources(full, stack))
        local = localize(full, stack, arns)
        base = measure(stack, localize(empty, stack, {}), env, "no mappings")
        idle = measure(stack, local, env, "50 mappings")
        for kind in KINDS if by_kind else ():
            text = config_text(
                mappings=True, metrics_port=free_port(), redis_port=redis_port, kinds=(kind,)
            )
            kinds[kind] = measure(stack, localize(parse_config(text), stack, arns), env, kind)
    finally:
        stack.stop()
    print(
        f"idle cost: {SQS} SQS + {KAFKA} Kafka (fetch wait 500 ms) + {KINESIS} Kinesis "
        f"mappings, {SAMPLE:.0f} s sample after {WARMUP:.0f} s"
    )
    missed = []
    for title, key, target in ROWS:
        ratio = idle[key] / base[key] if base[key] else float("inf")
        verdict = "" if target is None else ("OK" if idle[key] <= target else "MISSED")
        goal = "" if target is None else f"(target <= {target:g})"
        print(
            f"  {title:20s} 50 mappings {idle[key]:8.2f}  no mappings {base[key]:8.2f}  "
            f"ratio {ratio:6.2f}  {goal} {verdict}"
        )
        if verdict == "MISSED":
            missed.append(title)
    if kinds:
        by_kind_table(base, kinds)
    if missed:
        print("missed: " + ", ".join(missed))


if __name__ == "__main__":
    main()
