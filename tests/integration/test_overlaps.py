"""Overlaps an adversarial review of the ownership design found broken; each is pinned here as
it must behave now. Interleavings are deterministic: checkpoints or a narrowly patched
handler method run the second operation at a precise moment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from start_engines import checkpoints
from start_engines.ecs_handler import STOPPING_TAG, ECSHandler
from start_engines.errors import AwsError, StoppedDuringStart
from start_engines.local import Emulator, ManualClock
from start_engines.target_group_handler import TargetGroupHandler
from tests.conftest import start_event
from tests.integration.helpers import (
    lease,
    live_tasks,
    mutations,
    reap_event,
    settle_and_check_owners,
    state_change_event,
    stop_event,
    sync_event,
    targets,
    task,
)

Invoke = Any
MINUTE = 60.0


def api_start(service: str, request_id: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": f"/engines/{service}/start",
        "requestContext": {"http": {"method": "POST"}, "requestId": request_id},
        "body": "",
    }


def tags(aws: Emulator, cluster: str, arn: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in task(aws, cluster, arn).get("tags", [])}


@pytest.fixture
def idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_IDLE_MINUTES", "30")
    monkeypatch.setenv("AUTH_MIN_UPTIME_MINUTES", "10")


def throttle_first_deregistration(monkeypatch: pytest.MonkeyPatch) -> None:
    real = TargetGroupHandler.deregister_target
    calls: list[int] = []

    def deregister_target(self: TargetGroupHandler, *args: Any, **kwargs: Any) -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            raise AwsError("DeregisterTargets failed (Throttling): Rate exceeded")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TargetGroupHandler, "deregister_target", deregister_target)


# --- a handed-off (API) start's claim -------------------------------------------------------


def test_a_stop_ends_a_handed_off_claim_so_the_next_api_start_runs_a_task(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    first = invoke({"action": "start", "service": "auth", "async": True})
    assert first["statusCode"] == 202
    invoke(stop_event("auth"))
    assert lease(aws).holder("auth") is None
    answer = invoke(api_start("auth", "after-stop"))
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 202
    assert body["taskArn"] != first["body"]["taskArn"]
    assert len(mutations(aws, "RunTask")) == 2
    clock.advance(10)
    assert deliver(state_change_event(aws, "auth-cluster", body["taskArn"]))["body"]["action"] == (
        "registered"
    )
    settle_and_check_owners(aws, deliver, clock)


def test_a_start_after_stopping_a_handed_off_engine_is_not_blocked(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    invoke({"action": "start", "service": "auth", "async": True})
    invoke(stop_event("auth"))
    before = clock.now()
    answer = invoke({**start_event("auth"), "id": "after-stop"})
    assert answer["statusCode"] == 200
    assert clock.now() - before < 30.0
    settle_and_check_owners(aws, deliver, clock)


def test_an_api_start_while_a_reap_holds_the_engine_answers_busy(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    idle: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    invoke(start_event("auth"))
    clock.advance(40 * MINUTE)
    from start_engines.engines import reap as reap_module

    real_claim = reap_module.stop_claim
    answers: list[dict[str, Any]] = []

    def claim_with_an_api_start(*args: Any, **kwargs: Any) -> Any:
        answers.append(invoke(api_start("auth", "during-reap")))
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(reap_module, "stop_claim", claim_with_an_api_start)
    invoke(reap_event())
    assert answers[0]["statusCode"] == 503
    body = json.loads(answers[0]["body"])
    assert body["errorType"] == "EngineBusy"
    assert body["retryAfterSeconds"] >= 1
    assert len(mutations(aws, "RunTask")) == 1
    settle_and_check_owners(aws, deliver, clock)


def test_an_async_start_stopped_right_after_run_task_answers_stopped_during_start(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    with (
        checkpoints.at("start.after-run-task", lambda _: invoke(stop_event("auth"))),
        pytest.raises(StoppedDuringStart),  # direct invoke raises the typed error
    ):
        invoke({"action": "start", "service": "auth", "async": True})
    assert lease(aws).holder("auth") is None
    settle_and_check_owners(aws, deliver, clock)


# --- a live start's claim is its own ------------------------------------------------------


@pytest.mark.parametrize("stopped", [False, True])
def test_a_task_event_never_ends_a_live_starts_claim(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, stopped: bool
) -> None:
    started = invoke(start_event("batch"))["body"]
    claim = lease(aws)
    claim.acquire("batch", "live-holder", clock.wall(), 10.0)
    claim.record_tasks("batch", "live-holder", [started["taskArn"]])
    if stopped:
        aws.lifecycle.kill(started["taskArn"])
    deliver(state_change_event(aws, "batch-cluster", started["taskArn"]))
    holder = claim.holder("batch")
    assert holder is not None
    assert holder.owner == "live-holder"


# --- a claim made half-way is no claim ------------------------------------------------------


def test_a_reap_whose_deregistration_fails_gives_the_task_back(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    idle: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = invoke(start_event("auth"))["body"]
    clock.advance(40 * MINUTE)
    throttle_first_deregistration(monkeypatch)
    failed = invoke(reap_event(services=["auth"]))["body"]["results"][0]
    assert failed["action"] == "failed"
    assert STOPPING_TAG not in tags(aws, "auth-cluster", old["taskArn"])
    assert [t[0] for t in targets(aws, "auth")] == [old["privateIp"]]
    again = invoke(reap_event(services=["auth"]))["body"]["results"][0]  # the next reap works
    assert (again["action"], again["taskIds"]) == ("stopped", [old["taskId"]])
    settle_and_check_owners(aws, deliver, clock)


def test_a_failed_stop_names_its_engine_and_gives_the_task_back(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = invoke(start_event("pdf"))["body"]
    throttle_first_deregistration(monkeypatch)
    result = invoke(stop_event("pdf"))["body"]["results"][0]
    assert (result["status"], result["service"]) == ("failed", "pdf")
    assert STOPPING_TAG not in tags(aws, "pdf-cluster", old["taskArn"])
    assert live_tasks(aws, "pdf-cluster") == [old["taskArn"]]


def test_sync_finishes_a_stop_whose_invocation_died_after_its_claim(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    old = invoke(start_event("fa"))["body"]
    ecs = aws.clients().ecs
    claimed_at = clock.wall().isoformat()
    ecs.tag_resource(  # a stop's claim, then its Lambda died before StopTask
        resourceArn=old["taskArn"], tags=[{"key": STOPPING_TAG, "value": f"{claimed_at} night"}]
    )
    clock.advance(16 * MINUTE)
    result = invoke(sync_event(service="fa"))["body"]["results"][0]
    assert result["stopsFinished"] == [old["taskId"]]
    assert task(aws, "fa-cluster", old["taskArn"])["stoppedReason"] == "night"
    settle_and_check_owners(aws, deliver, clock)


def test_a_refused_stop_task_does_not_give_back_a_task_another_stop_stopped(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.lifecycle.drain_seconds = 15.0
    old = invoke(start_event("auth"))["body"]
    real = ECSHandler.stop_task
    calls: list[int] = []

    def stop_task(self: ECSHandler, cluster: str, arn: str, reason: str) -> bool:
        calls.append(1)
        if len(calls) == 2:  # the outer stop's own StopTask
            raise AwsError("StopTask failed (ThrottlingException): Rate exceeded")
        return real(self, cluster, arn, reason)

    monkeypatch.setattr(ECSHandler, "stop_task", stop_task)
    with checkpoints.at("stop.drain", lambda _: invoke(stop_event("auth"))):
        outer = invoke(stop_event("auth", waitForDraining=True))
    left = outer["body"]["results"][0]["tasksNotStopped"]
    assert left == [
        {"taskId": old["taskId"], "targetsRestored": [], "state": "stopped by another operation"}
    ]
    assert [t for t in targets(aws, "auth") if t[2] != "draining"] == []
    assert STOPPING_TAG in tags(aws, "auth-cluster", old["taskArn"])
    settle_and_check_owners(aws, deliver, clock)


# --- a failed start claims its own task before taking it out ---------------------------


def test_a_sync_during_a_failed_starts_cleanup_does_not_register_its_task(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTH_TIMEOUT_SECONDS", "5")  # healthy needs 10 s: the start fails
    real = TargetGroupHandler.deregister_target
    synced: list[dict[str, Any]] = []

    def deregister_target(self: TargetGroupHandler, *args: Any, **kwargs: Any) -> list[str]:
        done = real(self, *args, **kwargs)
        if not synced:
            synced.append(invoke(sync_event(service="users")))
        return done

    monkeypatch.setattr(TargetGroupHandler, "deregister_target", deregister_target)
    answer = invoke(start_event("users", waitForHealthy=True))
    assert answer["statusCode"] == 504
    assert synced[0]["body"]["results"][0]["registered"] == []
    assert [t for t in targets(aws, "users") if t[2] != "draining"] == []
    monkeypatch.setattr(TargetGroupHandler, "deregister_target", real)
    settle_and_check_owners(aws, deliver, clock)


def test_a_start_during_a_failed_starts_cleanup_is_not_told_its_task_runs(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTH_TIMEOUT_SECONDS", "5")
    real = TargetGroupHandler.deregister_target
    followers: list[dict[str, Any]] = []

    def deregister_target(self: TargetGroupHandler, *args: Any, **kwargs: Any) -> list[str]:
        if not followers:
            followers.append(invoke({**start_event("fa"), "id": "follower"}))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TargetGroupHandler, "deregister_target", deregister_target)
    holder = invoke(start_event("fa", waitForHealthy=True))
    assert holder["statusCode"] == 504
    # the holder's task is claimed before its cleanup: the follower does not adopt it; the
    # holder is frozen here, so its claim lapses and the follower starts a task of its own
    follower = followers[0]["body"]
    assert followers[0]["statusCode"] == 200
    assert follower["taskArn"] != holder["body"]["taskArn"]
    assert task(aws, "fa-cluster", follower["taskArn"])["desiredStatus"] == "RUNNING"
    assert task(aws, "fa-cluster", holder["body"]["taskArn"])["desiredStatus"] == "STOPPED"
    monkeypatch.setattr(TargetGroupHandler, "deregister_target", real)
    settle_and_check_owners(aws, deliver, clock)


# --- the rest ----------------------------------------------------------------------------


def test_max_lifetime_is_not_renewed_by_starts_that_reuse_the_task(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_MAX_LIFETIME_HOURS", "1")
    monkeypatch.setenv("AUTH_IDLE_MINUTES", "off")
    first = invoke(start_event("auth"))["body"]
    for i in range(3):
        clock.advance(25 * MINUTE)
        assert invoke({**start_event("auth"), "id": f"use-{i}"})["body"]["reused"] is True
    decisions = invoke(reap_event(services=["auth"]))["body"]["results"]
    lifetime = [d for d in decisions if d["reason"] == "max lifetime"]
    assert lifetime[0]["action"] == "stopped"
    assert lifetime[0]["taskIds"] == [first["taskId"]]


def test_a_redelivered_force_event_that_waited_for_the_claim_starts_nothing_more(
    aws: Emulator, invoke: Invoke
) -> None:
    event = {**start_event("batch", force=True), "id": "evt-dup"}
    first: list[dict[str, Any]] = []
    claim = lease(aws)
    assert aws.provisioned is not None
    claim.acquire("batch", "first-delivery", aws.lifecycle.time.wall(), 10.0)

    def first_delivery(_: dict[str, Any]) -> None:
        claim.release("batch", "first-delivery")
        first.append(invoke(event))

    with checkpoints.at("start.follow", first_delivery):
        again = invoke(event)
    assert again["statusCode"] == 200
    assert again["body"]["taskArn"] == first[0]["body"]["taskArn"]
    assert len(mutations(aws, "RunTask")) == 1


def test_a_running_event_for_a_task_not_visible_yet_changes_nothing(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    started = invoke(start_event("auth"))["body"]
    event = state_change_event(aws, "auth-cluster", started["taskArn"])
    plan = aws.lifecycle.plans[started["taskArn"]]
    plan.invisible_for = float("inf")  # DescribeTasks answers MISSING from now on
    answer = deliver(event)["body"]
    assert (answer["action"], answer["reason"]) == ("none", "the task is not visible yet")
    assert [t[0] for t in targets(aws, "auth")] == [started["privateIp"]]
    plan.invisible_for = 0.0


def test_an_ecs_event_from_a_cluster_of_no_engine_is_ignored(aws: Emulator, deliver: Any) -> None:
    event = {
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "detail": {
            "taskArn": "arn:aws:ecs:us-east-2:123456789012:task/nowhere/0123",
            "clusterArn": "arn:aws:ecs:us-east-2:123456789012:cluster/nowhere",
            "lastStatus": "RUNNING",
            "desiredStatus": "RUNNING",
            "startedBy": "start-engines",
            "taskDefinitionArn": "arn:aws:ecs:us-east-2:123456789012:task-definition/x:1",
            "version": 1,
        },
    }
    answer = deliver(event)
    assert answer["statusCode"] == 200
    assert answer["body"]["action"] == "ignored"
    assert aws.lifecycle.mutations == []
