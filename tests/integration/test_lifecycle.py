"""Stop, status, reuse, one start per engine, several engines, reconcile and sync."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from start_engines import lambda_function
from start_engines.config import load_settings
from start_engines.local import Emulator, ManualClock
from start_engines.local.context import LambdaContext
from tests.conftest import start_event
from tests.integration.helpers import (
    behind_a_network_load_balancer,
    create_target_group,
    finish_stop,
    live_tasks,
    mutations,
    past_draining,
    run_foreign_task,
    state_change_event,
    targets,
    task,
)

Invoke = Any


def event(detail_type: str, **detail: Any) -> dict[str, Any]:
    return {"id": "lifecycle", "source": "custom.app", "detail-type": detail_type, "detail": detail}


def by_service(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["service"]: result for result in body["results"]}


# --- stop ------------------------------------------------------------------------------


def test_stop_deregisters_first_then_stops_only_ours(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    started = invoke(start_event("auth"))["body"]
    foreign = run_foreign_task(aws, "auth-cluster", "auth-api-task")
    aws.lifecycle.mutations.clear()

    response = invoke(event("Stop ECS Task", service="auth"))

    assert response["statusCode"] == 200
    result = by_service(response["body"])["auth"]
    assert result["status"] == "stopped"
    assert result["tasksStopped"] == 1
    assert result["taskIds"] == [started["taskId"]]
    assert result["targetsDeregistered"] == 1
    assert response["body"]["tasksStopped"] == 1
    assert response["body"]["targetsDeregistered"] == 1
    kinds = [kind for kind, _ in aws.lifecycle.mutations]
    assert kinds == ["DeregisterTargets", "StopTask"]
    stopping = task(aws, "auth-cluster", started["taskArn"])
    assert (stopping["desiredStatus"], stopping["stoppedReason"]) == (
        "STOPPED",
        "stopped by start-engines",
    )
    assert live_tasks(aws, "auth-cluster") == [foreign]
    finish_stop(aws, clock)
    assert task(aws, "auth-cluster", started["taskArn"])["lastStatus"] == "STOPPED"
    assert (
        task(aws, "auth-cluster", started["taskArn"])["stoppedReason"] == "stopped by start-engines"
    )
    past_draining(clock)
    assert targets(aws, "auth") == []
    assert live_tasks(aws, "auth-cluster") == [foreign]


def test_stop_include_foreign(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDF_ALLOW_INCLUDE_FOREIGN", "true")
    foreign = run_foreign_task(aws, "pdf-cluster", "pdf-creator-task")
    other_family = run_foreign_task(aws, "pdf-cluster", "auth-api-task")
    response = invoke(event("Stop ECS Tasks", service="pdf", includeForeign=True, reason="night"))
    result = by_service(response["body"])["pdf"]
    assert result["taskIds"] == [foreign.rsplit("/", 1)[1]]
    assert task(aws, "pdf-cluster", foreign)["stoppedReason"] == "night"
    assert live_tasks(aws, "pdf-cluster") == [other_family]


@pytest.mark.parametrize(("detail", "refusing"), [({"service": "pdf"}, "PDF"), ({}, "BATCH")])
def test_include_foreign_is_refused_unless_the_engine_allows_it(
    aws: Emulator,
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    detail: dict[str, Any],
    refusing: str,
) -> None:
    monkeypatch.setenv("AUTH_ALLOW_INCLUDE_FOREIGN", "true")  # one engine allowing is not enough
    foreign = run_foreign_task(aws, "pdf-cluster", "pdf-creator-task")
    ours = invoke(start_event("pdf"))["body"]
    aws.lifecycle.mutations.clear()
    response = invoke(event("Stop ECS Tasks", includeForeign=True, **detail))
    assert response["statusCode"] == 400
    assert response["body"]["errorType"] == "ForeignNotAllowed"
    assert response["body"]["field"] == "includeForeign"
    assert f"{refusing}_ALLOW_INCLUDE_FOREIGN=true" in response["body"]["error"]
    assert aws.lifecycle.mutations == []
    assert sorted(live_tasks(aws, "pdf-cluster")) == sorted([foreign, ours["taskArn"]])


def test_stop_one_task_by_id(aws: Emulator, invoke: Invoke) -> None:
    first = invoke(start_event("auth"))["body"]
    second = invoke({**start_event("auth", force=True), "id": "second"})["body"]
    assert first["taskId"] != second["taskId"]
    response = invoke(event("Stop ECS Task", service="auth", taskId=second["taskId"]))
    assert by_service(response["body"])["auth"]["taskIds"] == [second["taskId"]]
    assert live_tasks(aws, "auth-cluster") == [first["taskArn"]]
    assert targets(aws, "auth") == [
        (first["privateIp"], 8080, "initial"),
        (second["privateIp"], 8080, "draining"),  # for the group's deregistration delay
    ]


def test_stop_unknown_task_id_is_404(aws: Emulator, invoke: Invoke) -> None:
    invoke(start_event("auth"))
    response = invoke(event("Stop ECS Task", service="auth", taskId="0123456789abcdef"))
    assert response["statusCode"] == 404
    assert by_service(response["body"])["auth"]["errorType"] == "NoSuchTask"
    assert len(live_tasks(aws, "auth-cluster")) == 1


def test_stop_every_engine(aws: Emulator, invoke: Invoke) -> None:
    invoke(start_event("auth"))
    invoke({**start_event("batch"), "id": "batch-event"})
    response = invoke(event("Stop ECS Task"))
    results = by_service(response["body"])
    assert set(results) == {"auth", "batch", "fa", "pdf", "users"}
    assert results["auth"]["status"] == results["batch"]["status"] == "stopped"
    assert results["fa"]["status"] == "nothing-to-stop"
    assert response["body"]["tasksStopped"] == 2
    assert live_tasks(aws, "auth-cluster") == live_tasks(aws, "batch-cluster") == []


def test_stop_waits_for_draining(aws: Emulator, invoke: Invoke, clock: ManualClock) -> None:
    aws.lifecycle.drain_seconds = 8.0
    started = invoke(start_event("users"))["body"]
    aws.lifecycle.mutations.clear()
    before = clock.now()
    response = invoke(event("Stop ECS Task", service="users", waitForDraining=True))
    assert response["statusCode"] == 200
    assert clock.now() - before >= 8.0  # StopTask only after the target left `draining`
    assert [kind for kind, _ in aws.lifecycle.mutations] == ["DeregisterTargets", "StopTask"]
    stopping = task(aws, "users-cluster", started["taskArn"])
    assert (stopping["desiredStatus"], stopping["stoppedReason"]) == (
        "STOPPED",
        "stopped by start-engines",
    )
    finish_stop(aws, clock)
    assert task(aws, "users-cluster", started["taskArn"])["lastStatus"] == "STOPPED"


def test_stop_unknown_engine_stops_nothing(aws: Emulator, invoke: Invoke) -> None:
    invoke(start_event("auth"))
    aws.lifecycle.mutations.clear()
    response = invoke(event("Stop ECS Task", services=["auth", "nope"]))
    assert response["statusCode"] == 400
    assert response["body"]["errorType"] == "UnknownEngine"
    assert aws.lifecycle.mutations == []


# --- status ----------------------------------------------------------------------------


def test_status(aws: Emulator, invoke: Invoke) -> None:
    started = invoke(start_event("auth", waitForHealthy=True))["body"]
    invoke({**start_event("pdf"), "id": "pdf-event"})
    response = invoke(event("ECS Task Status", services=["auth", "pdf"]))
    assert response["statusCode"] == 200
    results = by_service(response["body"])
    auth = results["auth"]
    assert auth["ready"] is True
    assert [t["taskId"] for t in auth["tasks"]] == [started["taskId"]]
    assert auth["tasks"][0]["lastStatus"] == "RUNNING"
    assert auth["tasks"][0]["privateIp"] == started["privateIp"]
    assert auth["tasks"][0]["ageSeconds"] >= 14.0
    assert auth["targetGroups"][0]["targets"] == [
        {"ip": started["privateIp"], "port": 8080, "state": "healthy", "reason": None}
    ]
    assert results["pdf"]["ready"] is False  # registered, health checks still `initial`
    assert results["pdf"]["targetGroups"][0]["targets"][0]["state"] == "initial"


def test_status_of_every_engine_and_as_action(aws: Emulator, invoke: Invoke) -> None:
    response = invoke({"action": "status"})
    results = by_service(response["body"])
    assert set(results) == {"auth", "batch", "fa", "pdf", "users"}
    assert all(r["ready"] is False and r["tasks"] == [] for r in results.values())


# --- reuse -----------------------------------------------------------------------------


def test_second_start_reuses_the_live_task(aws: Emulator, invoke: Invoke) -> None:
    first = invoke(start_event("fa"))["body"]
    aws.clients().elbv2.deregister_targets(
        TargetGroupArn=first["targetGroupArn"], Targets=[{"Id": first["privateIp"], "Port": 2531}]
    )
    second = invoke({**start_event("fa"), "id": "another-event"})
    assert second["statusCode"] == 200
    assert second["body"]["taskId"] == first["taskId"]
    assert second["body"]["reused"] is True
    assert len(live_tasks(aws, "fa-cluster")) == 1
    assert targets(aws, "fa") == [(first["privateIp"], 2531, "initial")]  # registered again


def test_count_and_force_add_capacity_up_to_max_tasks(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_MAX_TASKS", "3")
    invoke(start_event("batch"))
    two = invoke({**start_event("batch", count=2), "id": "e2"})
    assert two["statusCode"] == 200
    assert len(two["body"]["tasks"]) == 2
    assert len(live_tasks(aws, "batch-cluster")) == 2
    three = invoke({**start_event("batch", force=True), "id": "e3"})
    assert three["statusCode"] == 200
    assert len(live_tasks(aws, "batch-cluster")) == 3
    assert len(targets(aws, "batch")) == 3
    aws.lifecycle.mutations.clear()
    refused = invoke({**start_event("batch", force=True), "id": "e4"})
    assert refused["statusCode"] == 400
    assert refused["body"]["field"] == "force"
    too_many = invoke({**start_event("batch", count=4), "id": "e5"})
    assert too_many["statusCode"] == 400
    assert too_many["body"]["field"] == "count"
    assert mutations(aws, "RunTask") == []


# --- one start in flight per engine ----------------------------------------------------


def test_twenty_concurrent_starts_give_one_task(aws: Emulator, clock: ManualClock) -> None:
    lambda_function.use_runtime(lambda_function.Runtime(aws.clients(), clock))
    try:

        def call(i: int) -> dict[str, Any]:
            return lambda_function.lambda_handler(
                {**start_event("users"), "id": f"concurrent-{i}"}, LambdaContext(clock, 900)
            )

        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(call, range(20)))
    finally:
        lambda_function.use_runtime(None)
    assert [r["statusCode"] for r in responses] == [200] * 20
    assert len({r["body"]["taskId"] for r in responses}) == 1
    assert len(mutations(aws, "RunTask")) == 1
    assert len(live_tasks(aws, "users-cluster")) == 1
    assert sum(1 for r in responses if not r["body"]["reused"]) == 1


def test_redelivered_event_starts_nothing_more(aws: Emulator, invoke: Invoke) -> None:
    delivered = {**start_event("pdf", force=True), "id": "once-only"}
    first = invoke(delivered)
    again = invoke(delivered)
    assert first["statusCode"] == again["statusCode"] == 200
    assert again["body"]["taskId"] == first["body"]["taskId"]
    assert len(mutations(aws, "RunTask")) == 1
    assert len(live_tasks(aws, "pdf-cluster")) == 1


def test_a_redelivered_event_for_several_engines_starts_nothing_more(
    aws: Emulator, invoke: Invoke
) -> None:
    """The event records of all its engines are read together: each engine's own decides."""
    services = ["pdf", "fa", "users"]
    delivered = {
        **start_event(None),
        "id": "several-once",
        "detail": {"services": services, "force": True},
    }
    first = invoke(delivered)
    again = invoke(delivered)
    assert first["statusCode"] == again["statusCode"] == 200, again
    tasks = [{r["service"]: r["taskId"] for r in a["body"]["results"]} for a in (first, again)]
    assert tasks[0] == tasks[1]
    assert len(mutations(aws, "RunTask")) == len(services)
    assert all(r["reused"] for r in again["body"]["results"])


