import json
import os

from common_util import TAG  # from the layer


def handler(event, context):
    with open(os.path.join(os.environ["RECORD_DIR"], "records.jsonl"), "a") as out:
        for record in event["Records"]:
            out.write(
                json.dumps(
                    {
                        "body": json.loads(record["body"]),
                        "layer": TAG,
                        "api_key": os.environ["API_KEY"],
                        "stage": os.environ["STAGE"],
                        "queue_url": os.environ["QUEUE_URL"],
                        "function": context.function_name,
                    }
                )
                + "\n"
            )
    return {"batchItemFailures": []}
