"""Faults injected through narrow patches of moto's backends: starts survive or clean up, and
afterwards no task of ours is alive without its targets, and no target without a live task."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import botocore.endpoint
import pytest
from moto.core.responses import ActionResult
from moto.ecs.exceptions import ECSException
from moto.ecs.models import EC2ContainerServiceBackend
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.elbv2.exceptions import ELBClientError
from moto.elbv2.models import ELBv2Backend

from start_engines import lambda_function
from start_engines.config import SERVICE_MAPPINGS
from start_engines.ecs_handler import ENGINE_TAG, STARTED_BY
from start_engines.local import Emulator, ManualClock
from start_engines.local.context import LambdaContext
from tests.conftest import load_event, start_event
from tests.integration.helpers import (
    create_target_group,
    finish_stop,
    past_draining,
    state_change_event,
    targets,
    task,
)

Invoke = Any


def assert_nothing_orphaned(aws: Emulator) -> None:
    """No task of ours alive without its targets; no target without a live task of ours."""
    assert aws.provisioned is not None
    ecs, elbv2 = aws.clients().ecs, aws.clients().elbv2
    for engine, spec in SERVICE_MAPPINGS.items():
        cluster = spec["cluster"]
        arns = ecs.list_tasks(cluster=cluster, startedBy=STARTED_BY, desiredStatus="RUNNING")[
            "taskArns"
        ]
        tasks = (
            ecs.describe_tasks(cluster=cluster, tasks=arns, include=["TAGS"])["tasks"]
            if arns
            else []
        )
        ours = [t for t in tasks if {"key": ENGINE_TAG, "value": engine} in t.get("tags", [])]
        live_ips = {
            d["value"]
            for t in ours
            for d in t["attachments"][0]["details"]
            if d["name"] == "privateIPv4Address"
        }
        health = elbv2.describe_target_health(TargetGroupArn=aws.provisioned.target_groups[engine])
        targets = {t["Target"]["Id"] for t in health["TargetHealthDescriptions"]}
        assert all(t["lastStatus"] == "RUNNING" for t in ours), (
            f"{engine}: a task of ours is stuck starting"
        )
        assert live_ips <= targets, f"{engine}: live task without its target"
        assert targets <= live_ips, f"{engine}: target without a live task"


@pytest.fixture
def throttled(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> Iterator[Counter[str]]:
    """30% of ECS and ELB calls answer ThrottlingException; botocore's backoff sleeps on the
    test clock."""
    rng = random.Random(20261127)
    injected: Counter[str] = Counter()

    def flaky(cls: type, name: str, error: type[Exception], code: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if rng.random() < 0.3:
                injected[name] += 1
                raise error(code, "Rate exceeded")
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    for name in (
        "run_task",
        "describe_tasks",
        "list_tasks",
        "stop_task",
        "describe_task_definition",
    ):
        flaky(EC2ContainerServiceBackend, name, ECSException, "ThrottlingException")
    for name in ("register_targets", "deregister_targets", "describe_target_health"):
        flaky(ELBv2Backend, name, ELBClientError, "Throttling")
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=clock.sleep))
    yield injected


def test_starts_survive_thirty_percent_throttling(
    aws: Emulator, invoke: Invoke, throttled: Counter[str]
) -> None:
    for i, engine in enumerate(sorted(SERVICE_MAPPINGS)):
        response = invoke({**start_event(engine, waitForHealthy=True), "id": f"throttled-{i}"})
        assert response["statusCode"] == 200, response["body"]
        assert response["body"]["healthStatus"] == "healthy"
    assert sum(throttled.values()) >= 20  # the faults really happened, and were retried
    assert {"run_task", "describe_tasks", "describe_target_health"} <= set(throttled)  # ECS and ELB
    assert_nothing_orphaned(aws)


@pytest.mark.parametrize(
    ("reason", "detail"), [("RESOURCE:MEMORY", "no capacity"), ("AGENT", "agent disconnected")]
)
def test_run_task_failures(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch, reason: str, detail: str
) -> None:
    def run_task(response: EC2ContainerServiceResponse) -> ActionResult:
        failure = {
            "arn": "arn:aws:ecs:us-east-2:123456789012:container-instance/x",
            "reason": reason,
            "detail": detail,
        }
        return ActionResult({"tasks": [], "failures": [failure]})

    monkeypatch.setattr(EC2ContainerServiceResponse, "run_task", run_task)
    response = invoke(start_event("auth"))
    assert response["statusCode"] == 500
    body = response["body"]
    assert body["errorType"] == "RunTaskFailed"
    assert reason in body["error"] and detail in body["error"]
    assert body["failures"] == [
        {
            "reason": reason,
            "detail": detail,
            "arn": "arn:aws:ecs:us-east-2:123456789012:container-instance/x",
        }
    ]
    assert aws.clients().ecs.list_tasks(cluster="auth-cluster")["taskArns"] == []
    assert_nothing_orphaned(aws)


def test_task_stops_during_start(aws: Emulator, invoke: Invoke, clock: ManualClock) -> None:
    aws.lifecycle.plan_next(
        dies_after=3.0, exit_code=137, reason="Essential container in task exited"
    )
    body = invoke(start_event("batch"))["body"]
    assert body["errorType"] == "TaskStopped"
    assert body["stoppedReason"] == "Essential container in task exited"
    assert body["exitCodes"] == {"batch-app": 137}
    assert body["cleanedUp"] is True
    assert body["targetsRemoved"]  # it was registered at its IP, before it died
    past_draining(clock)
    assert_nothing_orphaned(aws)


def test_register_fails_because_the_group_was_deleted(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert aws.provisioned is not None
    doomed = create_target_group(aws, "deleted-tg", port=9080)
    monkeypatch.setenv("PDF_TARGET_GROUP_ARN", f"{aws.provisioned.target_groups['pdf']},{doomed}")
    aws.clients().elbv2.delete_target_group(TargetGroupArn=doomed)
    body = invoke(start_event("pdf"))["body"]
    assert body["errorType"] == "TargetGroupNotFound"
    assert body["targetGroupArn"] == doomed
    stopping = task(aws, "pdf-cluster", body["taskArn"])
    assert (stopping["desiredStatus"], stopping["stoppedReason"]) == (
        "STOPPED",
        "start-engines: start failed (TargetGroupNotFound)",
    )
    past_draining(clock)  # the stopped task's target drained
    assert_nothing_orphaned(aws)
    finish_stop(aws, clock)
    assert task(aws, "pdf-cluster", body["taskArn"])["lastStatus"] == "STOPPED"
    assert_nothing_orphaned(aws)


def test_lambda_deadline_mid_wait_answers_in_time_and_stops_the_task(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    aws.lifecycle.plan_next(running_after=120.0)
    began = clock.now()
    response = invoke(start_event("users"), timeout=40)
    assert clock.now() - began < 40  # answered before Lambda's own deadline
    assert response["statusCode"] == 504
    assert response["body"]["cleanedUp"] is True
    stopping = task(aws, "users-cluster", response["body"]["taskArn"])
    assert (stopping["desiredStatus"], stopping["stoppedReason"]) == (
        "STOPPED",
        f"start-engines: start failed ({response['body']['errorType']})",
    )
    past_draining(clock)  # registered at its IP: its target drains
    assert_nothing_orphaned(aws)
    finish_stop(aws, clock)
    assert task(aws, "users-cluster", response["body"]["taskArn"])["lastStatus"] == "STOPPED"
    assert_nothing_orphaned(aws)


def test_deadline_in_async_mode_hands_over_to_the_task_state_entry_point(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    aws.lifecycle.plan_next(running_after=60.0)
    response = invoke(load_event("apigw-v2-start-wait.json"))
    assert response["statusCode"] == 202  # not cleaned up: handed over, as documented
    task_arn = __import__("json").loads(response["body"])["taskArn"]
    clock.advance(60.0)
    lambda_function.task_state_handler(
        state_change_event(aws, "auth-cluster", task_arn), LambdaContext(clock, 60)
    )
    assert_nothing_orphaned(aws)


def test_stop_task_refused_is_a_failed_answer(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke(start_event("fa"))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ECSException("AccessDeniedException", "not authorized to perform ecs:StopTask")

    monkeypatch.setattr(EC2ContainerServiceBackend, "stop_task", refuse)
    response = invoke({"detail-type": "Stop ECS Task", "detail": {"service": "fa"}})
    assert response["statusCode"] == 500
    result = response["body"]["results"][0]
    assert (result["statusCode"], result["status"], result["awsErrorCode"]) == (
        500,
        "failed",
        "AccessDeniedException",
    )
    assert response["body"]["failed"] == 1


def test_a_refused_stop_task_gives_the_task_back_its_targets(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = invoke(start_event("fa"))["body"]

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ECSException("AccessDeniedException", "not authorized to perform ecs:StopTask")

    monkeypatch.setattr(EC2ContainerServiceBackend, "stop_task", refuse)
    response = invoke({"detail-type": "Stop ECS Task", "detail": {"service": "fa"}})
    result = response["body"]["results"][0]
    assert response["statusCode"] == 500
    assert result["tasksNotStopped"] == [
        {
            "taskId": started["taskId"],
            "targetsRestored": [aws.provisioned.target_groups["fa"]],  # type: ignore[union-attr]
            "state": "running, targets restored",
        }
    ]
    described = task(aws, "fa-cluster", started["taskArn"])
    assert "start-engines:stopping" not in {t["key"] for t in described.get("tags", [])}
    assert [t[0] for t in targets(aws, "fa")] == [started["privateIp"]]
    assert_nothing_orphaned(aws)


def test_a_client_token_conflict_on_a_retried_event_is_already_handled(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEASE_TABLE")  # no event record: only ECS's clientToken can tell
    first = invoke({**start_event("users", count=1), "id": "retried"})["body"]

    def conflict(*args: Any, **kwargs: Any) -> Any:
        raise ECSException("ConflictException", "clientToken was used with other parameters")

    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", conflict)
    retry = invoke({**start_event("users", force=True), "id": "retried"})
    assert retry["statusCode"] == 200
    assert retry["body"]["reused"] is True
    assert retry["body"]["taskId"] == first["taskId"]
    assert_nothing_orphaned(aws)


def test_a_client_token_conflict_with_nothing_running_is_a_failure(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    def conflict(*args: Any, **kwargs: Any) -> Any:
        raise ECSException("ConflictException", "clientToken was used with other parameters")

    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", conflict)
    response = invoke(start_event("users"))
    assert (response["statusCode"], response["body"]["errorType"]) == (500, "RunTaskConflict")
