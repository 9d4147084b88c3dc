import base64
import json
import os


def handler(event, context):
    with open(os.path.join(os.environ["RECORD_DIR"], "records.jsonl"), "a") as out:
        for records in event["records"].values():
            for record in records:
                value = base64.b64decode(record["value"]).decode()
                out.write(json.dumps({"value": value, "source": event["eventSource"]}) + "\n")
