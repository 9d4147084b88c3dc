"""Chaos handler for Kafka mappings: fails ``FAULT_PERCENT`` % of invocations, each fault
one of a timeout, an out-of-memory kill, a crash of the worker, or an exception; the
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


def handler(event, context):
    if random.random() * 100 < float(os.environ.get("FAULT_PERCENT", "10")):
        kind = random.choice(["timeout", "oom", "crash", "error"])
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
