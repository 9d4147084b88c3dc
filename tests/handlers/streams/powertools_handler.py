"""An unmodified aws-lambda-powertools batch handler (Kinesis and DynamoDB Streams)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)
from recorder import log

kinesis_processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
dynamodb_processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def kinesis_record(record: KinesisStreamRecord) -> None:
    data = record.kinesis.data_as_json()
    log({"seq": record.kinesis.sequence_number, "i": data["i"], "poison": data.get("poison")})
    if data.get("poison"):
        raise ValueError("poison")


def dynamodb_record(record: DynamoDBRecord) -> None:
    assert record.dynamodb is not None
    keys = record.dynamodb.keys
    log({"seq": record.dynamodb.sequence_number, "event": record.event_name.name, "keys": keys})
    if keys.get("id") == "poison":
        raise ValueError("poison")


def kinesis_handler(event: dict[str, Any], context: Any) -> Any:
    return process_partial_response(
        event=event, record_handler=kinesis_record, processor=kinesis_processor, context=context
    )


def dynamodb_handler(event: dict[str, Any], context: Any) -> Any:
    return process_partial_response(
        event=event, record_handler=dynamodb_record, processor=dynamodb_processor, context=context
    )
