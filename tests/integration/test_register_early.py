"""Register as soon as the IP is known (registerAt ip, the default): the ALB's registration delay
passes while the task still starts; the answer still waits for RUNNING; every failure still
takes the targets out. The task-state entry point and sync follow the same rule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from start_engines import checkpoints
from start_engines.errors import ConfigError
from start_engines.local import Emulator, ManualClock
from tests.conftest import START_SECONDS, start_event
from tests.integration.helpers import (
    EventCapture,
    finish_stop,
    settle_and_check_owners,
    state_change_event,
    stop_event,
    targets,
    task,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    Invoke = Callable[..., dict[str, Any]]


def status_when_registered(aws: Emulator, invoke: Invoke, event: dict[str, Any]) -> tuple[Any, str]:
    seen: list[str] = []

    def look(_: dict[str, Any]) -> None:
        arn = aws.clients().ecs.list_tasks(cluster="auth-cluster")["taskArns"][0]
        seen.append(task(aws, "auth-cluster", arn)["lastStatus"])

    with checkpoints.at("start.registered", look):
        answer = invoke(event)
    return answer, seen[0]


def test_a_start_registers_while_the_task_starts_and_answers_at_running(
    aws: Emulator, invoke: Invoke
) -> None:
    answer, status = status_when_registered(aws, invoke, start_event("auth"))
    assert status in ("PENDING", "ACTIVATING")
    body = answer["body"]
    assert answer["statusCode"] == 200
    assert body["timings"]["registered"] < body["timings"]["running"]
    assert body["timings"]["running"] >= START_SECONDS
    assert [(ip, port) for ip, port, _ in targets(aws, "auth")] == [(body["privateIp"], 8080)]


def test_register_at_running_keeps_the_old_order(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_REGISTER_AT", "running")
    answer, status = status_when_registered(aws, invoke, start_event("auth"))
    assert status == "RUNNING"
    assert answer["body"]["timings"]["registered"] >= answer["body"]["timings"]["running"]


def test_a_task_that_dies_after_its_early_registration_leaves_no_target(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    aws.lifecycle.plan_next("auth-cluster", dies_after=START_SECONDS * 0.8)  # in ACTIVATING
    answer = invoke(start_event("auth"))
    assert answer["statusCode"] >= 500
    assert answer["body"]["errorType"] == "TaskStopped"
    assert answer["body"]["cleanedUp"] is True
    assert targets(aws, "auth") == [] or all(s == "draining" for _, _, s in targets(aws, "auth"))
    settle_and_check_owners(aws, deliver, clock)


def test_a_stop_after_the_early_registration_takes_the_target_out(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    stops: list[dict[str, Any]] = []
    with checkpoints.at("start.registered", lambda _: stops.append(invoke(stop_event("auth")))):
        answer = invoke(start_event("auth"))
    assert answer["statusCode"] == 409
    assert stops[0]["body"]["targetsDeregistered"] == 1
    finish_stop(aws, clock)
    settle_and_check_owners(aws, deliver, clock)


def test_the_task_state_entry_point_registers_at_the_ip_and_completes_at_running(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    capture = EventCapture(aws)
    accepted = invoke({"action": "start", "service": "auth", "async": True})
    assert accepted["statusCode"] == 202
    arn = accepted["body"]["taskArn"]
    clock.advance(START_SECONDS * 0.3)  # PENDING: the ENI has its IP
    early = deliver(state_change_event(aws, "auth-cluster", arn))["body"]
    assert (early["lastStatus"], early["action"]) == ("PENDING", "registered")
    assert [t[0] for t in targets(aws, "auth")] == [early["privateIp"]]
    assert not [e for e in capture.received() if e["detail-type"] == "Engine Ready"]
    clock.advance(START_SECONDS)
    running = deliver(state_change_event(aws, "auth-cluster", arn))["body"]
    assert running["action"] == "already-registered"
    ready = [e for e in capture.received() if e["detail-type"] == "Engine Ready"]
    assert [e["detail"]["taskId"] for e in ready] == [arn.rsplit("/", 1)[-1]]
    # the handed-off start's claim ended at RUNNING: a new start is free to decide
    again = invoke({**start_event("auth"), "id": "again"})
    assert again["statusCode"] == 200 and again["body"]["reused"] is True


def test_sync_registers_a_starting_task_with_an_ip(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    accepted = invoke({"action": "start", "service": "fa", "async": True})
    clock.advance(START_SECONDS * 0.7)  # ACTIVATING
    synced = invoke({"action": "sync", "service": "fa"})["body"]["results"][0]
    described = task(aws, "fa-cluster", accepted["body"]["taskArn"])
    assert described["lastStatus"] == "ACTIVATING"
    details = {d["name"]: d["value"] for d in described["attachments"][0]["details"]}
    assert [c["ip"] for c in synced["registered"]] == [details["privateIPv4Address"]]


def test_register_at_is_checked(monkeypatch: pytest.MonkeyPatch, aws: Emulator) -> None:
    from start_engines.config import get_service_config

    monkeypatch.setenv("AUTH_REGISTER_AT", "pending")
    with pytest.raises(ConfigError) as refused:
        get_service_config("auth")
    assert (refused.value.service, refused.value.field) == ("auth", "AUTH_REGISTER_AT")
