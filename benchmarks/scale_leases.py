"""Many shards, several replicas: how fast do leases balance, and what does it cost?

One run: kinesis-mock with one stream of ``SHARDS`` shards and Redis, both on loopback;
three ``pumphouse run`` replicas of the same configuration (one Kinesis mapping, a no-op
function, ``LeaseDurationSeconds`` ``LEASE``), started together. The benchmark reads each
replica's ``pumphouse_shards_owned`` from its ``/metrics`` twice a second and prints:

* seconds from the replicas being up (each one's mapping ``Enabled``) to balanced
  leases (every shard owned, max - min <= 1 shard per replica), and that time in lease
  periods — the baseline is the lease duration itself, set in the same run; target <= 2
  lease periods;
* each replica's idle CPU (% of one core) over ``SAMPLE`` seconds once balanced;
* after SIGKILL of one replica, seconds until the two others own every shard again, in
  lease periods; target <= 1 lease expiry after the kill (plus one coordinator cycle).

Run: ``.venv/bin/python benchmarks/scale_leases.py``
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from aiobotocore.session import get_session

from pumphouse.devstack import LOCAL_CREDENTIALS, KinesisMock, RedisServer, free_port

SHARDS = 200
REPLICAS = 3
LEASE = 10.0
SAMPLE = 20.0
HANDLERS = Path(__file__).resolve().parent.parent / "tests" / "handlers" / "basic"
TICKS = os.sysconf("SC_CLK_TCK")
OWNED = re.compile(r"^pumphouse_shards_owned\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


async def create_stream(url: str, name: str) -> str:
    session = get_session()
    async with session.create_client(
        "kinesis",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ) as kinesis:
        await kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
        while True:
            summary = (await kinesis.describe_stream_summary(StreamName=name))[
                "StreamDescriptionSummary"
            ]
            if summary["StreamStatus"] == "ACTIVE":
                return str(summary["StreamARN"])
            await asyncio.sleep(0.1)


def config_text(*, arn: str, redis_url: str, metrics_port: int) -> str:
    return f"""\
Settings:
  Region: us-east-1
  AccountId: '000000000000'
  StateStore: {redis_url}
  MetricsAddress: 127.0.0.1:{metrics_port}
  LeaseDurationSeconds: {LEASE}
Functions:
  noop:
    Handler: echo.handler
    CodeUri: {HANDLERS}
EventSourceMappings:
  - FunctionName: noop
    EventSourceArn: {arn}
    StartingPosition: LATEST
"""


def owned(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    return int(sum(float(v) for v in OWNED.findall(text)))


def enabled(port: int) -> bool:
    """The replica's mapping has started (its source answered): the replica is up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/mappings", timeout=2) as reply:
            doc = json.loads(reply.read())
    except OSError:
        return False
    return all(m["State"] == "Enabled" for m in doc["EventSourceMappings"])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_for(
    condition: str, check: Callable[[], bool], timeout: float, show: Callable[[], object]
) -> float:
    """Seconds until ``check()`` is true (polled twice a second)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not {condition} within {timeout:.0f} s: {show()}")
        time.sleep(0.5)
    return time.monotonic() - started


def main() -> None:
    os.environ["SHARD_LIMIT"] = str(SHARDS * 2)  # kinesis-mock allows 50 shards by default
    logs = Path(tempfile.mkdtemp(prefix="scale-leases-"))
    with KinesisMock() as kinesis, RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        assert isinstance(kinesis, KinesisMock) and isinstance(redis, RedisServer)
        arn = asyncio.run(create_stream(kinesis.url, "scale"))
        env = {**os.environ, **LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL_KINESIS": kinesis.url}
        ports = [free_port() for _ in range(REPLICAS)]
        procs = []
        for i, port in enumerate(ports):
            path = Path(tmp) / f"replica-{i}.yaml"
            path.write_text(config_text(arn=arn, redis_url=redis.url, metrics_port=port))
            procs.append(
                subprocess.Popen(
                    [str(Path(sys.executable).parent / "pumphouse"), "--log-level", "warning",
                     "run", "-c", str(path)],
                    env=env,
                    cwd=tmp,
                    stdout=subprocess.DEVNULL,
                    stderr=(logs / f"replica-{i}.log").open("wb"),
                )
            )
        try:
            def counts(alive: list[int]) -> list[int]:
                return [owned(ports[i]) or 0 for i in alive]

            def balanced(alive: list[int]) -> bool:
                per = counts(alive)
                return sum(per) == SHARDS and max(per) - min(per) <= 1

            everyone = list(range(REPLICAS))
            wait_for("up", lambda: all(enabled(p) for p in ports), 120, lambda: "")
            to_balance = wait_for(
                "balanced", lambda: balanced(everyone), 30 * LEASE, lambda: counts(everyone)
            )
            layout = counts(everyone)
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            time.sleep(SAMPLE)
            cpu = [
                100 * (cpu_seconds(p.pid) - c) / SAMPLE for p, c in zip(procs, cpu0, strict=True)
            ]
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait()
            survivors = everyone[:-1]
            to_recover = wait_for(
                "owned again",
                lambda: sum(counts(survivors)) == SHARDS,
                30 * LEASE,
                lambda: counts(survivors),
            )
            after = counts(survivors)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"leases: {SHARDS} shards, {REPLICAS} replicas on Redis, lease {LEASE:g} s")
    print(f"  balanced after {to_balance:5.1f} s = {to_balance / LEASE:4.2f} lease periods "
          f"(target <= 2) {'OK' if to_balance <= 2 * LEASE else 'MISSED'}  layout {layout}")
    print("  idle CPU per replica: " + ", ".join(f"{c:.1f} %" for c in cpu))
    print(f"  after SIGKILL of one replica: owned again after {to_recover:5.1f} s = "
          f"{to_recover / LEASE:4.2f} lease periods (target <= 1 expiry + 1 cycle) "
          f"{'OK' if to_recover <= LEASE * 4 / 3 else 'MISSED'}  layout {after}")


if __name__ == "__main__":
    main()
