"""Every sample in events/ parses to the command its name says; bad API requests are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from start_engines.alb_request import WakeRequest
from start_engines.errors import BadEvent, MethodNotAllowed, RouteNotFound
from start_engines.events import (
    ReapRequest,
    StartRequest,
    StatusRequest,
    StopRequest,
    SyncRequest,
    TaskStateChange,
    parse_invocation,
)
from tests.conftest import EVENTS, load_event

EXPECTED: dict[str, tuple[type, str]] = {
    "start-auth.json": (StartRequest, "eventbridge"),
    "start-auth-wait-healthy.json": (StartRequest, "eventbridge"),
    "start-several.json": (StartRequest, "eventbridge"),
    "start-capacity.json": (StartRequest, "eventbridge"),
    "stop-auth.json": (StopRequest, "eventbridge"),
    "stop-all.json": (StopRequest, "eventbridge"),
    "status-auth.json": (StatusRequest, "eventbridge"),
    "sync-all.json": (SyncRequest, "eventbridge"),
    "reap-idle.json": (ReapRequest, "eventbridge"),
    "schedule-morning-start.json": (StartRequest, "eventbridge"),
    "schedule-evening-stop.json": (StopRequest, "eventbridge"),
    "scheduled-event.json": (SyncRequest, "schedule"),
    "direct-start-async.json": (StartRequest, "direct"),
    "direct-status.json": (StatusRequest, "direct"),
    "direct-stop.json": (StopRequest, "direct"),
    "ecs-task-running.json": (TaskStateChange, "ecs"),
    "ecs-task-stopped.json": (TaskStateChange, "ecs"),
    "apigw-v2-start.json": (StartRequest, "api-v2"),
    "apigw-v2-start-wait.json": (StartRequest, "api-v2"),
    "apigw-v2-list.json": (StatusRequest, "api-v2"),
    "apigw-v1-status.json": (StatusRequest, "api-v1"),
    "apigw-v1-stop.json": (StopRequest, "api-v1"),
    "alb-wake-request.json": (WakeRequest, "alb"),
}


def test_every_sample_is_listed() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_parses(name: str) -> None:
    invocation = parse_invocation(load_event(name))
    command_type, via = EXPECTED[name]
    assert isinstance(invocation.command, command_type)
    assert invocation.via == via


def test_samples_carry_what_they_say() -> None:
    several = parse_invocation(load_event("start-several.json")).command
    assert isinstance(several, StartRequest)
    assert several.services == ("auth", "pdf", "fa", "users", "batch") and several.listed
    api_start = parse_invocation(load_event("apigw-v2-start.json")).command
    assert isinstance(api_start, StartRequest)
    assert api_start.asynchronous and api_start.wait_budget == 0.0
    api_wait = parse_invocation(load_event("apigw-v2-start-wait.json")).command
    assert isinstance(api_wait, StartRequest) and api_wait.wait_budget == 25.0
    assert parse_invocation(load_event("apigw-v2-list.json")).command == StatusRequest(None)
    assert parse_invocation(load_event("apigw-v1-status.json")).command == StatusRequest(("auth",))
    stop = parse_invocation(load_event("apigw-v1-stop.json")).command
    assert isinstance(stop, StopRequest) and stop.services == ("auth",) and stop.wait_for_draining
    running = parse_invocation(load_event("ecs-task-running.json")).command
    assert isinstance(running, TaskStateChange)
    assert (running.last_status, running.private_ip, running.version) == (
        "RUNNING",
        "10.0.1.100",
        3,
    )


def api(method: str, path: str, body: Any = None, **extra: Any) -> dict[str, Any]:
    event = json.loads((Path(EVENTS) / "apigw-v2-list.json").read_text())
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    event.update(extra)
    return event


@pytest.mark.parametrize(
    ("event", "error", "field"),
    [
        (api("GET", "/nope"), RouteNotFound, "path"),
        (api("GET", "/engines/auth/restart"), RouteNotFound, "path"),
        (api("DELETE", "/engines/auth"), MethodNotAllowed, "method"),
        (api("GET", "/engines/auth/start"), MethodNotAllowed, "method"),
        (api("POST", "/engines"), MethodNotAllowed, "method"),
        (api("POST", "/engines/auth/start", "{not json"), BadEvent, "body"),
        (api("POST", "/engines/auth/start", "[1, 2]"), BadEvent, "body"),
        (api("POST", "/engines/auth/start", {"cluster": "x"}), BadEvent, "body.cluster"),
        (api("POST", "/engines/auth/start", {"service": "pdf"}), BadEvent, "body.service"),
        (api("POST", "/engines/auth/start", {"count": "2"}), BadEvent, "body.count"),
        (
            api("POST", "/engines/auth/start", queryStringParameters={"wait": "soon"}),
            BadEvent,
            "query.wait",
        ),
        (api("POST", "/engines/auth/start", "%%%", isBase64Encoded=True), BadEvent, "body"),
    ],
)
def test_bad_api_requests(event: dict[str, Any], error: type[BadEvent], field: str) -> None:
    with pytest.raises(error) as info:
        parse_invocation(event)
    assert type(info.value) is error
    assert info.value.field == field


def test_stage_prefix_and_base64_body() -> None:
    import base64

    event = api(
        "POST",
        "/prod/engines/pdf/start",
        base64.b64encode(b'{"waitForHealthy": true}').decode(),
        isBase64Encoded=True,
    )
    command = parse_invocation(event).command
    assert isinstance(command, StartRequest)
    assert command.services == ("pdf",) and command.wait_for_healthy


def test_the_alb_sample_is_a_browser_asking_for_a_sleeping_engine() -> None:
    wake = parse_invocation(load_event("alb-wake-request.json")).command
    assert isinstance(wake, WakeRequest)
    assert (wake.http.method, wake.http.path, wake.http.host) == (
        "GET",
        "/api/pdf/report",
        "engines.example.com",
    )
    assert wake.wants_html and wake.replayable and not wake.health_check
    assert wake.http.source_ip == "203.0.113.9"
