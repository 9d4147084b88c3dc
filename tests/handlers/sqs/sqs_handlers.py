"""Lambda-style handlers for the SQS integration tests.

Each invocation appends one JSON line to ``$OUT_DIR/<function name>.jsonl`` describing
what the handler saw, so that the test (another process) can check deliveries, order,
batch sizes and concurrency. Written exactly as for AWS Lambda.
"""

import json
import os
import time

_OUT = os.environ.get("OUT_DIR", ".")


def _log(entry):
    path = os.path.join(_OUT, os.environ["AWS_LAMBDA_FUNCTION_NAME"] + ".jsonl")
    line = json.dumps(entry) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: lines never interleave
    finally:
        os.close(fd)


def _summary(record):
    attributes = record["attributes"]
    return {
        "id": record["messageId"],
        "body": record["body"],
        "count": int(attributes["ApproximateReceiveCount"]),
        "group": attributes.get("MessageGroupId"),
    }


def record(event, context):
    """Log the batch; sleep ``SLEEP`` seconds (default 0); succeed."""
    start = time.time()
    delay = float(os.environ.get("SLEEP", "0"))
    if delay:
        time.sleep(delay)
    _log(
        {
            "request_id": context.aws_request_id,
            "pid": os.getpid(),
            "start": start,
            "end": time.time(),
            "records": [_summary(r) for r in event["Records"]],
            "event_bytes": len(json.dumps(event, separators=(",", ":"))),
        }
    )


def full_event(event, context):
    """Log the whole event, as received."""
    _log({"event": event})


def always_fail(event, context):
    _log({"records": [_summary(r) for r in event["Records"]]})
    raise RuntimeError("this handler always fails")


def parse_json(event, context):
    """A handler that expects JSON bodies (raises on anything else)."""
    _log({"records": [_summary(r) for r in event["Records"]]})
    return [json.loads(r["body"]) for r in event["Records"]] and None


def respond(event, context):
    """Answer as the message body's ``row`` says (BatchSize 1: one row per invocation).

    From the second delivery on, every row succeeds, so a failure row shows up as
    exactly two deliveries and a success row as one.
    """
    records = event["Records"]
    _log({"records": [_summary(r) for r in records]})
    first = records[0]
    if first["attributes"]["ApproximateReceiveCount"] != "1":
        return None
    row = json.loads(first["body"])["row"]
    own = first["messageId"]
    responses = {
        # whole success
        "null": None,
        "empty_string": "",
        "empty_object": {},
        "empty_list": [],
        "empty_failures": {"batchItemFailures": []},
        "null_failures": {"batchItemFailures": None},
        "no_key": {"foo": "bar"},
        "plain_string": "not json at all",
        # whole failure
        "empty_id": {"batchItemFailures": [{"itemIdentifier": ""}]},
        "null_id": {"batchItemFailures": [{"itemIdentifier": None}]},
        "missing_id": {"batchItemFailures": [{"foo": own}]},
        "unknown_id": {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]},
        "failures_not_a_list": {"batchItemFailures": own},
        "invalid_json": b"{this is not json",
        # partial: the one message reported
        "report_self": {"batchItemFailures": [{"itemIdentifier": own}]},
    }
    if row == "raise":
        raise ValueError("row asked to raise")
    if row == "crash":
        os._exit(3)
    if row == "timeout":
        time.sleep(30)
    if row == "garbage":
        return {1, 2, 3}  # not JSON-serializable: Runtime.MarshalError
    return responses[row]


def fail_marked(event, context):
    """Report every message whose body has ``"fail": true`` on its first delivery."""
    _log({"records": [_summary(r) for r in event["Records"]]})
    failures = []
    for r in event["Records"]:
        body = json.loads(r["body"])
        if body.get("fail") and r["attributes"]["ApproximateReceiveCount"] == "1":
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}


def fifo(event, context):
    """Partial failures on a FIFO queue: a message with ``"fail": true`` fails on its
    first delivery. With ``REPORT_REST=1`` every later message of its group in the batch
    is reported too (what a FIFO handler should do); by default only the failing one is
    reported, and pumphouse must keep the rest of the group anyway."""
    start = time.time()
    delay = float(os.environ.get("SLEEP", "0"))
    report_rest = os.environ.get("REPORT_REST", "0") == "1"
    processed, failures, failed_groups = [], [], set()
    for r in event["Records"]:
        group = r["attributes"]["MessageGroupId"]
        body = json.loads(r["body"])
        first = r["attributes"]["ApproximateReceiveCount"] == "1"
        if (report_rest and group in failed_groups) or (body.get("fail") and first):
            failed_groups.add(group)
            failures.append({"itemIdentifier": r["messageId"]})
            continue
        processed.append(_summary(r))
    if delay:
        time.sleep(delay)
    _log(
        {
            "start": start,
            "end": time.time(),
            "records": [_summary(r) for r in event["Records"]],
            "processed": processed,
            "failed": [f["itemIdentifier"] for f in failures],
        }
    )
    return {"batchItemFailures": failures}


def noop(event, context):
    """Does nothing (benchmarks)."""
    return None


def gated(event, context):
    """Say the batch started (``$OUT_DIR/<function>.started``), wait until the file
    ``$GATE`` exists (at most 60 s), then log the batch like ``record``."""
    started = os.path.join(_OUT, os.environ["AWS_LAMBDA_FUNCTION_NAME"] + ".started")
    with open(started, "a") as out:
        out.write(context.aws_request_id + "\n")
    deadline = time.time() + 60
    while not os.path.exists(os.environ["GATE"]) and time.time() < deadline:
        time.sleep(0.02)
    return record(event, context)
