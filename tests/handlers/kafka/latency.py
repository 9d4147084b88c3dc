"""Produce-to-invoke latency probe: appends ``now - record timestamp`` (ms) of every
record to ``LATENCY_TO``, one write per invocation."""

import os
import time


def handler(event, context):
    now_ms = time.time() * 1000
    lines = [
        f"{now_ms - record['timestamp']:.3f}\n"
        for records in event["records"].values()
        for record in records
    ]
    with open(os.environ["LATENCY_TO"], "a") as out:
        out.write("".join(lines))
