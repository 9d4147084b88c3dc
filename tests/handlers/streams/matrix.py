"""A handler whose response is chosen by the first record's ``case``: the
``ReportBatchItemFailures`` response matrix of docs/behaviour.md §3, end to end."""

from __future__ import annotations

from typing import Any

from recorder import log, record_items


def handler(event: dict[str, Any], context: Any) -> Any:
    items = record_items(event)
    case = items[0]["case"]
    seqs = [item["seq"] for item in items]
    log({"case": case, "seqs": seqs, "request": context.aws_request_id})
    if case == "null":
        return None
    if case == "empty_string":
        return ""
    if case == "empty_object":
        return {}
    if case == "empty_list":
        return []
    if case == "empty_failures":
        return {"batchItemFailures": []}
    if case == "null_failures":
        return {"batchItemFailures": None}
    if case == "other_key":
        return {"foo": "bar"}
    if case == "id_empty":
        return {"batchItemFailures": [{"itemIdentifier": ""}]}
    if case == "id_null":
        return {"batchItemFailures": [{"itemIdentifier": None}]}
    if case == "id_missing":
        return {"batchItemFailures": [{"foo": seqs[0]}]}
    if case == "id_unknown":
        return {"batchItemFailures": [{"itemIdentifier": "1234567890"}]}
    if case == "invalid_json":
        return b"{not json"
    if case == "raise":
        raise RuntimeError("the whole batch failed")
    if case == "partial_once":
        # The second record fails on the first attempt only (the retry holds 2 records).
        if len(seqs) == 3:
            return {"batchItemFailures": [{"itemIdentifier": seqs[1]}]}
        return {"batchItemFailures": []}
    if case == "partial_always":
        # Report the second record and the third as failed whenever the second is there.
        failed = seqs[1:] if len(seqs) == 3 else seqs
        return {"batchItemFailures": [{"itemIdentifier": s} for s in failed]}
    raise AssertionError(f"unknown case {case!r}")
