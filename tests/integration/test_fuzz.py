"""Hypothesis throws bad input at lambda_handler: never a crash, never an AWS call that starts,
stops, registers or deregisters, always a 4xx with a message."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from start_engines import lambda_function
from start_engines.errors import StartEnginesError
from start_engines.events import ACTIONS, DETAIL_TYPES, TASK_STATE_CHANGE
from start_engines.local import Emulator, ManualClock
from start_engines.local.context import LambdaContext

RECOGNISED = {
    "detail-type",
    "action",
    "httpMethod",
    "routeKey",
    "requestContext",
    "version",
    "source",
}
INJECTIONS = [
    "auth; rm -rf /",
    "../../etc/passwd",
    "auth\x00",
    "${jndi:ldap://evil/a}",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "auth\nStart ECS Task",
    "\uff41\uff55\uff54\uff48",
    "AUTH\u200b",
    "a" * 100_000,
    "auth*",
    "arn:aws:ecs:us-east-2:123456789012:cluster/auth-cluster",
    "%s%s%n",
    "🚀",
]
json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
bad_name = st.sampled_from(INJECTIONS) | st.text(min_size=1, max_size=30).filter(
    lambda s: s.strip().lower() not in {"auth", "pdf", "fa", "users", "batch"}
)
wrong_type = (
    st.none()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.lists(st.text(max_size=5), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)
)
commands = sorted(DETAIL_TYPES - {TASK_STATE_CHANGE})


@st.composite
def eventbridge(draw: st.DrawFn) -> dict[str, Any]:
    """An EventBridge event with at least one definite defect."""
    detail: dict[str, Any] = {
        "service": draw(st.sampled_from(["auth", "pdf", "fa", "users", "batch"]))
    }
    defect = draw(
        st.sampled_from(
            ["name", "type", "unknown-key", "detail", "detail-type", "override", "count"]
        )
    )
    detail_type: Any = draw(st.sampled_from(commands))
    if defect == "name":
        detail["service"] = draw(bad_name)
    elif defect == "type":
        detail[
            draw(
                st.sampled_from(
                    ["service", "waitForHealthy", "force", "includeForeign", "services"]
                )
            )
        ] = draw(
            wrong_type.filter(lambda v: not isinstance(v, bool) and v != []) if True else wrong_type
        )
    elif defect == "unknown-key":
        detail[
            draw(
                st.text(min_size=1, max_size=20).filter(
                    lambda k: (
                        k
                        not in {
                            "service",
                            "services",
                            "waitForHealthy",
                            "count",
                            "force",
                            "overrides",
                            "taskId",
                            "includeForeign",
                            "waitForDraining",
                            "reason",
                        }
                    )
                )
            )
        ] = draw(json_value)
    elif defect == "detail":
        return {
            "detail-type": detail_type,
            "detail": draw(wrong_type.filter(lambda v: not isinstance(v, dict))),
        }
    elif defect == "detail-type":
        detail_type = draw(
            st.text(max_size=30).filter(lambda t: t not in DETAIL_TYPES) | wrong_type
        )
    elif defect == "override":
        detail_type = "Start ECS Task"
        detail["overrides"] = {
            draw(
                st.sampled_from(
                    [
                        "cluster",
                        "taskDefinition",
                        "image",
                        "command",
                        "environment",
                        "subnets",
                        "taskRoleArn",
                    ]
                )
            ): draw(json_value)
        }
    else:
        detail_type = "Start ECS Task"
        detail["count"] = draw(
            st.integers().filter(lambda n: not 1 <= n <= 2) | st.text(max_size=3)
        )
    return {
        "source": draw(st.sampled_from(["custom.app", "x"])),
        "detail-type": detail_type,
        "detail": detail,
        "id": draw(st.text(max_size=20)),
    }


@st.composite
def api(draw: st.DrawFn) -> dict[str, Any]:
    """An API Gateway event with a bad route, method, body, query or context."""
    version = draw(st.sampled_from(["1.0", "2.0"]))
    defect = draw(st.sampled_from(["path", "method", "body", "query", "context"]))
    path = "/engines/auth/start"
    method, body, query, context = "POST", None, None, {"requestId": "r"}
    if defect == "path":
        path = draw(
            st.sampled_from(["/engines/auth/restart", "/", "/engines/a/b/c", "/api"])
            | st.text(max_size=40).map(lambda t: "/x" + t)
        )
    elif defect == "method":
        method = draw(
            st.sampled_from(["GET", "DELETE", "PUT", "PATCH"])
            | st.text(max_size=8).filter(lambda m: m.upper() != "POST")
        )
    elif defect == "body":
        body = draw(
            st.text(max_size=40).filter(lambda t: t.strip() not in ("", "{}"))
            | json_value.map(json.dumps).filter(lambda t: t not in ("{}", "null", '""'))
        )
    elif defect == "query":
        query = {"wait": draw(st.text(max_size=10).filter(lambda w: w not in ("true", "false")))}
    else:
        context = draw(wrong_type.filter(lambda v: not isinstance(v, dict)))
    if version == "2.0":
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "requestContext": context,
        }
        if isinstance(context, dict):
            context["http"] = {"method": method, "path": path}
        else:
            event["rawPath"] = path if defect != "context" else draw(wrong_type)
    else:
        event = {"httpMethod": method, "path": path, "requestContext": context}
    event["body"] = body
    event["queryStringParameters"] = query
    return event


@st.composite
def direct(draw: st.DrawFn) -> dict[str, Any]:
    """A direct invocation with a bad action or option."""
    if draw(st.booleans()):
        return {
            "action": draw(st.text(max_size=10).filter(lambda a: a not in ACTIONS) | wrong_type)
        }
    payload = {"action": draw(st.sampled_from(list(ACTIONS))), "service": draw(bad_name)}
    return payload


anything = json_value.filter(lambda e: not (isinstance(e, dict) and RECOGNISED & set(e)))
bad_input = anything | eventbridge() | api() | direct()


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(event=bad_input)
def test_bad_input_never_crashes_and_never_acts(
    aws: Emulator, clock: ManualClock, event: Any
) -> None:
    aws.lifecycle.mutations.clear()
    if lambda_function._runtime is None:  # one warm container for all examples
        lambda_function.use_runtime(lambda_function.Runtime(aws.clients(), clock))
    try:
        response = lambda_function.lambda_handler(event, LambdaContext(clock, 60))
    except StartEnginesError as exc:  # direct invocations raise typed errors, by design
        assert isinstance(event, dict) and "action" in event, (
            f"only direct invocations raise: {exc!r}"
        )
        status, message = exc.status_code, exc.message
    else:
        status = response["statusCode"]
        body = response["body"]
        message = (json.loads(body) if isinstance(body, str) else body).get("error", "")
    assert 400 <= status < 500, (status, message, event)
    assert message
    assert aws.lifecycle.mutations == []
