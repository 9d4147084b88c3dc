"""Quickstart handlers: one per source, written exactly as for AWS Lambda."""

import base64
import json
import os


def sqs_handler(event, context):
    """Report any order over 150 as a failed item: it comes back until the DLQ takes it."""
    failures = []
    for record in event["Records"]:
        order = json.loads(record["body"])
        if order["amount"] > 150 and record["attributes"]["ApproximateReceiveCount"] == "1":
            failures.append({"itemIdentifier": record["messageId"]})
    print(f"sqs: {len(event['Records'])} messages, {len(failures)} retried later "
          f"({context.aws_request_id})")
    return {"batchItemFailures": failures}


def kinesis_handler(event, context):
    shards = {r["eventID"].split(":")[0] for r in event["Records"]}
    customers = {json.loads(base64.b64decode(r["kinesis"]["data"]))["customer"]
                 for r in event["Records"]}
    print(f"kinesis: {len(event['Records'])} records from {sorted(shards)}, "
          f"{len(customers)} customers")


def dynamodb_handler(event, context):
    for record in event["Records"]:
        image = record["dynamodb"]["NewImage"]
        print(f"dynamodb: {record['eventName']} {image['id']['S']} "
              f"amount={image['amount']['N']}")


def kafka_handler(event, context):
    total = sum(len(records) for records in event["records"].values())
    print(f"kafka: {total} records from {sorted(event['records'])} "
          f"in {os.environ['AWS_LAMBDA_FUNCTION_NAME']}")
