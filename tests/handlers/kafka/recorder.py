"""Test handler for Kafka mappings: records every record it is given, fails on demand.

Environment (set per test in the function's ``Environment.Variables``):

* ``RECORD_TO``: file that gets one JSON line per delivered record (appended with one
  ``write`` per invocation, so concurrent workers never interleave lines);
* ``EVENTS_TO``: file that gets each whole event as one line;
* ``FAIL_VALUES``: comma-separated values; a batch holding one of them raises;
* ``PARTIAL_VALUES``: comma-separated values reported as ``batchItemFailures``;
* ``FAIL_TIMES``: how often a failing value fails before it succeeds (default: always);
  counted in files under ``STATE_DIR``;
* ``SLEEP_MS``: sleep this long per invocation.
"""

import base64
import json
import os
import time


def _text(encoded):
    if encoded is None:
        return None
    raw = base64.b64decode(encoded)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + raw.hex()


def _values(name):
    text = os.environ.get(name, "")
    return {v for v in text.split(",") if v}


def _should_fail(record_id):
    """True while this record has failed fewer than FAIL_TIMES times."""
    times = os.environ.get("FAIL_TIMES")
    if not times:
        return True
    path = os.path.join(os.environ["STATE_DIR"], record_id)
    with open(path, "a+") as counter:
        counter.seek(0)
        failed = len(counter.read())
        if failed >= int(times):
            return False
        counter.write("x")
    return True


def handler(event, context):
    sleep_ms = int(os.environ.get("SLEEP_MS", "0"))
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    fail_values = _values("FAIL_VALUES")
    partial_values = _values("PARTIAL_VALUES")
    lines = []
    failures = []
    fail = False
    for key, records in event["records"].items():
        for record in records:
            value = _text(record.get("value"))
            lines.append(
                json.dumps(
                    {
                        "tp": key,
                        "partition": record["partition"],
                        "offset": record["offset"],
                        "key": record.get("key"),
                        "value": value,
                        "headers": record["headers"],
                        "pid": os.getpid(),
                        "ppid": os.getppid(),
                    }
                )
            )
            record_id = f"{key}-{record['offset']}"
            if value in fail_values and _should_fail(record_id):
                fail = True
            if value in partial_values and _should_fail(record_id):
                failures.append({"itemIdentifier": {"partition": key, "offset": record["offset"]}})
    path = os.environ.get("RECORD_TO")
    if path:
        with open(path, "a") as out:
            out.write("".join(line + "\n" for line in lines))
    events = os.environ.get("EVENTS_TO")
    if events:
        with open(events, "a") as out:
            out.write(json.dumps(event) + "\n")
    if fail:
        raise ValueError("poison record in the batch")
    if failures:
        return {"batchItemFailures": failures}
    return {"batchItemFailures": []}
