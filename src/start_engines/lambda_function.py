"""Lambda entry points, thin: event -> Command -> engines -> response.

Failures are returned, never raised: a raise makes Lambda retry an asynchronous EventBridge
event, and a retry could start a second task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from start_engines.aws import Clients
from start_engines.clock import Clock, Deadline, SystemClock
from start_engines.config import load_settings
from start_engines.ecs_handler import ECSHandler
from start_engines.engines import Engines, Outcome
from start_engines.errors import BadEvent, InternalError, StartEnginesError
from start_engines.events import (
    Command,
    StartRequest,
    StatusRequest,
    StopRequest,
    SyncRequest,
    TaskStateChange,
    parse_event,
)
from start_engines.lease import Lease
from start_engines.target_group_handler import TargetGroupHandler

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = Logger(service="start-engines")
# Library modules log through logging.getLogger(__name__); give them the same JSON output.
copy_config_to_registered_loggers(source_logger=logger, include={"start_engines"})

DEFAULT_REMAINING_SECONDS = 900.0  # no context (direct call): Lambda's maximum


@dataclass
class Runtime:
    """What lives across warm invocations: the clients and the clock."""

    clients: Clients
    clock: Clock


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime  # noqa: PLW0603 - the warm-container cache
    if _runtime is None:
        _runtime = Runtime(clients=Clients(), clock=SystemClock())
    return _runtime


def use_runtime(value: Runtime | None) -> None:
    """Replace the cached runtime (tests, the demo); None rebuilds it on next use."""
    global _runtime  # noqa: PLW0603
    _runtime = value


def build_engines(rt: Runtime, environ: Mapping[str, str] | None = None) -> Engines:
    clients = rt.clients
    settings = load_settings(environ)
    return Engines(
        ECSHandler(clients.ecs, lambda: clients.ec2),
        TargetGroupHandler(clients.elbv2),
        settings,
        rt.clock,
        lease=Lease(clients.dynamodb, settings.lease_table) if settings.lease_table else None,
        environ=environ,
    )


def dispatch(command: Command, engines: Engines, deadline: Deadline) -> Outcome:
    if isinstance(command, StartRequest):
        return engines.start(command, deadline)
    if isinstance(command, StopRequest):
        return engines.stop(command, deadline)
    if isinstance(command, StatusRequest):
        return engines.status(command)
    if isinstance(command, SyncRequest):
        return engines.sync(command)
    return engines.on_task_state_change(command)


def remaining_seconds(context: Any) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000.0 if callable(getter) else DEFAULT_REMAINING_SECONDS


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """EventBridge (and direct) entry point. Always returns {statusCode, body}."""
    return _handle(event, context, accept=None)


def task_state_handler(event: Any, context: Any) -> dict[str, Any]:
    """Entry point for `aws.ecs` "ECS Task State Change" events: keeps target groups in sync."""
    return _handle(event, context, accept=TaskStateChange)


def _handle(event: Any, context: Any, accept: type[TaskStateChange] | None) -> dict[str, Any]:
    rt = runtime()
    _correlate(event, context)
    try:
        command = parse_event(event)
        if accept is not None and not isinstance(command, accept):
            raise BadEvent(
                "this entry point takes ECS Task State Change events", field="detail-type"
            )
        engines = build_engines(rt)
        deadline = Deadline.after(
            rt.clock, remaining_seconds(context) - engines.settings.deadline_margin
        )
        outcome = dispatch(command, engines, deadline)
        log = logger.info if outcome.status_code < 400 else logger.warning
        log(
            "%s answered %s",
            type(command).__name__,
            outcome.status_code,
            extra={"result": outcome.body},
        )
        return {"statusCode": outcome.status_code, "body": outcome.body}
    except StartEnginesError as exc:
        return _failure(exc)
    except Exception as exc:
        logger.exception("unhandled error")
        return _failure(InternalError(f"unexpected error: {exc!r}"))


def _failure(error: StartEnginesError) -> dict[str, Any]:
    log = logger.warning if error.status_code < 500 else logger.error
    log("%s: %s", error.error_type, error.message, extra={"error": error.to_body()})
    return {"statusCode": error.status_code, "body": error.to_body()}


def _correlate(event: Any, context: Any) -> None:
    event_id = event.get("id") if isinstance(event, dict) else None
    logger.set_correlation_id(event_id if isinstance(event_id, str) else None)
    request_id = getattr(context, "aws_request_id", None)
    if isinstance(request_id, str):
        logger.append_keys(function_request_id=request_id)
