"""A hyphenated module name: Lambda's Python runtime imports it, so pumphouse does."""

import base64
import json
import os


def handler(event, context):
    with open(os.path.join(os.environ["RECORD_DIR"], "records.jsonl"), "a") as out:
        for record in event["Records"]:
            data = base64.b64decode(record["kinesis"]["data"]).decode()
            if data == "poison":
                raise ValueError("poison record")
            out.write(json.dumps({"data": data, "source": record["eventSource"]}) + "\n")
    return {"batchItemFailures": []}
