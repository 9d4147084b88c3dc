"""``pumphouse redrive``: move messages from an SQS dead-letter queue back to a queue.

moto has no ``StartMessageMoveTask`` and users want a tool they can read and trust, so
this one moves messages itself, one chunk of at most 10 at a time::

    receive (from the DLQ, hidden for 60 s)
      -> SendMessageBatch to the target: same body, message attributes, AWSTraceHeader,
         and for a FIFO target the MessageGroupId and MessageDeduplicationId
      -> DeleteMessageBatch from the DLQ, **only for the entries the send accepted**

A message whose send failed is never deleted: it reappears in the DLQ after the
visibility timeout and the run reports it. A message that was sent but whose delete
failed is in both queues; the run reports it too (a second run would move it again —
for a FIFO target the deduplication id makes that harmless within five minutes).

The run stops after ``--max`` messages, or when a receive with a 2-second long poll
comes back empty. ``--rate R`` paces the moves to at most R messages per second:
before each chunk the tool waits until ``moved / R`` seconds have passed since it
started. ``--dry-run`` reports how many messages the DLQ holds and moves nothing.

Worked example, ``--max 25 --rate 10`` on a DLQ of 40 messages: chunks of 10, 10 and
5 messages at t=0 s, t=1 s and t=2 s; 15 messages stay in the DLQ; the final line
reads ``moved 25 messages from ... to ... (0 failed)``.

Exit status: 0 every message received was moved; 1 some could not be sent or deleted;
2 invalid arguments (ARNs, a standard DLQ into a FIFO queue); 3 a queue does not exist
or SQS cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from pumphouse.aws import AwsClients, queue_missing, queue_url
from pumphouse.config.sources import SourceType, parse_event_source_arn

EXIT_OK: Final = 0
EXIT_INCOMPLETE: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3

#: How long a received DLQ message stays hidden while it is being moved.
MOVE_VISIBILITY_SECONDS: Final = 60
#: Long poll of each receive; an empty one ends the run.
RECEIVE_WAIT_SECONDS: Final = 2
#: What SendMessage accepts of the system attributes a message carries.
_TRACE_HEADER: Final = "AWSTraceHeader"


class RedriveError(Exception):
    """The run cannot start: ``status`` is the exit status to return."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RedriveReport:
    """What one run did."""

    moved: int = 0
    """Sent to the target and deleted from the DLQ."""
    send_failed: int = 0
    """Could not be sent: left in the DLQ."""
    delete_failed: int = 0
    """Sent but not deleted: now in both queues."""
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.send_failed and not self.delete_failed and not self.errors


@dataclass(frozen=True)
class QueueRef:
    arn: str
    name: str
    account: str
    region: str
    fifo: bool


def parse_queue_arn(text: str, *, option: str) -> QueueRef:
    """An SQS queue ARN given to ``--from`` / ``--to``."""
    try:
        source = parse_event_source_arn(text)
    except ValueError as err:
        raise RedriveError(f"{option}: {err}", EXIT_USAGE) from None
    if source.source_type is not SourceType.SQS:
        raise RedriveError(f"{option}: {text!r} is not an SQS queue ARN", EXIT_USAGE)
    return QueueRef(
        arn=text,
        name=source.resource_name,
        account=source.arn.account,
        region=source.arn.region,
        fifo=source.is_fifo,
    )


def send_entry(message: dict[str, Any], index: int, *, fifo_target: bool) -> dict[str, Any]:
    """The ``SendMessageBatch`` entry that re-sends a received message unchanged."""
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
    attributes = message.get("MessageAttributes")
    if attributes:
        entry["MessageAttributes"] = {
            name: _attribute_value(value) for name, value in attributes.items()
        }
    system = message.get("Attributes") or {}
    trace = system.get(_TRACE_HEADER)
    if trace:
        entry["MessageSystemAttributes"] = {
            _TRACE_HEADER: {"DataType": "String", "StringValue": trace}
        }
    if fifo_target:
        entry["MessageGroupId"] = system["MessageGroupId"]
        dedup = system.get("MessageDeduplicationId")
        if dedup:
            entry["MessageDeduplicationId"] = dedup
    return entry


