"""Every incoming shape becomes a Command. Nothing here touches AWS.

Validation is strict: a field of the wrong type, an unknown field or a missing one is a
BadEvent (400) that names the field, raised before anything can be started or stopped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Literal

from start_engines.config import NEVER_OVERRIDABLE, OVERRIDES, RUN_TASK_MAX_COUNT, describe_name
from start_engines.errors import BadEvent, MethodNotAllowed, OverrideNotAllowed, RouteNotFound

MAX_SERVICE_NAME = 64
MAX_SERVICES = 20
MAX_EVENT_ID = 256
MAX_REASON = 200
# Patterns compile (and are cached by re) on first use: few events need them.
TASK_ID = r"^(arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task/)?[A-Za-z0-9/_-]{1,128}$"

# The commands live one module each (start_engines.commands): an event creates only its own
# command's class. They are still imported from here; each module loads on first use.
COMMANDS = {
    "StartRequest": "start_engines.commands.start",
    "StopRequest": "start_engines.commands.stop",
    "StatusRequest": "start_engines.commands.status",
    "SyncRequest": "start_engines.commands.sync",
    "ReapRequest": "start_engines.commands.reap",
    "TaskStateChange": "start_engines.commands.task_state",
}

if TYPE_CHECKING:  # types only: the ALB's modules load for an ALB event alone
    from typing import TypeAlias

    from start_engines.alb_request import WakeRequest

    # `as`: re-exported (mypy), so `from start_engines.events import StopRequest` stays typed
    from start_engines.commands.reap import ReapRequest as ReapRequest  # noqa: PLC0414
    from start_engines.commands.start import StartRequest as StartRequest  # noqa: PLC0414
    from start_engines.commands.status import StatusRequest as StatusRequest  # noqa: PLC0414
    from start_engines.commands.stop import StopRequest as StopRequest  # noqa: PLC0414
    from start_engines.commands.sync import SyncRequest as SyncRequest  # noqa: PLC0414
    from start_engines.commands.task_state import TaskStateChange as TaskStateChange  # noqa: PLC0414

    Command: TypeAlias = (
        StartRequest
        | StopRequest
        | StatusRequest
        | SyncRequest
        | ReapRequest
        | TaskStateChange
        | WakeRequest
    )
else:

    def __getattr__(name: str) -> Any:
        """`from start_engines.events import StopRequest` loads that command's module only."""
        if name in COMMANDS:
            return getattr(import_module(COMMANDS[name]), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


START_TYPES = frozenset({"Start ECS Task"})
STOP_TYPES = frozenset({"Stop ECS Task", "Stop ECS Tasks"})
STATUS_TYPES = frozenset({"ECS Task Status"})
SYNC_TYPES = frozenset({"Sync Target Groups"})
REAP_TYPES = frozenset({"Reap Idle Engines"})
TASK_STATE_CHANGE = "ECS Task State Change"
DETAIL_TYPES = (
    START_TYPES | STOP_TYPES | STATUS_TYPES | SYNC_TYPES | REAP_TYPES | {TASK_STATE_CHANGE}
)
ACTIONS = ("start", "stop", "status", "sync", "reap")
SCHEDULED_EVENT = "Scheduled Event"
# API Gateway cuts an integration off after about 29-30 s; ?wait=true stays inside that.
API_WAIT_BUDGET = 25.0

Via = Literal["eventbridge", "direct", "api-v1", "api-v2", "alb", "schedule", "ecs"]


@dataclass(frozen=True)
class Invocation:
    """A command and the front door it came through."""

    command: Command
    via: Via


def is_alb_event(event: Mapping[str, Any]) -> bool:
    context = event.get("requestContext")
    return isinstance(context, Mapping) and "elb" in context


def detect(event: object) -> Via:
    """Which front door an event came through. Never raises: errors are shaped per door."""
    if not isinstance(event, Mapping):
        return "eventbridge"
    if is_alb_event(event):  # before API Gateway's v1: ALB's events have httpMethod too
        return "alb"
    if event.get("version") == "2.0" and "routeKey" in event and "requestContext" in event:
        return "api-v2"
    if "httpMethod" in event and "requestContext" in event:
        return "api-v1"
    if event.get("detail-type") == SCHEDULED_EVENT and event.get("source") == "aws.events":
        return "schedule"
    if event.get("detail-type") == TASK_STATE_CHANGE:
        return "ecs"
    if "action" in event and "detail-type" not in event:
        return "direct"
    return "eventbridge"


def parse_invocation(event: object) -> Invocation:
    via = detect(event)
    if via in ("api-v1", "api-v2"):
        assert isinstance(event, Mapping)
        return Invocation(_parse_api(event, via), via)
    if via == "alb":
        from start_engines.alb_request import parse_alb

        assert isinstance(event, Mapping)
        return Invocation(parse_alb(event), via)
    if via == "schedule":
        # A rule without constant input: housekeeping. Schedules that start or stop engines
        # send constant input in the EventBridge shape instead.
        from start_engines.commands.sync import SyncRequest

        return Invocation(SyncRequest(None), via)
    return Invocation(parse_event(event), via)


SELECT_KEYS = {"service", "services"}
START_KEYS = SELECT_KEYS | {"waitForHealthy", "count", "force", "overrides", "requester"}
MAX_REQUESTER = 128
TEXT_OVERRIDES = {"cluster", "taskDefinition", "taskRoleArn", "executionRoleArn"}
LIST_OVERRIDES = {"targetGroupArns", "subnets", "securityGroups", "command"}
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"
MAX_OVERRIDE_TEXT = 2048
MAX_OVERRIDE_ITEMS = 100
STOP_KEYS = SELECT_KEYS | {"taskId", "includeForeign", "waitForDraining", "reason"}


def parse_event(event: object) -> Command:
    if not isinstance(event, Mapping):
        raise BadEvent(
            f"the event must be a JSON object, got {type(event).__name__}", field="event"
        )
    if "detail-type" in event:
        return _parse_eventbridge(event)
    if "action" in event:
        return _parse_action(event)
    raise BadEvent(
        "unrecognised event: expected an EventBridge event with 'detail-type' and 'detail', "
        "or a direct invocation with 'action'",
        field="detail-type",
    )


def _parse_eventbridge(event: Mapping[str, Any]) -> Command:
    detail_type = event.get("detail-type")
    if not isinstance(detail_type, str) or detail_type not in DETAIL_TYPES:
        raise BadEvent(
            f"unsupported detail-type {describe_name(detail_type)}; supported: {sorted(DETAIL_TYPES)}",
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
    if detail_type == TASK_STATE_CHANGE:
        return _task_state_change(detail)
    action = (
        next(
            name
            for name, types in (
                ("start", START_TYPES),
                ("stop", STOP_TYPES),
                ("status", STATUS_TYPES),
                ("reap", REAP_TYPES),
            )
            if detail_type in types
        )
        if detail_type not in SYNC_TYPES
        else "sync"
    )
    return _command(action, detail, "detail", event_id)


def _parse_action(event: Mapping[str, Any]) -> Command:
    action = event.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise BadEvent(
            f"action must be one of {list(ACTIONS)}, got {describe_name(action)}", field="action"
        )
    options = {k: v for k, v in event.items() if k not in ("action", "id")}
    event_id = _optional_str(event, "id", "id", MAX_EVENT_ID)
    return _command(action, options, "payload", event_id, extra=frozenset({"async"}))


ROUTES = r"^/engines(?:/(?P<service>[^/]+)(?:/(?P<verb>start|stop))?)?/?$"


def _parse_api(event: Mapping[str, Any], via: Via) -> Command:
    """API Gateway proxy events, REST (v1) and HTTP API (v2), on four routes."""
    if not isinstance(event.get("requestContext"), Mapping):
        raise BadEvent(
            "an API Gateway event needs its requestContext object", field="requestContext"
        )
    if via == "api-v2":
        http = _mapping(_mapping(event.get("requestContext")).get("http"))
        method, path = http.get("method", ""), event.get("rawPath", "")
    else:
        method, path = event.get("httpMethod", ""), event.get("path", "")
    if not isinstance(method, str) or not isinstance(path, str):
        raise BadEvent("the request has no method or path", field="path")
    if "/engines" in path and not path.startswith("/engines"):
        path = path[path.index("/engines") :]  # a stage name in front of the route
    match = re.match(ROUTES, path)
    if not match:
        raise RouteNotFound(
            f"no route {describe_name(path)}; routes are /engines, /engines/{{service}}, /engines/{{service}}/start|stop",
            field="path",
        )
    service, verb = match.group("service"), match.group("verb")
    allowed = "POST" if verb else "GET"
    if method.upper() != allowed:
        raise MethodNotAllowed(
            f"{method} is not allowed on {path}; use {allowed}",
            field="method",
            details={"allow": allowed},
        )
    body = _api_body(event)
    wait = _mapping(event.get("queryStringParameters")).get("wait", "false")
    if wait not in ("true", "false"):
        raise BadEvent("query parameter wait must be true or false", field="query.wait")
    if verb is None:
        from start_engines.commands.status import StatusRequest

        _reject_unknown(body, set(), "body")
        return StatusRequest((_service(service, "path.service"),) if service else None)
    fields = {**body, "service": service}
    if verb == "stop":
        return _command("stop", fields, "body", None)
    from start_engines.commands.start import StartRequest as StartRequest  # noqa: PLC0414

    command = _command("start", fields, "body", _request_id(event))
    assert isinstance(command, StartRequest)
    return StartRequest(
        services=command.services,
        wait_for_healthy=command.wait_for_healthy,
        event_id=command.event_id,
        count=command.count,
        force=command.force,
        overrides=command.overrides,
        asynchronous=True,
        wait_budget=API_WAIT_BUDGET if wait == "true" else 0.0,
    )


def _mapping(value: object) -> Mapping[str, Any]:
    """A caller's nested object, or an empty one when it is anything else."""
    return value if isinstance(value, Mapping) else {}


def _api_body(event: Mapping[str, Any]) -> Mapping[str, Any]:
    raw = event.get("body")
    if raw in (None, ""):
        return {}
    if not isinstance(raw, str):
        raise BadEvent("the request body must be a JSON object", field="body")
    try:
        if event.get("isBase64Encoded"):
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        body = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadEvent(f"the request body is not valid JSON: {exc}", field="body") from exc
    except RecursionError as exc:
        raise BadEvent("the request body is nested too deeply", field="body") from exc
    if not isinstance(body, Mapping):
        raise BadEvent("the request body must be a JSON object", field="body")
    if "service" in body or "services" in body:
        raise BadEvent("the engine is named in the path, not the body", field="body.service")
    return body


def _request_id(event: Mapping[str, Any]) -> str | None:
    request_id = _mapping(event.get("requestContext")).get("requestId")
    return request_id if isinstance(request_id, str) and len(request_id) <= MAX_EVENT_ID else None


def _command(
    action: str,
    fields: Mapping[str, Any],
    where: str,
    event_id: str | None,
    extra: frozenset[str] = frozenset(),
) -> Command:
    if action == "start":
        from start_engines.commands.start import StartRequest

        _reject_unknown(fields, START_KEYS | extra, where)
        services, listed = _services(fields, where, required=True)
        assert services is not None
        count = fields.get("count")
        if count is not None and (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 1 <= count <= RUN_TASK_MAX_COUNT
        ):
            raise BadEvent(
                f"{where}.count must be a whole number 1-{RUN_TASK_MAX_COUNT}, got {describe_name(count)}",
                field=f"{where}.count",
            )
        return StartRequest(
            services=services,
            wait_for_healthy=_optional_bool(fields, "waitForHealthy", where),
            event_id=event_id,
            count=count,
            force=_optional_bool(fields, "force", where),
            listed=listed,
            asynchronous=_optional_bool(fields, "async", where),
            requester=_optional_str(fields, "requester", f"{where}.requester", MAX_REQUESTER),
            overrides=_overrides(fields["overrides"], f"{where}.overrides", services)
            if "overrides" in fields
            else (),
        )
    if action == "stop":
        from start_engines.commands.stop import DEFAULT_STOP_REASON, StopRequest

        _reject_unknown(fields, STOP_KEYS, where)
        services, _ = _services(fields, where, required=False)
        task_id = fields.get("taskId")
        if task_id is not None:
            if not isinstance(task_id, str) or not re.match(TASK_ID, task_id):
                raise BadEvent(
                    f"{where}.taskId must be an ECS task id or ARN", field=f"{where}.taskId"
                )
            if services is None or len(services) != 1:
                raise BadEvent(
                    f"{where}.taskId needs exactly one {where}.service", field=f"{where}.taskId"
                )
        reason = _optional_str(fields, "reason", f"{where}.reason", MAX_REASON)
        return StopRequest(
            services=services,
            task_id=task_id,
            include_foreign=_optional_bool(fields, "includeForeign", where),
            wait_for_draining=_optional_bool(fields, "waitForDraining", where),
            reason=reason or DEFAULT_STOP_REASON,
        )
    if action == "reap":
        from start_engines.commands.reap import ReapRequest

        _reject_unknown(fields, SELECT_KEYS | {"dryRun"}, where)
        services, _ = _services(fields, where, required=False)
        return ReapRequest(services, dry_run=_optional_bool(fields, "dryRun", where))
    _reject_unknown(fields, SELECT_KEYS, where)
    services, _ = _services(fields, where, required=False)
    if action == "status":
        from start_engines.commands.status import StatusRequest

        return StatusRequest(services)
    from start_engines.commands.sync import SyncRequest as SyncRequest  # noqa: PLC0414

    return SyncRequest(services)


def _overrides(value: object, field: str, services: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """The overrides' shape, checked; whether the engine allows them is the engine's call."""
    if not isinstance(value, Mapping):
        raise BadEvent(f"{field} must be a JSON object", field=field)
    found: dict[str, Any] = {}
    for key, item in value.items():
        name = "targetGroupArns" if key == "targetGroupArn" else str(key)
        where = f"{field}.{str(key)[:MAX_SERVICE_NAME]}"
        if name in NEVER_OVERRIDABLE:
            raise OverrideNotAllowed(
                f"{where} is refused for {', '.join(services)}: {NEVER_OVERRIDABLE[name]}",
                service=services[0],
                field=where,
            )
        if name not in OVERRIDES:
            raise BadEvent(
                f"unknown override {describe_name(key)}; known: {list(OVERRIDES)}", field=where
            )
        single_arn = name == "targetGroupArns" and isinstance(item, str)
        found[name] = _override_value(name, [item] if single_arn else item, where)
    return tuple(sorted(found.items()))


def _override_value(name: str, item: object, where: str) -> Any:
    def text(value: object) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_OVERRIDE_TEXT:
            raise BadEvent(
                f"{where} must be a non-empty string of at most {MAX_OVERRIDE_TEXT} characters",
                field=where,
            )
        return value

    if name in TEXT_OVERRIDES:
        return text(item)
    if name in LIST_OVERRIDES:
        if not isinstance(item, list) or not item or len(item) > MAX_OVERRIDE_ITEMS:
            raise BadEvent(f"{where} must be a non-empty list of strings", field=where)
        return tuple(text(v) for v in item)
    if name == "environment":
        if not isinstance(item, Mapping) or len(item) > MAX_OVERRIDE_ITEMS:
            raise BadEvent(f"{where} must be an object of variable name -> string", field=where)
        for key, value in item.items():
            if (
                not isinstance(key, str)
                or not re.match(ENV_NAME, key)
                or not isinstance(value, str)
                or len(value) > MAX_OVERRIDE_TEXT
            ):
                raise BadEvent(f"{where} must map variable names to strings", field=where)
        return tuple(sorted(item.items()))
    # cpu and memory: ECS units, as a number or its string
    if isinstance(item, bool) or not (
        (isinstance(item, int) and 0 < item < 10**6) or (isinstance(item, str) and item.isdigit())
    ):
        raise BadEvent(f"{where} must be a positive whole number", field=where)
    return str(item)


def _task_state_change(detail: Mapping[str, Any]) -> TaskStateChange:
    def text(key: str, required: bool = True) -> str:
        value = detail.get(key, "")
        if not isinstance(value, str) or (required and not value):
            raise BadEvent(f"detail.{key} must be a non-empty string", field=f"detail.{key}")
        return value

    from start_engines.commands.task_state import TaskStateChange as TaskStateChange  # noqa: PLC0414

    version = detail.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadEvent("detail.version must be a number", field="detail.version")
    private_ip = None
    attachments = detail.get("attachments", [])
    if isinstance(attachments, list):
        for attachment in attachments:
            if isinstance(attachment, Mapping) and isinstance(attachment.get("details"), list):
                for item in attachment["details"]:
                    if isinstance(item, Mapping) and item.get("name") == "privateIPv4Address":
                        value = item.get("value")
                        private_ip = value if isinstance(value, str) and value else None
    task_arn, cluster_arn = text("taskArn"), text("clusterArn")
    # task/<cluster>/<id> names its cluster (the old task/<id> does not): it must be this one
    parts = task_arn.rsplit(":", 1)[-1].split("/")
    if len(parts) == 3 and parts[1] != cluster_arn.rsplit("/", 1)[-1]:
        raise BadEvent(
            f"detail.taskArn is a task of cluster '{parts[1][:100]}', not of detail.clusterArn",
            field="detail.taskArn",
        )
    return TaskStateChange(
        task_arn=task_arn,
        cluster_arn=cluster_arn,
        last_status=text("lastStatus"),
        desired_status=text("desiredStatus"),
        started_by=text("startedBy", required=False),
        task_definition_arn=text("taskDefinitionArn", required=False),
        version=version,
        private_ip=private_ip,
    )


def _services(
    fields: Mapping[str, Any], where: str, *, required: bool
) -> tuple[tuple[str, ...] | None, bool]:
    """(names, listed): `service` or `services`; None for every engine when not required."""
    if "service" in fields and "services" in fields:
        raise BadEvent(
            f"give {where}.service or {where}.services, not both", field=f"{where}.services"
        )
    if "services" in fields:
        value = fields["services"]
        if not isinstance(value, list) or not value:
            raise BadEvent(
                f"{where}.services must be a non-empty list of engine names",
                field=f"{where}.services",
            )
        if len(value) > MAX_SERVICES:
            raise BadEvent(
                f"{where}.services names more than {MAX_SERVICES} engines",
                field=f"{where}.services",
            )
        names = [_service(item, f"{where}.services[{i}]") for i, item in enumerate(value)]
        return tuple(dict.fromkeys(name.lower() for name in names)), True
    if "service" in fields or required:
        return (_service(fields.get("service"), f"{where}.service"),), False
    return None, False


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


def _optional_bool(mapping: Mapping[str, Any], key: str, where: str) -> bool:
    value = mapping.get(key, False)
    if not isinstance(value, bool):
        raise BadEvent(
            f"{where}.{key} must be true or false, got {describe_name(value)}",
            field=f"{where}.{key}",
        )
    return value


def _optional_str(mapping: Mapping[str, Any], key: str, field: str, limit: int) -> str | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadEvent(f"{field} must be a string of at most {limit} characters", field=field)
    return value
