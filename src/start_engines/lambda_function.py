"""Lambda entry points, thin: event -> Command -> engines -> response.

- EventBridge events and schedules: failures are returned, never raised. A raise makes Lambda
  retry an asynchronous event, and a retry could start a second task.
- ALB (a sleeping engine's rule forwards to our Lambda target group): the engine wakes; the
  answer is a waiting page, JSON or a 307 back to the same URL, in ALB's format.
- API Gateway (REST v1, HTTP API v2): proxy responses with a JSON body; a start answers 202 as
  soon as RunTask succeeds.
- Direct invoke and Step Functions (`{"action": ...}`): failures raise typed exceptions
  (UnknownEngine, TaskStopped, StartTimeout, ...) for Retry and Catch.
"""

from __future__ import annotations

import gc
import types

# No garbage collection during the imports: nearly all they allocate (modules, classes,
# functions) lives as long as the container, so a collection would find next to nothing to
# free, yet its passes over the growing heap cost about 4% of the import. Then gc.freeze():
# what the imports built is left out of every later collection (the first one after the
# imports would walk all of it once more). bench/cold.py measures it.
#
# The heavy imports (botocore, Powertools) run inside one wide frame: CPython keeps frames in
# 16 KiB chunks and unmaps a chunk as soon as the frame that opened it returns, so imports that
# swing around a chunk boundary map and unmap one each time (630 times for this import on
# 3.11, 1,400 on 3.12, or a few: it depends on the depth the runtime imports us from). The wide
# frame opens a 256 KiB chunk, and every import nested in it fits in the rest.
WIDE_FRAME_SLOTS = 16_400  # 8 bytes each: about 125 KiB of the chunk left for the imports


def _heavy_imports() -> None:
    import aws_lambda_powertools.logging.utils  # noqa: F401

    import start_engines.aws  # noqa: F401 - botocore


_collecting = gc.isenabled()
gc.disable()
try:
    wide = _heavy_imports.__code__.replace(co_stacksize=WIDE_FRAME_SLOTS)
    types.FunctionType(wide, globals())()
    del wide
    import json
    import logging
    from dataclasses import dataclass
    from typing import Any, Literal

    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    from start_engines import telemetry
    from start_engines.aws import Clients
    from start_engines.clock import Clock, Deadline, SystemClock
    from start_engines.engines import Engines, Outcome
    from start_engines.errors import (
        BadEvent,
        InternalError,
        StartEnginesError,
        error_from_body,
    )
    from start_engines.events import Via, detect, parse_invocation

    logger = Logger(service="start-engines")
    # Library modules log through logging.getLogger(__name__), below the package's logger;
    # give it the same JSON output. It must exist first: use cases are imported when needed.
    logging.getLogger("start_engines")
    copy_config_to_registered_loggers(source_logger=logger, include={"start_engines"})
finally:
    gc.freeze()
    if _collecting:
        gc.enable()

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


def remaining_seconds(context: Any) -> float:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return getter() / 1000.0 if callable(getter) else DEFAULT_REMAINING_SECONDS


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The one entry point for every front door; the answer is shaped for the door."""
    from start_engines import wake_target  # lazily: custom resource requests are rare

    if wake_target.is_custom_resource(event):
        return wake_target.handle(event, context)
    via = detect(event)
    outcome = _run(event, context, via, accept=None)
    return _respond(via, outcome, event)


def task_state_handler(event: Any, context: Any) -> dict[str, Any]:
    """Entry point for `aws.ecs` "ECS Task State Change" events: keeps target groups in sync."""
    outcome = _run(event, context, "ecs", accept="task-state")
    return {"statusCode": outcome.status_code, "body": outcome.body}


def _run(event: Any, context: Any, via: Via, accept: Literal["task-state"] | None) -> Outcome:
    """Parse, dispatch, record metrics and log; `accept` is the one command kind taken."""
    rt = runtime()
    _correlate(event, context)
    try:
        command = parse_invocation(event).command
        if accept is not None and command.kind != accept:
            raise BadEvent(
                "this entry point takes ECS Task State Change events", field="detail-type"
            )
        engines = Engines.build(rt.clients, rt.clock)
        deadline = Deadline.after(
            rt.clock, remaining_seconds(context) - engines.settings.deadline_margin
        )
        outcome = engines.dispatch(command, deadline)
        telemetry.record(command, outcome)
        waiting = via == "alb" and outcome.status_code == 503  # a wake page: all is well
        log = logger.info if outcome.status_code < 400 or waiting else logger.warning
        log(
            "%s via %s answered %s",
            type(command).__name__,
            via,
            outcome.status_code,
            extra={"result": outcome.body},
        )
        return outcome
    except StartEnginesError as exc:
        return _failure(exc)
    except Exception as exc:
        logger.exception("unhandled error")
        return _failure(InternalError(f"unexpected error: {exc!r}"))


def _respond(via: Via, outcome: Outcome, event: Any) -> dict[str, Any]:
    if via == "alb":
        from start_engines.wake_page import alb_response

        return alb_response(event, outcome)
    if via in ("api-v1", "api-v2"):
        headers = {"Content-Type": "application/json"}
        if "allow" in outcome.body:
            headers["Allow"] = str(outcome.body["allow"])
        if outcome.status_code == 202 and "statusUrl" in outcome.body:
            headers["Location"] = str(outcome.body["statusUrl"])
        return {
            "statusCode": outcome.status_code,
            "headers": headers,
            "body": json.dumps(outcome.body, default=str),
            "isBase64Encoded": False,
        }
    if via == "direct" and (outcome.status_code >= 400 or outcome.status_code == 207):
        raise error_from_body(outcome.status_code, outcome.body)
    return {"statusCode": outcome.status_code, "body": outcome.body}


def _failure(error: StartEnginesError) -> Outcome:
    log = logger.warning if error.status_code < 500 else logger.error
    log("%s: %s", error.error_type, error.message, extra={"error": error.to_body()})
    return Outcome(error.status_code, error.to_body())


def _correlate(event: Any, context: Any) -> None:
    event_id = event.get("id") if isinstance(event, dict) else None
    if isinstance(event, dict) and isinstance(event.get("requestContext"), dict):
        request_id = event["requestContext"].get("requestId")
        event_id = request_id if isinstance(request_id, str) else event_id
    logger.set_correlation_id(event_id if isinstance(event_id, str) else None)
    request_id = getattr(context, "aws_request_id", None)
    if isinstance(request_id, str):
        logger.append_keys(function_request_id=request_id)
