"""Between Lambda's JSON shapes and pumphouse's mapping model.

A request body (``CreateEventSourceMapping``, ``UpdateEventSourceMapping``) becomes the
parameters of a mapping, with the same names as in the configuration file; a mapping
becomes an ``EventSourceMappingConfiguration`` with AWS's names and types (epoch
seconds for ``LastModified``, the function's ARN, the per-source defaults filled in as
Lambda reports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pumphouse.api.errors import InvalidParameterValue
from pumphouse.config.sources import SourceType

if TYPE_CHECKING:
    from pumphouse.config import EventSourceMapping

__all__ = [
    "MappingView",
    "check_tags",
    "create_parameters",
    "mapping_arn",
    "mapping_configuration",
    "update_parameters",
]

#: Parameters of Lambda's API that pumphouse does not implement: refused by name rather
#: than silently ignored.
UNSUPPORTED: Final = frozenset(
    {"KMSKeyArn", "LoggingConfig", "Queues", "DocumentDBEventSourceConfig",
     "ProvisionedPollerConfig"}
)
MAX_TAGS: Final = 50
#: What ``UpdateEventSourceMapping`` cannot change (Lambda's request has no such member).
CREATE_ONLY: Final = frozenset(
    {"EventSourceArn", "StartingPosition", "StartingPositionTimestamp", "Topics",
     "SelfManagedEventSource", "Tags"}
)
#: Configuration-file extensions that are not part of Lambda's API.
_NOT_IN_API: Final = frozenset({"UUID", "Kafka"})


@dataclass(frozen=True, kw_only=True)
class MappingView:
    """What the API reports about one mapping."""

    mapping: EventSourceMapping
    state: str
    state_transition_reason: str
    last_processing_result: str
    last_modified: float
    region: str
    account_id: str


def _check_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidParameterValue("the request body must be a JSON object")
    return {str(key): value for key, value in body.items()}


def _refuse(body: dict[str, Any], names: frozenset[str], why: str) -> None:
    found = sorted(k for k in body if k in names)
    if found:
        raise InvalidParameterValue(f"{', '.join(found)}: {why}")


def _check_secret_references(body: dict[str, Any]) -> None:
    """Through the API, access configurations name Secrets Manager secrets only, as in
    Lambda. ``env:`` and ``file:`` references read pumphouse's own environment and
    files: the configuration file's operator may use them, an API caller may not (a
    mapping to a broker of the caller's choice would send it their values)."""
    configurations = body.get("SourceAccessConfigurations")
    if not isinstance(configurations, list):
        return
    for index, item in enumerate(configurations):
        uri = item.get("URI") if isinstance(item, dict) else None
        if isinstance(uri, str) and not uri.startswith("arn:"):
            raise InvalidParameterValue(
                f"SourceAccessConfigurations[{index}].URI: the API accepts Secrets Manager "
                "secret ARNs only (env: and file: references are for the configuration file)"
            )


def create_parameters(body: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A ``CreateEventSourceMapping`` body → (mapping parameters, tags)."""
    body = _check_object(body)
    _refuse(body, UNSUPPORTED, "not supported by pumphouse")
    _refuse(body, _NOT_IN_API, "not a parameter of CreateEventSourceMapping")
    _check_secret_references(body)
    return body, check_tags(body.pop("Tags", None) or {}, allow_empty=True)


def check_tags(tags: Any, *, allow_empty: bool = False) -> dict[str, str]:
    """Tags as Lambda accepts them: at most 50, keys of 1-128 and values of at most 256
    characters, keys not starting with ``aws:``."""
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidParameterValue("Tags: expected a map of strings to strings")
    if not tags and not allow_empty:
        raise InvalidParameterValue("Tags: at least one tag is required")
    if len(tags) > MAX_TAGS:
        raise InvalidParameterValue(f"Tags: at most {MAX_TAGS} tags, got {len(tags)}")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            raise InvalidParameterValue(
                f"Tags: key {key[:40]!r} must be 1-128 characters, not starting with 'aws:'"
            )
        if len(value) > 256:
            raise InvalidParameterValue(f"Tags: the value of {key!r} is over 256 characters")
    return dict(tags)


def update_parameters(body: Any) -> dict[str, Any]:
    """An ``UpdateEventSourceMapping`` body → the parameters it changes."""
    params = _check_object(body)
    _refuse(params, UNSUPPORTED, "not supported by pumphouse")
    _refuse(params, CREATE_ONLY | _NOT_IN_API, "not a parameter of UpdateEventSourceMapping")
    _check_secret_references(params)
    return params


def mapping_arn(uuid: str, *, region: str, account_id: str) -> str:
    return f"arn:aws:lambda:{region}:{account_id}:event-source-mapping:{uuid}"


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def mapping_configuration(view: MappingView) -> dict[str, Any]:
    """An ``EventSourceMappingConfiguration``."""
    m = view.mapping
    source = m.source_type
    doc: dict[str, Any] = m.model_dump(
        mode="json", exclude_none=True, exclude=set(_NOT_IN_API | {"FunctionName", "Enabled"})
    )
    if not doc.get("FunctionResponseTypes"):
        doc.pop("FunctionResponseTypes", None)
    doc["UUID"] = m.uuid
    doc["EventSourceMappingArn"] = mapping_arn(
        m.uuid, region=view.region, account_id=view.account_id
    )
    doc["FunctionArn"] = m.function_arn
    doc["BatchSize"] = m.batch_size
    doc["MaximumBatchingWindowInSeconds"] = _number(m.batching_window)
    if source in (SourceType.KINESIS, SourceType.DYNAMODB):
        doc["ParallelizationFactor"] = m.parallelization_factor
        doc["BisectBatchOnFunctionError"] = m.bisect_batch_on_function_error
        doc["MaximumRetryAttempts"] = m.retry_attempts
        doc["MaximumRecordAgeInSeconds"] = m.max_record_age if m.max_record_age else -1
        doc["TumblingWindowInSeconds"] = m.tumbling_window
    if "StartingPositionTimestamp" in doc:
        doc["StartingPositionTimestamp"] = _number(float(m.StartingPositionTimestamp or 0))
    doc["State"] = view.state
    doc["StateTransitionReason"] = view.state_transition_reason
    doc["LastProcessingResult"] = view.last_processing_result
    doc["LastModified"] = _number(round(view.last_modified, 3))
    return doc