def test_without_a_lease_table_the_result_says_so(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEASE_TABLE")
    body = invoke(start_event("auth"))["body"]
    assert body["serialised"] is False
    assert "not serialised" in body["warning"]


def test_a_failed_start_is_reported_to_concurrent_followers(
    aws: Emulator, clock: ManualClock
) -> None:
    aws.lifecycle.plan_next(dies_after=2.0)
    lambda_function.use_runtime(lambda_function.Runtime(aws.clients(), clock))
    try:
        with ThreadPoolExecutor(max_workers=5) as pool:
            responses = list(
                pool.map(
                    lambda i: lambda_function.lambda_handler(
                        {**start_event("fa"), "id": f"f-{i}"}, LambdaContext(clock, 900)
                    ),
                    range(5),
                )
            )
    finally:
        lambda_function.use_runtime(None)
    types = sorted(r["body"]["errorType"] for r in responses)
    assert types.count("TaskStopped") >= 1
    assert set(types) <= {"TaskStopped", "StartFailedElsewhere"}
    assert len(mutations(aws, "RunTask")) == 1  # no retry storm
    assert live_tasks(aws, "fa-cluster") == []
    assert all(state == "draining" for _, _, state in targets(aws, "fa"))
    past_draining(clock)  # however far the five starts' sleeps moved the shared clock
    assert targets(aws, "fa") == []


def test_a_refusal_in_the_cooldown_says_whose_start_failed(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    aws.lifecycle.plan_next("fa-cluster", dies_after=1.0)
    failed = invoke({**start_event("fa", requester="ana@laptop"), "id": "first"})
    assert failed["body"]["errorType"] == "TaskStopped"
    clock.advance(3)
    own = invoke({**start_event("fa", requester="ana@laptop"), "id": "again"})["body"]
    assert own["error"].startswith("your own earlier start of 'fa' failed 3 s ago: task ")
    assert (own["failedBy"], own["retryAfterSeconds"]) == ("you", 7)  # a 10 s cooldown
    other = invoke({**start_event("fa", requester="ci@build-7"), "id": "other"})["body"]
    assert other["error"].startswith("another caller's start of 'fa' failed 3 s ago")
    unknown = invoke({**start_event("fa"), "id": "unknown"})["body"]
    assert (unknown["failedBy"], unknown["error"][:16]) == ("unknown", "a start of 'fa' ")


def test_a_start_refused_before_anything_ran_does_not_hold_others_off(
    aws: Emulator, invoke: Invoke
) -> None:
    invoke(start_event("batch"))
    invoke({**start_event("batch", force=True), "id": "second"})
    refused = invoke({**start_event("batch", force=True), "id": "third"})  # past maxTasks 2
    assert (refused["statusCode"], refused["body"]["field"]) == (400, "force")
    after = invoke({**start_event("batch"), "id": "fourth"})
    assert after["statusCode"] == 200
    assert after["body"]["reused"] is True


# --- several engines in one event ------------------------------------------------------


def test_several_engines_one_describe_per_cluster(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDF_CLUSTER", "auth-cluster")  # two engines share a cluster
    response = invoke(start_event(None) | {"detail": {"services": ["auth", "pdf", "fa"]}})
    assert response["statusCode"] == 200
    results = by_service(response["body"])
    assert set(results) == {"auth", "pdf", "fa"}
    assert all(r["statusCode"] == 200 for r in results.values())
    assert response["body"]["succeeded"] == 3
    launched_at = aws.lifecycle.describe_calls[0][0]
    polls = [
        call for call in aws.lifecycle.describe_calls if call[0] > launched_at
    ]  # not the launch
    # every DescribeTasks poll on the shared cluster carries both engines' tasks
    assert [count for _, cluster, count in polls if cluster == "auth-cluster"] == [2] * sum(
        1 for _, cluster, _ in polls if cluster == "auth-cluster"
    )
    assert {cluster for _, cluster, _ in polls} == {"auth-cluster", "fa-cluster"}
    elapsed = polls[-1][0] - polls[0][0]
    rate = load_settings().describe_rate  # DESCRIBE_TASKS_PER_SECOND
    assert len(polls) <= 1 + rate * elapsed  # within the per-invocation DescribeTasks budget
    times = [at for at, _, _ in polls]
    assert all(sum(1 for t in times if at <= t < at + 1.0) <= rate for at in times)


def test_one_failure_does_not_stop_the_others(aws: Emulator, invoke: Invoke) -> None:
    aws.lifecycle.plan_next("pdf-cluster", dies_after=1.5)
    response = invoke(start_event(None) | {"detail": {"services": ["auth", "pdf"]}})
    assert response["statusCode"] == 207
    results = by_service(response["body"])
    assert results["auth"]["statusCode"] == 200
    assert results["pdf"]["statusCode"] == 500
    assert results["pdf"]["errorType"] == "TaskStopped"
    assert results["pdf"]["cleanedUp"] is True
    assert len(live_tasks(aws, "auth-cluster")) == 1
    assert live_tasks(aws, "pdf-cluster") == []
    assert response["body"]["failed"] == 1


# --- reconcile from ECS events ---------------------------------------------------------


def state_change(aws: Emulator, clock: ManualClock, event: dict[str, Any]) -> dict[str, Any]:
    previous = lambda_function._runtime  # `invoke`'s, if the test has one: keep its clock
    lambda_function.use_runtime(lambda_function.Runtime(aws.clients(), clock))
    try:
        return lambda_function.task_state_handler(event, LambdaContext(clock, 60))
    finally:
        lambda_function.use_runtime(previous)


def test_task_killed_outside_then_stopped_event_leaves_no_target(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    started = invoke(start_event("auth"))["body"]
    aws.lifecycle.kill(started["taskArn"], reason="OutOfMemoryError: Container killed")
    stopped = state_change_event(aws, "auth-cluster", started["taskArn"])
    assert stopped["detail"]["lastStatus"] == "STOPPED"
    response = state_change(aws, clock, stopped)
    assert response["body"]["action"] == "deregistered"
    past_draining(clock)
    assert targets(aws, "auth") == []
    again = state_change(aws, clock, stopped)  # delivered twice
    assert again["body"]["action"] == "already-deregistered"


def test_running_event_registers_a_missing_target(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    started = invoke(start_event("users"))["body"]
    aws.clients().elbv2.deregister_targets(
        TargetGroupArn=started["targetGroupArn"],
        Targets=[{"Id": started["privateIp"], "Port": 8080}],
    )
    response = state_change(
        aws, clock, state_change_event(aws, "users-cluster", started["taskArn"])
    )
    assert response["body"]["action"] == "registered"
    assert targets(aws, "users") == [(started["privateIp"], 8080, "initial")]
    again = state_change(aws, clock, state_change_event(aws, "users-cluster", started["taskArn"]))
    assert again["body"]["action"] == "already-registered"


def test_late_running_event_after_stop_does_not_register(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    started = invoke(start_event("pdf"))["body"]
    running = state_change_event(aws, "pdf-cluster", started["taskArn"])
    aws.lifecycle.kill(started["taskArn"])
    response = state_change(aws, clock, running)  # arrives after the task died
    assert response["body"]["lastStatus"] == "STOPPED"
    assert response["body"]["action"] == "deregistered"
    past_draining(clock)
    assert targets(aws, "pdf") == []


def test_tasks_not_ours_are_ignored(aws: Emulator, clock: ManualClock) -> None:
    foreign = run_foreign_task(aws, "auth-cluster", "auth-api-task")
    aws.lifecycle.mutations.clear()
    response = state_change(aws, clock, state_change_event(aws, "auth-cluster", foreign))
    assert response["statusCode"] == 200
    assert response["body"]["action"] == "ignored"
    assert aws.lifecycle.mutations == []


def test_task_state_entry_point_refuses_other_events(aws: Emulator, clock: ManualClock) -> None:
    response = state_change(aws, clock, start_event("auth"))
    assert response["statusCode"] == 400
    assert aws.lifecycle.mutations == []


# --- sync ------------------------------------------------------------------------------


def test_sync_removes_stale_and_registers_missing(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    dead = invoke(start_event("auth"))["body"]
    aws.lifecycle.kill(dead["taskArn"])  # dies; its STOPPED event never arrives
    started = invoke({**start_event("auth"), "id": "second"})["body"]
    arn = started["targetGroupArn"]
    elbv2 = aws.clients().elbv2
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.9.9", "Port": 8080}])
    elbv2.deregister_targets(
        TargetGroupArn=arn, Targets=[{"Id": started["privateIp"], "Port": 8080}]
    )

    response = invoke(event("Sync Target Groups", service="auth"))

    result = by_service(response["body"])["auth"]
    assert result["status"] == "changed"
    assert [(c["ip"], c["port"]) for c in result["deregistered"]] == [(dead["privateIp"], 8080)]
    assert [(c["ip"], c["port"]) for c in result["registered"]] == [(started["privateIp"], 8080)]
    # a target of no task of ours (an ECS service sharing the group, say) is left alone
    assert [(c["ip"], c["port"]) for c in result["foreign"]] == [("10.0.9.9", 8080)]
    assert response["body"]["changes"] == 2
    past_draining(clock)  # the dead task's target drained
    assert sorted(t[:2] for t in targets(aws, "auth")) == sorted(
        [(started["privateIp"], 8080), ("10.0.9.9", 8080)]
    )
    second = invoke({"action": "sync", "service": "auth"})
    assert by_service(second["body"])["auth"]["status"] == "in-sync"


# --- several target groups per engine ---------------------------------------------------


def test_every_operation_acts_on_every_target_group(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert aws.provisioned is not None
    alb = aws.provisioned.target_groups["fa"]
    nlb = create_target_group(aws, "fa-nlb-tg", port=2531, protocol="TCP")
    behind_a_network_load_balancer(aws, nlb, 2531)
    monkeypatch.setenv("FA_TARGET_GROUP_ARN", f"{alb},{nlb}")
    started = invoke(start_event("fa"))["body"]
    ip = started["privateIp"]
    assert targets(aws, "fa", nlb) == [(ip, 2531, "initial")]

    aws.clients().elbv2.deregister_targets(TargetGroupArn=nlb, Targets=[{"Id": ip, "Port": 2531}])
    reconciled = state_change(aws, clock, state_change_event(aws, "fa-cluster", started["taskArn"]))
    assert reconciled["body"]["targetGroupArns"] == [nlb]

    dead = invoke({**start_event("fa", force=True), "id": "second"})["body"]
    aws.lifecycle.kill(dead["taskArn"])  # its targets stay until sync
    aws.clients().elbv2.register_targets(
        TargetGroupArn=nlb, Targets=[{"Id": "10.1.1.1", "Port": 2531}]
    )
    synced = by_service(invoke({"action": "sync", "service": "fa"})["body"])["fa"]
    removed = [(c["ip"], c["targetGroupArn"]) for c in synced["deregistered"]]
    assert removed == [(dead["privateIp"], alb), (dead["privateIp"], nlb)]
    assert [(c["ip"], c["targetGroupArn"]) for c in synced["foreign"]] == [("10.1.1.1", nlb)]
    aws.clients().elbv2.deregister_targets(
        TargetGroupArn=nlb, Targets=[{"Id": "10.1.1.1", "Port": 2531}]
    )

    status = by_service(invoke({"action": "status", "service": "fa"})["body"])["fa"]
    assert [g["targetGroupArn"] for g in status["targetGroups"]] == [alb, nlb]

    stopped = by_service(invoke(event("Stop ECS Task", service="fa"))["body"])["fa"]
    assert stopped["targetsDeregistered"] == 2
    past_draining(clock)
    assert targets(aws, "fa", alb) == targets(aws, "fa", nlb) == []
