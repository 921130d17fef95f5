"""Every incoming shape becomes a Command. Nothing here touches AWS.

Validation is strict: a field of the wrong type, an unknown field or a missing one is a
BadEvent (400) that names the field, raised before anything can be started or stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from start_engines.config import describe_name
from start_engines.errors import BadEvent

START_DETAIL_TYPES = frozenset({"Start ECS Task"})
MAX_SERVICE_NAME = 64
MAX_EVENT_ID = 256


@dataclass(frozen=True)
class StartRequest:
    services: tuple[str, ...]
    wait_for_healthy: bool = False
    event_id: str | None = None


Command = StartRequest


def parse_event(event: object) -> Command:
    if not isinstance(event, Mapping):
        raise BadEvent(
            f"the event must be a JSON object, got {type(event).__name__}", field="event"
        )
    if "detail-type" in event:
        return _parse_eventbridge(event)
    raise BadEvent(
        "unrecognised event: expected an EventBridge event with 'detail-type' and 'detail'",
        field="detail-type",
    )


def _parse_eventbridge(event: Mapping[str, Any]) -> Command:
    detail_type = event.get("detail-type")
    if not isinstance(detail_type, str) or detail_type not in START_DETAIL_TYPES:
        raise BadEvent(
            f"unsupported detail-type {describe_name(detail_type)}; "
            f"supported: {sorted(START_DETAIL_TYPES)}",
            field="detail-type",
        )
    if "detail" not in event:
        raise BadEvent("the event has no 'detail'", field="detail")
    detail = event["detail"]
    if not isinstance(detail, Mapping):
        raise BadEvent(
            f"'detail' must be a JSON object, got {type(detail).__name__}", field="detail"
        )
    event_id = _optional_str(event, "id", "id", MAX_EVENT_ID)
    _reject_unknown(detail, {"service", "waitForHealthy"}, "detail")
    service = _service(detail.get("service"), "detail.service")
    return StartRequest(
        services=(service,),
        wait_for_healthy=_optional_bool(detail, "waitForHealthy", "detail.waitForHealthy"),
        event_id=event_id,
    )


def _reject_unknown(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in mapping if key not in allowed)
    if unknown:
        raise BadEvent(
            f"unknown field {describe_name(unknown[0])} in {where}; allowed: {sorted(allowed)}",
            field=f"{where}.{unknown[0][:MAX_SERVICE_NAME]}",
        )


def _service(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise BadEvent(
            f"{field} must be a string naming an engine, got {type(value).__name__}", field=field
        )
    name = value.strip()
    if not name:
        raise BadEvent(f"{field} must not be empty", field=field)
    if len(name) > MAX_SERVICE_NAME:
        raise BadEvent(f"{field} is longer than {MAX_SERVICE_NAME} characters", field=field)
    return name


def _optional_bool(mapping: Mapping[str, Any], key: str, field: str) -> bool:
    value = mapping.get(key, False)
    if not isinstance(value, bool):
        raise BadEvent(f"{field} must be true or false, got {describe_name(value)}", field=field)
    return value


def _optional_str(mapping: Mapping[str, Any], key: str, field: str, limit: int) -> str | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadEvent(f"{field} must be a string of at most {limit} characters", field=field)
    return value
