"""Chaos handler for Kafka mappings: fails ``FAULT_PERCENT`` % of invocations, each fault
in turn a timeout, an out-of-memory kill, a crash of the worker, or an exception; the
other invocations record their records (``RECORD_TO``, one JSON line per record) and
succeed. A failed invocation records nothing: only finished records are counted."""

import base64
import json
import os
import random
import time


def _fault(kind):
    if kind == "timeout":
        time.sleep(60)  # far beyond the function's Timeout: the worker is killed
    elif kind == "oom":
        hog = bytearray(400 * 1024 * 1024)  # beyond MemorySize: the worker is killed
        for at in range(0, len(hog), 4096):
            hog[at] = 1
        time.sleep(5)
    elif kind == "crash":
        os._exit(17)
    raise RuntimeError("injected failure")


KINDS = ("timeout", "oom", "crash", "error")


def _next_kind(path):
    """The kinds take turns (counted in the shared faults file), so every kind happens
    once four faults have: a run never misses one by chance."""
    try:
        with open(path) as seen:
            done = len(seen.read().split())
    except FileNotFoundError:
        done = 0
    return KINDS[done % len(KINDS)]


def handler(event, context):
    if random.random() * 100 < float(os.environ.get("FAULT_PERCENT", "10")):
        kind = _next_kind(os.environ["FAULTS_TO"])
        with open(os.environ["FAULTS_TO"], "a") as out:
            out.write(kind + "\n")
        _fault(kind)
    lines = [
        json.dumps({"value": base64.b64decode(r["value"]).decode(), "partition": r["partition"]})
        for records in event["records"].values()
        for r in records
    ]
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write("".join(line + "\n" for line in lines))
    return None
