"""How fast does a compiled FilterCriteria pattern go through SQS records?

Measures records/s through ``FilterSet.matches`` with a typical three-field pattern on
~1 KB JSON SQS bodies, next to the cost of ``orjson.loads`` on the same bodies in the same
run. Parsing the body is the floor: a filter on ``body`` cannot be cheaper than reading
it. The target is total <= 2 x parse.

Run: ``.venv/bin/python benchmarks/filter_speed.py``
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from pumphouse.patterns import SourceKind, compile_filter_criteria

RECORDS = 2_000
REPEATS = 7
TARGET_RATIO = 2.0
PATTERN = orjson.dumps(
    {
        "body": {
            "type": ["order"],
            "amount": [{"numeric": [">", 100]}],
            "region": [{"prefix": "eu-"}],
        }
    }
).decode()


def make_body(rng: random.Random) -> str:
    """A ~1 KB order-like JSON document; about a third of them match PATTERN."""
    body = {
        "type": rng.choice(["order", "order", "order", "refund"]),
        "orderId": str(uuid.UUID(int=rng.getrandbits(128))),
        "amount": round(rng.uniform(1, 400), 2),
        "currency": "EUR",
        "region": rng.choice(["eu-west-1", "eu-central-1", "us-east-1"]),
        "customer": {
            "id": rng.randrange(10**9),
            "name": "Customer " + str(rng.randrange(10**6)),
            "email": f"user{rng.randrange(10**6)}@example.com",
            "tier": rng.choice(["gold", "silver", "bronze"]),
        },
        "items": [
            {
                "sku": f"SKU-{rng.randrange(10**6):06d}",
                "quantity": rng.randrange(1, 5),
                "price": round(rng.uniform(1, 100), 2),
                "tags": ["fragile", "gift"] if rng.random() < 0.3 else [],
            }
            for _ in range(5)
        ],
        "createdAt": "2024-05-01T12:34:56.789Z",
        "note": "x" * rng.randrange(350, 450),
    }
    return orjson.dumps(body).decode()


def make_record(body: str, n: int) -> dict[str, Any]:
    return {
        "messageId": str(uuid.UUID(int=n)),
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a" + str(n),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
        "awsRegion": "us-east-2",
    }


def best_of(run: Callable[[], object]) -> float:
    """Seconds for the fastest of REPEATS runs (after one warm-up run)."""
    run()
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> int:
    rng = random.Random(5)
    bodies = [make_body(rng) for _ in range(RECORDS)]
    records = [make_record(body, n) for n, body in enumerate(bodies)]
    filters = compile_filter_criteria([PATTERN], source=SourceKind.SQS)
    loads = orjson.loads
    matches = filters.matches

    def parse_only() -> None:
        for body in bodies:
            loads(body)

    def filter_all() -> None:
        for record in records:
            matches(record)

    matched = sum(filters.matches(r) for r in records)
    parse_s = best_of(parse_only)
    total_s = best_of(filter_all)
    ratio = total_s / parse_s
    avg_bytes = sum(len(b) for b in bodies) / len(bodies)

    print(f"filter_speed: {RECORDS} SQS records, JSON body of {avg_bytes:.0f} bytes on average")
    print(f"  pattern: {PATTERN}")
    print(f"  matched: {matched} of {RECORDS} records")
    print(
        f"  orjson.loads(body) alone : {RECORDS / parse_s:>12,.0f} records/s"
        f"  ({parse_s / RECORDS * 1e6:.2f} us/record)"
    )
    print(
        f"  FilterSet.matches(record): {RECORDS / total_s:>12,.0f} records/s"
        f"  ({total_s / RECORDS * 1e6:.2f} us/record, parse included)"
    )
    verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
    print(f"  ratio total/parse        : {ratio:.2f}  ({verdict} the {TARGET_RATIO:.1f}x target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
