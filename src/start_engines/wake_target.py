"""The `Custom::WakeTarget` resource: the start function registers itself in the wake target group.

The ALB stack owns the Lambda target group, and CloudFormation cannot add a target to another
stack's group, so the SAM stack asks the function to do it. Create registers, Update moves,
Delete deregisters (a group or target already gone counts as done). The answer always goes to
the ResponseURL, error or not, so a stack never waits an hour for it; nothing here raises.

Anyone allowed to invoke the function can send such a request, so it is held to what the
stack would ask: Create and Update register this function, in its own WAKE_TARGET_GROUP_ARN,
nothing else; and the Delete of that registration (which switches wake off) is done only
while the function's own stack is being deleted or rolled back (DescribeStacks, which its role
allows on its own stack only).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from start_engines.aws import AWS_ERRORS, has_code, translate
from start_engines.errors import BadEvent, StartEnginesError
from start_engines.lambda_function import runtime

logger = logging.getLogger(__name__)

REQUEST_TYPES = ("Create", "Update", "Delete")
GOING = (  # stack states in which CloudFormation deletes this resource for real
    "DELETE_IN_PROGRESS",
    "DELETE_COMPLETE",
    "ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
)
REQUIRED = ("ResponseURL", "StackId", "RequestId", "LogicalResourceId", "ResourceType")
GONE = ("TargetGroupNotFound", "InvalidTarget")  # deregistering: nothing left to do
PUT_ATTEMPTS = 3
PUT_TIMEOUT = 10.0
MAX_REASON = 2000  # the whole response must stay under CloudFormation's 4 KB


@dataclass(frozen=True)
class Target:
    """One registration: the function in the target group."""

    group: str
    function: str

    @property
    def physical_id(self) -> str:
        return f"{self.group}|{self.function}"


def is_custom_resource(event: Any) -> bool:
    """A CloudFormation custom resource request (as opposed to any other front door's event)."""
    return (
        isinstance(event, dict)
        and event.get("RequestType") in REQUEST_TYPES
        and all(key in event for key in REQUIRED)
        and str(event.get("ResourceType", "")).startswith("Custom::")
    )


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Do the request and send its answer to the ResponseURL; returns the answer sent."""
    event = event if isinstance(event, dict) else {}
    try:
        status, reason, physical_id = _apply(event, context)
    except StartEnginesError as exc:
        status, reason, physical_id = "FAILED", exc.message, _failed_id(event, context)
    except Exception as exc:  # never raise: CloudFormation would wait for an answer
        logger.exception("custom resource request failed")
        status, reason = "FAILED", f"unexpected error: {exc!r}"
        physical_id = _failed_id(event, context)
    answer = {
        "Status": status,
        "Reason": reason[:MAX_REASON],
        "PhysicalResourceId": physical_id,
        "StackId": _text(event.get("StackId")),
        "RequestId": _text(event.get("RequestId")),
        "LogicalResourceId": _text(event.get("LogicalResourceId")),
    }
    log = logger.info if status == "SUCCESS" else logger.error
    log("custom resource %s %s: %s", event.get("RequestType"), status, answer["Reason"])
    _send(_text(event.get("ResponseURL")), answer)
    return answer


def _apply(event: dict[str, Any], context: Any) -> tuple[str, str, str]:
    """(status, reason, physical id) of the request, done; AWS failures raise."""
    if event["RequestType"] == "Delete":
        # the physical ID names what is registered (after a move, the old registration)
        gone = _parse_id(event.get("PhysicalResourceId")) or _target(
            event.get("ResourceProperties"), context
        )
        if gone is None:  # a Create that failed on its properties registered nothing
            return "SUCCESS", "nothing was registered", _known_id(event)
        if gone == _serving(context):
            _stack_going(event.get("StackId"))
        _deregister(gone)
        return "SUCCESS", f"deregistered from {gone.group}", _known_id(event)
    new = _target(event.get("ResourceProperties"), context)
    if new is None:
        raise BadEvent("ResourceProperties needs TargetGroupArn and FunctionArn (strings)")
    _only_the_serving_registration(new, context)
    old = _target(event.get("OldResourceProperties"), context)
    moved = event["RequestType"] == "Update" and old is not None and old != new
    if moved and old is not None and old.group == new.group:
        _deregister(old)  # a Lambda target group holds one function: make room first
    _register(new)
    if moved and old is not None and old.group != new.group:
        _deregister(old)
    return "SUCCESS", f"registered in {new.group}", new.physical_id


def _serving(context: Any) -> Target:
    """The registration wake works through: this function in its WAKE_TARGET_GROUP_ARN."""
    function = str(getattr(context, "invoked_function_arn", "") or "")
    unqualified = ":".join(function.split(":")[:7])  # no alias or version
    return Target(os.environ.get("WAKE_TARGET_GROUP_ARN", "").strip(), unqualified)


def _only_the_serving_registration(new: Target, context: Any) -> None:
    serving = _serving(context)
    if not serving.group:
        raise BadEvent(
            "WAKE_TARGET_GROUP_ARN is not set: this function registers itself nowhere",
            field="WAKE_TARGET_GROUP_ARN",
        )
    if new.group != serving.group:
        raise BadEvent(
            "ResourceProperties.TargetGroupArn must be this function's WAKE_TARGET_GROUP_ARN",
            field="ResourceProperties.TargetGroupArn",
        )
    if new.function != serving.function:
        raise BadEvent(
            "ResourceProperties.FunctionArn must be this function: it registers only itself",
            field="ResourceProperties.FunctionArn",
        )


def _stack_going(stack_id: Any) -> None:
    """Refuse unless the stack is being deleted or rolled back (its role lets the function
    describe its own stack only, so a request naming another stack fails here too)."""
    if not isinstance(stack_id, str) or not stack_id.startswith("arn:"):
        raise BadEvent("StackId must be the stack's ARN", field="StackId")
    try:
        found = runtime().clients.cloudformation.describe_stacks(StackName=stack_id)
        stacks = found.get("Stacks", [])
    except AWS_ERRORS as exc:
        raise translate(exc, f"DescribeStacks {stack_id[:200]}") from exc
    status = stacks[0].get("StackStatus", "") if stacks else ""
    if status not in GOING:
        raise BadEvent(
            f"refusing to switch wake off: stack {stack_id[:200]} is {status or 'not found'}, "
            "not being deleted",
            field="RequestType",
        )


def _target(properties: Any, context: Any) -> Target | None:
    if not isinstance(properties, dict):
        return None
    group = properties.get("TargetGroupArn")
    function = properties.get("FunctionArn") or getattr(context, "invoked_function_arn", None)
    if not isinstance(group, str) or not group or not isinstance(function, str) or not function:
        return None
    return Target(group, function)


def _parse_id(physical_id: Any) -> Target | None:
    if not isinstance(physical_id, str) or physical_id.count("|") != 1:
        return None
    group, function = physical_id.split("|")
    return Target(group, function) if group and function else None


def _register(target: Target) -> None:
    try:
        elbv2 = runtime().clients.elbv2
        elbv2.register_targets(TargetGroupArn=target.group, Targets=[{"Id": target.function}])
    except AWS_ERRORS as exc:
        raise translate(exc, f"RegisterTargets in {target.group}") from exc


def _deregister(target: Target) -> None:
    """Deregister; a group or target already gone is done."""
    try:
        elbv2 = runtime().clients.elbv2
        elbv2.deregister_targets(TargetGroupArn=target.group, Targets=[{"Id": target.function}])
    except AWS_ERRORS as exc:
        if has_code(exc, *GONE):
            logger.info("%s: already gone from %s", target.function, target.group)
            return
        raise translate(exc, f"DeregisterTargets in {target.group}") from exc


def _failed_id(event: dict[str, Any], context: Any) -> str:
    """A failed Create names what it tried (its rollback Delete then cleans up, if anything
    is there); a failed Update or Delete keeps the ID CloudFormation knows."""
    if event.get("RequestType") == "Create":
        target = _target(event.get("ResourceProperties"), context)
        if target is not None:
            return target.physical_id
    return _known_id(event)


def _known_id(event: dict[str, Any]) -> str:
    """The physical ID CloudFormation already knows, or one for a resource never made."""
    known = event.get("PhysicalResourceId")
    if isinstance(known, str) and known:
        return known
    return f"{event.get('LogicalResourceId', 'WakeTarget')}-not-registered"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _send(url: str, answer: dict[str, Any]) -> None:
    """PUT the answer to the presigned URL, a few times; failures are logged, not raised."""
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        logger.error("custom resource ResponseURL is not an HTTP(S) URL: %r", url[:200])
        return
    body = json.dumps(answer).encode()
    for attempt in range(1, PUT_ATTEMPTS + 1):
        request = urllib.request.Request(  # scheme checked above
            url, data=body, method="PUT", headers={"Content-Type": ""}
        )
        try:
            with urllib.request.urlopen(request, timeout=PUT_TIMEOUT) as response:
                logger.info(
                    "custom resource answer %s sent (%s)", answer["Status"], response.status
                )
                return
        except Exception as exc:
            logger.warning("custom resource answer, attempt %d: %r", attempt, exc)
    logger.error("custom resource answer not delivered: %s", answer)
