"""An unmodified Powertools batch handler for Kafka (``BatchProcessor(EventType.Kafka)``).

Records whose value is ``bad`` raise; Powertools reports them as
``{"partition": "<topic>-<p>", "offset": N}`` batch item failures. Every record the
processor handled is appended to ``RECORD_TO`` as ``<partition> <offset> <value>``.
"""

import os

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

processor = BatchProcessor(event_type=EventType.Kafka)


def record_handler(record):
    value = record.decoded_value.decode()
    with open(os.environ["RECORD_TO"], "a") as out:
        out.write(f"{record.partition} {record.offset} {value}\n")
    if value == "bad":
        raise ValueError("bad record")
    return value


def handler(event, context):
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
