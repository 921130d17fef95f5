"""API Gateway, Step Functions / direct invoke, schedules and outgoing events, on one Lambda."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from start_engines import errors, lambda_function
from start_engines.local import Emulator, ManualClock
from start_engines.local.context import LambdaContext
from tests.conftest import load_event, start_event
from tests.integration.helpers import (
    EventCapture,
    live_tasks,
    mutations,
    past_draining,
    state_change_event,
    targets,
    task,
)

Invoke = Any


def api_event(name: str, **changes: Any) -> dict[str, Any]:
    event = load_event(name)
    event.update(changes)
    return event


def answer(response: dict[str, Any]) -> dict[str, Any]:
    assert response["headers"]["Content-Type"] == "application/json"
    assert isinstance(response["body"], str)
    body: dict[str, Any] = json.loads(response["body"])
    return body


# --- API Gateway -----------------------------------------------------------------------


def test_api_start_answers_202_and_the_task_state_entry_point_registers(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    capture = EventCapture(aws)
    before = clock.now()
    response = invoke(load_event("apigw-v2-start.json"))
    assert clock.now() == before  # no waiting: answered right after RunTask
    assert response["statusCode"] == 202
    body = answer(response)
    assert body["statusUrl"] == "/engines/auth"
    assert response["headers"]["Location"] == "/engines/auth"
    assert body["lastStatus"] == "PROVISIONING"
    assert targets(aws, "auth") == []

    clock.advance(5.0)  # the task reaches RUNNING; ECS sends its state change
    event = state_change_event(aws, "auth-cluster", body["taskArn"])
    reconciled = lambda_function.task_state_handler(event, LambdaContext(clock, 60))
    assert reconciled["body"]["action"] == "registered"
    ip = task(aws, "auth-cluster", body["taskArn"])["attachments"][0]["details"][-1]["value"]
    assert targets(aws, "auth") == [(ip, 8080, "initial")]

    ready = [e for e in capture.received() if e["detail-type"] == "Engine Ready"]
    assert len(ready) == 1
    assert ready[0]["source"] == "start-engines"
    assert ready[0]["detail"]["taskId"] == body["taskId"]
    assert ready[0]["detail"]["privateIp"] == ip


def test_api_start_with_wait_answers_200_when_it_fits(aws: Emulator, invoke: Invoke) -> None:
    response = invoke(load_event("apigw-v2-start-wait.json"))
    assert response["statusCode"] == 200
    body = answer(response)
    assert body["privateIp"] and body["healthStatus"] == "initial"


def test_api_start_with_wait_hands_off_a_slow_start(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    aws.lifecycle.plan_next(running_after=60.0)
    before = clock.now()
    response = invoke(load_event("apigw-v2-start-wait.json"))
    assert response["statusCode"] == 202
    assert clock.now() - before <= 25.0  # inside API Gateway's 29 s
    body = answer(response)
    handed_off = task(aws, "auth-cluster", body["taskArn"])
    assert handed_off["lastStatus"] != "STOPPED"  # not cleaned up
    assert handed_off["desiredStatus"] == "RUNNING"  # nor being stopped
    assert mutations(aws, "StopTask") == []


def test_api_status_and_list_and_stop(aws: Emulator, invoke: Invoke) -> None:
    started = invoke(start_event("auth"))["body"]
    status = answer(invoke(load_event("apigw-v1-status.json")))
    assert [r["service"] for r in status["results"]] == ["auth"]
    assert status["results"][0]["tasks"][0]["taskId"] == started["taskId"]
    listing = answer(invoke(load_event("apigw-v2-list.json")))
    assert {r["service"] for r in listing["results"]} == {"auth", "batch", "fa", "pdf", "users"}
    stopped = invoke(load_event("apigw-v1-stop.json"))
    assert stopped["statusCode"] == 200
    assert answer(stopped)["tasksStopped"] == 1
    assert live_tasks(aws, "auth-cluster") == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error_type"),
    [
        ("GET", "/engines/auth/logs", None, 404, "RouteNotFound"),
        ("DELETE", "/engines/auth", None, 405, "MethodNotAllowed"),
        ("POST", "/engines/auth/start", "{oops", 400, "BadEvent"),
        ("POST", "/engines/payroll/start", None, 400, "UnknownEngine"),
        ("POST", "/engines/auth/start", "[" * 5000 + "]" * 5000, 400, "BadEvent"),
    ],
)
def test_api_errors_are_json(
    aws: Emulator,
    invoke: Invoke,
    method: str,
    path: str,
    body: str | None,
    status: int,
    error_type: str,
) -> None:
    event = load_event("apigw-v2-list.json")
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    if body is not None:
        event["body"] = body
    response = invoke(event)
    assert response["statusCode"] == status
    assert answer(response)["errorType"] == error_type
    if status == 405:
        assert response["headers"]["Allow"] == "GET"
    assert aws.lifecycle.mutations == []


# --- Step Functions and direct invoke ---------------------------------------------------


def test_direct_start_async_and_status(aws: Emulator, invoke: Invoke) -> None:
    started = invoke(load_event("direct-start-async.json"))
    assert started["statusCode"] == 202
    assert started["body"]["taskId"]
    status = invoke(load_event("direct-status.json"))
    engine = status["body"]["results"][0]
    assert engine["ready"] is False
    assert engine["tasks"][0]["taskId"] == started["body"]["taskId"]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"action": "start", "service": "payroll"}, errors.UnknownEngine),
        ({"action": "launch", "service": "auth"}, errors.BadEvent),
        ({"action": "start", "service": 3}, errors.BadEvent),
        ({"action": "stop", "service": "auth", "taskId": "abc"}, errors.NoSuchTask),
    ],
)
def test_direct_invoke_raises_typed_errors(
    aws: Emulator, invoke: Invoke, payload: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        invoke(payload)
    assert type(info.value).__name__ == error.__name__
    assert mutations(aws, "RunTask") == []


def test_direct_start_failure_raises_task_stopped_after_cleanup(
    aws: Emulator, invoke: Invoke
) -> None:
    aws.lifecycle.plan_next(dies_after=2.0)
    with pytest.raises(errors.TaskStopped) as info:
        invoke({"action": "start", "service": "pdf"})
    assert info.value.details["cleanedUp"] is True
    assert live_tasks(aws, "pdf-cluster") == []


def test_direct_several_engines_partial_failure_raises_engines_failed(
    aws: Emulator, invoke: Invoke
) -> None:
    aws.lifecycle.plan_next("fa-cluster", dies_after=2.0)
    with pytest.raises(errors.EnginesFailed) as info:
        invoke({"action": "start", "services": ["auth", "fa"]})
    assert "fa: TaskStopped" in info.value.message
    assert info.value.details["succeeded"] == 1


def test_state_machine_definition() -> None:
    from pathlib import Path

    definition = json.loads(Path("statemachine/start-engine.asl.json").read_text())
    states = definition["States"]
    assert definition["StartAt"] in states
    names = {cls.__name__ for cls in errors._subclasses(errors.StartEnginesError)}
    for name, state in states.items():
        for key in ("Next", "Default"):
            if key in state:
                assert state[key] in states, f"{name}.{key}"
        for choice in state.get("Choices", []):
            assert choice["Next"] in states
        for rule in state.get("Retry", []) + state.get("Catch", []):
            ours = [e for e in rule["ErrorEquals"] if not e.startswith(("States.", "Lambda."))]
            assert set(ours) <= names, (
                f"{name} names errors the function never raises: {set(ours) - names}"
            )
            if "Next" in rule:
                assert rule["Next"] in states
    assert states["Start"]["Parameters"]["Payload"]["async"] is True


# --- schedules -------------------------------------------------------------------------


def test_scheduled_event_runs_housekeeping_sync(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    dead = invoke(start_event("users"))["body"]
    aws.lifecycle.kill(dead["taskArn"])  # its STOPPED event never came: a stale target
    response = invoke(load_event("scheduled-event.json"))
    assert response["statusCode"] == 200
    assert response["body"]["changes"] == 1
    past_draining(clock)
    assert targets(aws, "users") == []


def test_schedule_constant_input_starts_and_stops(aws: Emulator, invoke: Invoke) -> None:
    started = invoke(load_event("schedule-morning-start.json"))
    assert started["statusCode"] == 200
    assert {r["service"] for r in started["body"]["results"]} == {"auth", "pdf"}
    stopped = invoke(load_event("schedule-evening-stop.json"))
    assert stopped["body"]["tasksStopped"] == 2
    assert live_tasks(aws, "auth-cluster") == live_tasks(aws, "pdf-cluster") == []


# --- outgoing events -------------------------------------------------------------------


def test_outgoing_events_for_ready_failed_and_stopped(aws: Emulator, invoke: Invoke) -> None:
    capture = EventCapture(aws)
    ready = invoke(start_event("auth"))["body"]
    aws.lifecycle.plan_next("pdf-cluster", dies_after=1.0)
    failed = invoke({**start_event("pdf"), "id": "second"})["body"]
    invoke({"detail-type": "Stop ECS Task", "detail": {"service": "auth"}})
    received = {e["detail-type"]: e for e in capture.received()}
    assert set(received) == {"Engine Ready", "Engine Start Failed", "Engine Stopped"}
    assert received["Engine Ready"]["detail"] == ready
    assert received["Engine Start Failed"]["detail"]["taskId"] == failed["taskId"]
    assert received["Engine Start Failed"]["detail"]["errorType"] == "TaskStopped"
    assert received["Engine Stopped"]["detail"]["taskIds"] == [ready["taskId"]]
    assert all(e["source"] == "start-engines" for e in received.values())


def test_async_start_failure_is_published_from_the_stopped_event(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    capture = EventCapture(aws)
    aws.lifecycle.plan_next(dies_after=2.0)
    body = invoke(load_event("direct-start-async.json"))["body"]
    clock.advance(3.0)
    lambda_function.task_state_handler(
        state_change_event(aws, "auth-cluster", body["taskArn"]), LambdaContext(clock, 60)
    )
    failed = [e for e in capture.received() if e["detail-type"] == "Engine Start Failed"]
    assert [e["detail"]["taskId"] for e in failed] == [body["taskId"]]
    assert failed[0]["detail"]["stoppedReason"] == "Essential container in task exited"


def test_event_bus_is_configurable_and_events_can_be_off(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.clients().events.create_event_bus(Name="engines-bus")
    custom = EventCapture(aws, bus="engines-bus")
    default = EventCapture(aws)
    monkeypatch.setenv("EVENT_BUS_NAME", "engines-bus")
    invoke(start_event("fa"))
    assert [e["detail-type"] for e in custom.received()] == ["Engine Ready"]
    assert default.received() == []
    monkeypatch.setenv("OUTGOING_EVENTS", "off")
    invoke({"detail-type": "Stop ECS Task", "detail": {"service": "fa"}})
    assert custom.received() == []


def test_the_emulator_delivers_task_events_like_a_deployed_stack(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    """`python -m start_engines.local` turns this on, so `start-engines start --no-wait`
    against it ends registered, with nobody polling."""
    aws.deliver_task_events(every=0.05)
    try:
        answer = invoke({"action": "start", "service": "pdf", "async": True})
        assert answer["statusCode"] == 202
        assert targets(aws, "pdf") == []
        clock.advance(10)  # ECS's time passes: the task is RUNNING, its event goes out
        ip = task(aws, "pdf-cluster", answer["body"]["taskArn"])["attachments"][0]["details"]
        private_ip = next(d["value"] for d in ip if d["name"] == "privateIPv4Address")
        for _ in range(200):  # the delivery thread's next rounds; bounded
            if targets(aws, "pdf"):
                break
            threading.Event().wait(0.05)
        assert [t[0] for t in targets(aws, "pdf")] == [private_ip]
    finally:
        aws.stop_delivering()
