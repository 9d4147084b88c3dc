"""A small producer for ``pumphouse dev --produce RATE``: sample records into every source.

Each tick sends one JSON record to every mapping's source (SQS message, Kinesis record,
DynamoDB item, Kafka record), so a newcomer sees batches flowing through each handler.
The record is :func:`sample_order`'s, or the user's own shape from a record template
(``--produce-template FILE.json``, see :mod:`pumphouse.samples`): then the Kinesis
partition key, the Kafka key and the FIFO message group are ``key-<seq mod 8>``, and a
DynamoDB item gets ``id`` = ``item-<seq>`` unless the template sets one.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
import structlog

from pumphouse.aws import AwsClients
from pumphouse.retrying import sleep_unless
from pumphouse.samples import RecordTemplate, attribute_map

log = structlog.get_logger("pumphouse.dev.producer")


def sample_order(n: int) -> dict[str, Any]:
    """The n-th sample record: a small order, varied enough for filters to bite."""
    return {
        "orderId": f"order-{n:06d}",
        "customer": f"customer-{n % 7}",
        "amount": round(5 + (n * 37 % 500) / 3, 2),
        "status": ("NEW", "PAID", "SHIPPED")[n % 3],
        "createdAt": time.time(),
    }


KEYS = 8
"""Distinct keys (partition keys, Kafka keys, FIFO groups) of templated records."""


def templated_record(template: RecordTemplate, n: int) -> tuple[Any, str]:
    """The n-th record of a template, and its key."""
    return template.render(n), f"key-{n % KEYS}"


async def produce_samples(
    config: Any,
    stack: Any,
    *,
    rate: float,
    stop: asyncio.Event,
    template: RecordTemplate | None = None,
) -> None:
    """Send ``rate`` records per second to every source until ``stop`` is set: sample
    orders, or records made from ``template``."""
    clients = AwsClients(
        region=str(config.Settings.Region),
        endpoints={
            "Sqs": stack.moto.url if stack.moto else None,
            "DynamoDB": stack.moto.url if stack.moto else None,
            "Kinesis": stack.kinesis.url if stack.kinesis else None,
        },
    )
    producer = None
    if stack.tansu is not None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=stack.tansu.bootstrap)
        await producer.start()
    interval = 1.0 / rate
    sent = 0
    try:
        queue_urls: dict[str, str] = {}
        for n in itertools.count():
            if stop.is_set():
                break
            if template is None:
                record = sample_order(n)
                key = str(record["customer"])
            else:
                record, key = templated_record(template, n)
            body = orjson.dumps(record)
            for mapping in config.EventSourceMappings:
                if not mapping.Enabled:
                    continue
                try:
                    await _send(
                        mapping,
                        record,
                        body,
                        key=key,
                        seq=n,
                        clients=clients,
                        producer=producer,
                        queue_urls=queue_urls,
                    )
                    sent += 1
                except Exception as err:  # a demo producer logs and goes on
                    log.warning("sample send failed", mapping=mapping.label, error=str(err))
            await sleep_unless(stop, interval)
    finally:
        log.info("sample producer stopped", sent=sent)
        if producer is not None:
            await producer.stop()
        await clients.close()


async def _send(
    mapping: Any,
    record: Any,
    body: bytes,
    *,
    key: str,
    seq: int,
    clients: AwsClients,
    producer: Any,
    queue_urls: dict[str, str],
) -> None:
    source = mapping.source_type.value
    if source == "sqs":
        sqs = await clients.client("sqs")
        name = mapping.resource_name
        if name not in queue_urls:
            queue_urls[name] = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        extra: dict[str, Any] = {}
        if mapping.is_fifo:
            extra = {"MessageGroupId": key, "MessageDeduplicationId": f"{seq}-{body_hash(body)}"}
        await sqs.send_message(QueueUrl=queue_urls[name], MessageBody=body.decode(), **extra)
    elif source == "kinesis":
        kinesis = await clients.client("kinesis")
        await kinesis.put_record(
            StreamName=mapping.resource_name, Data=body, PartitionKey=key
        )
    elif source == "dynamodb":
        ddb = await clients.client("dynamodb")
        await ddb.put_item(TableName=mapping.resource_name, Item=dynamodb_item(record, seq))
    elif source == "kafka" and producer is not None:
        await producer.send_and_wait(mapping.topic, body, key=key.encode())


def dynamodb_item(record: Any, seq: int) -> dict[str, Any]:
    """A record as a DynamoDB item keyed ``id`` (the dev tables' key): a sample order's
    ``orderId``, a template's own ``id``, else ``item-<seq>``. A record that is not a
    JSON object is stored as its ``value``."""
    document = dict(record) if isinstance(record, dict) else {"value": record}
    if "id" not in document:
        document = {"id": str(document.get("orderId", f"item-{seq:06d}")), **document}
    document["id"] = str(document["id"])
    return attribute_map(document)


def body_hash(body: bytes) -> str:
    import hashlib

    return hashlib.sha256(body).hexdigest()[:16]
