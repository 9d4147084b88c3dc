"""A handler that records each invocation into a file named by the environment."""

import json
import os


def handler(event, context):
    path = os.environ.get("RECORD_TO")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(event) + "\n")
    return {"ok": True}
