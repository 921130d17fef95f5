"""Failures after RunTask clean up; bad input starts nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import start_event
from tests.integration.helpers import (
    create_target_group,
    finish_stop,
    live_tasks,
    mutations,
    past_draining,
    targets,
    task,
)

if TYPE_CHECKING:
    from start_engines.local import Emulator, ManualClock

Invoke = Any


DIED = "Essential container in task exited"


def assert_nothing_left(
    aws: Emulator, clock: ManualClock, engine: str, cluster: str, task_arn: str, reason: str
) -> None:
    stopping = task(aws, cluster, task_arn)
    assert (stopping["desiredStatus"], stopping["stoppedReason"]) == ("STOPPED", reason)
    assert live_tasks(aws, cluster) == []
    finish_stop(aws, clock)
    assert task(aws, cluster, task_arn)["lastStatus"] == "STOPPED"
    past_draining(clock)  # the deregistered target drained
    assert targets(aws, engine) == []


def cleanup_reason(body: dict[str, Any]) -> str:
    """The stoppedReason start-engines gives a task it stops after a failed start."""
    return f"start-engines: start failed ({body['errorType']})"


def test_task_dies_during_start(aws: Emulator, invoke: Invoke, clock: ManualClock) -> None:
    aws.lifecycle.plan_next(dies_after=2.5, exit_code=3)
    response = invoke(start_event("pdf"))
    body = response["body"]
    assert response["statusCode"] == 500
    assert body["errorType"] == "TaskStopped"
    assert body["stoppedReason"] == "Essential container in task exited"
    assert body["exitCodes"] == {"pdf-app": 3}
    assert body["cleanedUp"] is True
    assert body["service"] == "pdf"
    assert_nothing_left(aws, clock, "pdf", "pdf-cluster", body["taskArn"], DIED)


def test_task_dies_after_running_while_waiting_for_health(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    aws.lifecycle.plan_next(dies_after=6.0)
    before = clock.now()
    response = invoke(start_event("auth", waitForHealthy=True), timeout=60)
    body = response["body"]
    assert response["statusCode"] == 500  # at once, not after the health timeout
    assert body["errorType"] == "TaskStopped"
    assert clock.now() - before < 6.0 + 6.0  # noticed within the DescribeTasks budget
    assert body["cleanedUp"] is True
    assert body["targetsRemoved"] == [aws.provisioned.target_groups["auth"]]  # type: ignore[union-attr]
    assert_nothing_left(aws, clock, "auth", "auth-cluster", body["taskArn"], DIED)


def test_start_timeout(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("START_TIMEOUT_SECONDS", "30")
    aws.lifecycle.plan_next(running_after=float("inf"))
    response = invoke(start_event("users"))
    body = response["body"]
    assert response["statusCode"] == 504
    assert body["errorType"] == "StartTimeout"
    assert body["lastStatus"] == "PROVISIONING"
    assert body["cleanedUp"] is True
    assert_nothing_left(aws, clock, "users", "users-cluster", body["taskArn"], cleanup_reason(body))


def test_lambda_deadline_bounds_the_wait(aws: Emulator, invoke: Invoke, clock: ManualClock) -> None:
    aws.lifecycle.plan_next(running_after=float("inf"))
    began = clock.now()
    response = invoke(start_event("auth"), timeout=25)
    assert response["statusCode"] == 504
    assert response["body"]["cleanedUp"] is True
    # the wait ends DEADLINE_MARGIN (10 s) before Lambda would kill the invocation
    assert clock.now() - began <= 25 - 10 + 0.01
    body = response["body"]
    assert_nothing_left(aws, clock, "auth", "auth-cluster", body["taskArn"], cleanup_reason(body))


def test_health_timeout_cleans_up(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTH_TIMEOUT_SECONDS", "5")
    response = invoke(start_event("fa", waitForHealthy=True))
    body = response["body"]
    assert response["statusCode"] == 504
    assert body["healthStatus"] == {aws.provisioned.target_groups["fa"]: "initial"}  # type: ignore[union-attr]
    assert body["cleanedUp"] is True
    assert_nothing_left(aws, clock, "fa", "fa-cluster", body["taskArn"], cleanup_reason(body))


def test_register_fails_when_the_target_group_is_gone(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert aws.provisioned is not None
    elbv2 = aws.clients().elbv2
    doomed = create_target_group(aws, "doomed-tg")
    alb_arn = aws.provisioned.target_groups["auth"]
    monkeypatch.setenv("AUTH_TARGET_GROUP_ARN", f"{alb_arn},{doomed}")
    elbv2.delete_target_group(TargetGroupArn=doomed)

    response = invoke(start_event("auth"))
    body = response["body"]
    assert response["statusCode"] == 500
    assert body["errorType"] == "TargetGroupNotFound"
    assert body["targetGroupArn"] == doomed
    assert doomed in body["error"]
    assert body["cleanedUp"] is True
    assert body["targetsRemoved"] == [alb_arn]
    assert_nothing_left(aws, clock, "auth", "auth-cluster", body["taskArn"], cleanup_reason(body))


def test_unknown_engine_starts_nothing(aws: Emulator, invoke: Invoke) -> None:
    response = invoke(start_event("payroll"))
    assert response["statusCode"] == 400
    assert response["body"]["errorType"] == "UnknownEngine"
    assert "auth, batch, fa, pdf, users" in response["body"]["error"]
    assert mutations(aws, "RunTask") == []


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"source": "custom.app", "detail-type": "Start ECS Task"}, "detail"),
        ({"source": "custom.app", "detail-type": "Start ECS Task", "detail": "auth"}, "detail"),
        (start_event(17), "detail.service"),
        (start_event(""), "detail.service"),
        (start_event("auth", taskDefinition="evil:1"), "detail.taskDefinition"),
        (None, "event"),
    ],
)
def test_malformed_events_are_400_and_start_nothing(
    aws: Emulator, invoke: Invoke, event: Any, field: str
) -> None:
    response = invoke(event)
    assert response["statusCode"] == 400
    assert response["body"]["errorType"] == "BadEvent"
    assert response["body"]["field"] == field
    assert field.rsplit(".", maxsplit=1)[-1] in response["body"]["error"]
    assert aws.lifecycle.mutations == []


def test_missing_configuration_is_500_and_starts_nothing(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTH_TARGET_GROUP_ARN")
    response = invoke(start_event("auth"))
    assert response["statusCode"] == 500
    assert response["body"]["errorType"] == "ConfigError"
    assert response["body"]["field"] == "AUTH_TARGET_GROUP_ARN"
    assert aws.lifecycle.mutations == []


def test_each_engine_has_its_own_health_deadline(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTH_TIMEOUT_SECONDS", "12")
    monkeypatch.setenv("BATCH_REGISTER_AT", "running")  # registered at 12 s, after auth's 13 s
    aws.lifecycle.start_seconds_for = lambda cluster: 12.0 if cluster == "batch-cluster" else 4.0
    try:
        response = invoke(
            start_event(None) | {"detail": {"services": ["auth", "batch"], "waitForHealthy": True}}
        )
    finally:
        aws.lifecycle.start_seconds_for = None
    results = {r["service"]: r for r in response["body"]["results"]}
    assert response["statusCode"] == 200, results
    assert results["batch"]["healthStatus"] == "healthy"
    assert results["batch"]["timings"]["healthy"] > 12.0 + 10.0 - 1  # past auth's own deadline


def test_every_round_sleeps_its_poll_interval_even_with_a_short_start_timeout(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("START_TIMEOUT_SECONDS", "5")
    aws.lifecycle.plan_next(running_after=float("inf"))
    clock.sleeps.clear()
    api = {
        "version": "2.0",
        "routeKey": "POST /engines/{service}/start",
        "rawPath": "/engines/fa/start",
        "queryStringParameters": {"wait": "true"},
        "requestContext": {"http": {"method": "POST"}, "requestId": "busy"},
    }
    response = invoke(api)
    assert response["statusCode"] == 504  # its own start timeout, not the 25 s hand-off
    assert len(clock.sleeps) <= 5 / 0.7 + 2
    assert all(s >= 0.7 for s in clock.sleeps[:-1])
    assert len(aws.lifecycle.describe_calls) <= 1 + 1.5 * 5 + 2


def test_no_run_task_without_time_left(aws: Emulator, invoke: Invoke) -> None:
    response = invoke(start_event("pdf"), timeout=8.0)  # below the 10 s deadline margin
    assert response["statusCode"] == 504
    assert response["body"]["runTask"] is False
    assert mutations(aws, "RunTask") == []


def test_a_task_not_visible_yet_is_waited_for_not_killed(aws: Emulator, invoke: Invoke) -> None:
    aws.lifecycle.plan_next(invisible_for=3.0)
    response = invoke(start_event("users"))
    assert response["statusCode"] == 200
    assert mutations(aws, "StopTask") == []


def test_a_task_that_stays_missing_is_a_failure(aws: Emulator, invoke: Invoke) -> None:
    aws.lifecycle.plan_next(invisible_for=float("inf"))
    response = invoke(start_event("users"))
    assert response["statusCode"] == 500
    assert response["body"]["errorType"] == "TaskNotFound"
    assert response["body"]["cleanedUp"] is True