def _attribute_value(value: dict[str, Any]) -> dict[str, Any]:
    """A received message attribute as SendMessage takes it (empty list fields dropped)."""
    out: dict[str, Any] = {"DataType": value["DataType"]}
    for key in ("StringValue", "BinaryValue", "StringListValues", "BinaryListValues"):
        item = value.get(key)
        if item is not None and item != []:
            out[key] = item
    return out


class Progress:
    """A progress bar on a terminal, a line every 10 chunks otherwise."""

    def __init__(self, total: int | None, *, stream: IO[str] | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self._updates = 0

    def update(self, moved: int) -> None:
        self._updates += 1
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = moved / elapsed
        if self.tty:
            if self.total:
                done = min(1.0, moved / self.total)
                bar = "#" * int(done * 30)
                text = f"\r[{bar:<30}] {moved}/{self.total}  {rate:6.1f} msg/s"
            else:
                text = f"\r{moved} moved  {rate:6.1f} msg/s"
            self.stream.write(text)
            self.stream.flush()
        elif self._updates % 10 == 0:
            of = f"/{self.total}" if self.total else ""
            self.stream.write(f"redrive: {moved}{of} moved ({rate:.1f} msg/s)\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Redrive:
    """One redrive run (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        source: QueueRef,
        target: QueueRef,
        max_messages: int | None = None,
        rate: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        if source.arn == target.arn:
            raise RedriveError("--from and --to name the same queue", EXIT_USAGE)
        if target.fifo and not source.fifo:
            raise RedriveError(
                "cannot move messages from a standard queue into a FIFO queue (they have "
                "no MessageGroupId)",
                EXIT_USAGE,
            )
        if max_messages is not None and max_messages < 0:
            raise RedriveError("--max must not be negative", EXIT_USAGE)
        if rate is not None and rate <= 0:
            raise RedriveError("--rate must be positive", EXIT_USAGE)
        self.client = client
        self.source = source
        self.target = target
        self.max_messages = max_messages
        self.rate = rate
        self.progress = progress
        self.source_url = ""
        self.target_url = ""

    async def resolve(self) -> None:
        self.source_url = await self._queue_url(self.source, "--from")
        self.target_url = await self._queue_url(self.target, "--to")

    async def _queue_url(self, queue: QueueRef, option: str) -> str:
        try:
            return await queue_url(self.client, queue.name, queue.account)
        except Exception as err:
            if queue_missing(err):
                raise RedriveError(
                    f"{option}: queue {queue.arn} does not exist", EXIT_UNAVAILABLE
                ) from None
            raise RedriveError(
                f"{option}: cannot reach SQS for {queue.arn}: {err}", EXIT_UNAVAILABLE
            ) from err

    async def count(self) -> int:
        """``ApproximateNumberOfMessages`` of the DLQ."""
        reply = await self.client.get_queue_attributes(
            QueueUrl=self.source_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(reply.get("Attributes", {}).get("ApproximateNumberOfMessages", "0"))

    def _chunk_size(self, moved: int) -> int:
        size = 10
        if self.rate is not None:
            size = min(size, max(1, int(self.rate)))
        if self.max_messages is not None:
            size = min(size, self.max_messages - moved)
        return size

    async def run(self) -> RedriveReport:
        report = RedriveReport()
        started = time.monotonic()
        handled = 0  # moved or failed: counts against --max
        while True:
            size = self._chunk_size(handled)
            if size <= 0:
                break
            if self.rate is not None:
                wait = started + handled / self.rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                reply = await self.client.receive_message(
                    QueueUrl=self.source_url,
                    MaxNumberOfMessages=size,
                    WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                    VisibilityTimeout=MOVE_VISIBILITY_SECONDS,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception as err:
                report.errors.append(f"receive failed, stopping: {err}")
                break
            messages: list[dict[str, Any]] = reply.get("Messages") or []
            if not messages:
                break
            await self._move(messages, report)
            handled += len(messages)
            if self.progress is not None:
                self.progress.update(report.moved)
        if self.progress is not None:
            self.progress.close()
        return report

    async def _move(self, messages: Sequence[dict[str, Any]], report: RedriveReport) -> None:
        entries = []
        for index, message in enumerate(messages):
            if self.target.fifo and not (message.get("Attributes") or {}).get("MessageGroupId"):
                report.send_failed += 1
                report.errors.append(f"{message['MessageId']}: no MessageGroupId")
                continue
            entries.append(send_entry(message, index, fifo_target=self.target.fifo))
        if not entries:
            return
        try:
            sent = await self.client.send_message_batch(QueueUrl=self.target_url, Entries=entries)
        except Exception as err:
            report.send_failed += len(entries)
            report.errors.append(f"send failed: {err}")
            return
        for failure in sent.get("Failed") or []:
            report.send_failed += 1
            report.errors.append(
                f"{messages[int(failure['Id'])]['MessageId']}: {failure.get('Code')} "
                f"{failure.get('Message', '')}".rstrip()
            )
        accepted = [int(ok["Id"]) for ok in sent.get("Successful") or []]
        if not accepted:
            return
        deletes = [
            {"Id": str(i), "ReceiptHandle": messages[i]["ReceiptHandle"]} for i in accepted
        ]
        try:
            deleted = await self.client.delete_message_batch(
                QueueUrl=self.source_url, Entries=deletes
            )
        except Exception as err:
            report.delete_failed += len(deletes)
            report.errors.append(f"delete failed (messages now in both queues): {err}")
            return
        report.moved += len(deleted.get("Successful") or [])
        for failure in deleted.get("Failed") or []:
            report.delete_failed += 1
            report.errors.append(
                f"{messages[int(failure['Id'])]['MessageId']}: sent but not deleted: "
                f"{failure.get('Code')}"
            )


async def redrive(args: argparse.Namespace, *, out: IO[str], err: IO[str]) -> int:
    """The command, with its output streams (for tests)."""
    source = parse_queue_arn(args.source_arn, option="--from")
    target = parse_queue_arn(args.target_arn, option="--to")
    clients = AwsClients(region=args.region or source.region, endpoints={"Sqs": args.endpoint_url})
    try:
        client = await clients.client("sqs")
        job = Redrive(
            client,
            source=source,
            target=target,
            max_messages=args.max_messages,
            rate=args.rate,
        )
        await job.resolve()
        try:
            waiting = await job.count()
        except Exception as error:
            raise RedriveError(f"cannot read {source.arn}: {error}", EXIT_UNAVAILABLE) from error
        if args.dry_run:
            planned = waiting if args.max_messages is None else min(waiting, args.max_messages)
            print(
                f"dry run: {source.arn} holds about {waiting} messages; would move "
                f"{planned} to {target.arn}",
                file=out,
            )
            return EXIT_OK
        total = waiting if args.max_messages is None else min(waiting, args.max_messages)
        job.progress = Progress(total or None, stream=err)
        if args.rate:
            eta = math.ceil(total / args.rate) if total else 0
            print(f"redrive: about {total} messages at most {args.rate:g}/s (~{eta} s)", file=err)
        report = await job.run()
    finally:
        await clients.close()
    for line in report.errors[:20]:
        print(f"redrive: {line}", file=err)
    if len(report.errors) > 20:
        print(f"redrive: ... and {len(report.errors) - 20} more", file=err)
    print(
        f"moved {report.moved} messages from {source.arn} to {target.arn} "
        f"({report.send_failed} not sent, left in the DLQ; "
        f"{report.delete_failed} sent but not deleted)",
        file=out,
    )
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


def redrive_main(args: argparse.Namespace) -> int:
    """Entry point of ``pumphouse redrive`` (arguments parsed by :mod:`pumphouse.cli`)."""
    try:
        return asyncio.run(redrive(args, out=sys.stdout, err=sys.stderr))
    except RedriveError as error:
        print(f"pumphouse redrive: {error}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        print("pumphouse redrive: interrupted", file=sys.stderr)
        return 130
