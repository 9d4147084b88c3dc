"""The pure parts of ``pumphouse redrive``: message conversion, argument checks, the
progress output and the chunk sizes that follow ``--rate`` and ``--max``."""

from __future__ import annotations

import io

import pytest

from pumphouse.tools.redrive import (
    EXIT_USAGE,
    Progress,
    QueueRef,
    Redrive,
    RedriveError,
    parse_queue_arn,
    send_entry,
)


def _message(**attributes: str) -> dict[str, object]:
    return {
        "MessageId": "id-1",
        "ReceiptHandle": "rh",
        "Body": '{"a": 1}',
        "Attributes": {"SentTimestamp": "1", **attributes},
        "MessageAttributes": {
            "s": {"DataType": "String", "StringValue": "x", "StringListValues": []},
            "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01", "BinaryListValues": []},
        },
    }


def test_send_entry_keeps_body_attributes_and_trace_header() -> None:
    entry = send_entry(_message(AWSTraceHeader="Root=1-abc"), 3, fifo_target=False)
    assert entry == {
        "Id": "3",
        "MessageBody": '{"a": 1}',
        "MessageAttributes": {
            "s": {"DataType": "String", "StringValue": "x"},
            "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
        "MessageSystemAttributes": {
            "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-abc"}
        },
    }


def test_send_entry_to_fifo_keeps_group_and_dedup_ids() -> None:
    message = _message(MessageGroupId="g1", MessageDeduplicationId="d1")
    entry = send_entry(message, 0, fifo_target=True)
    assert entry["MessageGroupId"] == "g1"
    assert entry["MessageDeduplicationId"] == "d1"
    assert "MessageGroupId" not in send_entry(message, 0, fifo_target=False)


def test_parse_queue_arn() -> None:
    ref = parse_queue_arn("arn:aws:sqs:eu-west-1:123456789012:jobs.fifo", option="--to")
    assert ref == QueueRef(
        arn="arn:aws:sqs:eu-west-1:123456789012:jobs.fifo",
        name="jobs.fifo",
        account="123456789012",
        region="eu-west-1",
        fifo=True,
    )
    with pytest.raises(RedriveError) as caught:
        parse_queue_arn("arn:aws:kinesis:us-east-1:123456789012:stream/s", option="--from")
    assert caught.value.status == EXIT_USAGE and "--from" in str(caught.value)


def test_redrive_refuses_standard_into_fifo_and_same_queue() -> None:
    standard = parse_queue_arn("arn:aws:sqs:us-east-1:123456789012:dlq", option="--from")
    fifo = parse_queue_arn("arn:aws:sqs:us-east-1:123456789012:q.fifo", option="--to")
    with pytest.raises(RedriveError, match="standard queue into a FIFO"):
        Redrive(None, source=standard, target=fifo)
    with pytest.raises(RedriveError, match="same queue"):
        Redrive(None, source=standard, target=standard)
    with pytest.raises(RedriveError, match="--rate"):
        Redrive(None, source=fifo, target=parse_queue_arn(
            "arn:aws:sqs:us-east-1:123456789012:other.fifo", option="--to"), rate=0)


def test_progress_bar_on_a_terminal_and_lines_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = Progress(50, stream=tty)
    bar.update(25)
    bar.close()
    assert "[###############               ] 25/50" in tty.getvalue()
    plain = io.StringIO()
    lines = Progress(None, stream=plain)
    for moved in range(1, 21):
        lines.update(moved * 10)
    assert plain.getvalue().count("\n") == 2
    assert plain.getvalue().startswith("redrive: 100 moved")


def test_redrive_chunks_follow_rate_and_max() -> None:
    dlq = parse_queue_arn("arn:aws:sqs:us-east-1:123456789012:dlq", option="--from")
    queue = parse_queue_arn("arn:aws:sqs:us-east-1:123456789012:q", option="--to")
    assert Redrive(None, source=dlq, target=queue)._chunk_size(0) == 10
    assert Redrive(None, source=dlq, target=queue, rate=2.5)._chunk_size(0) == 2
    assert Redrive(None, source=dlq, target=queue, rate=0.5)._chunk_size(0) == 1
    assert Redrive(None, source=dlq, target=queue, max_messages=13)._chunk_size(10) == 3
    assert Redrive(None, source=dlq, target=queue, max_messages=13)._chunk_size(13) == 0
