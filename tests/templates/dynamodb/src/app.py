import json
import os


def handler(event, context):
    with open(os.path.join(os.environ["RECORD_DIR"], "records.jsonl"), "a") as out:
        for record in event["Records"]:
            out.write(
                json.dumps({"event": record["eventName"], "keys": record["dynamodb"]["Keys"]})
                + "\n"
            )
