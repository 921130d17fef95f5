"""The emulator's own ECS model, through the ECS API: StopTask's slow, realistic walk to
STOPPED, and tasks DescribeTasks and ListTasks do not see yet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from start_engines.local.lifecycle import STOP_STEP_SECONDS
from start_engines.local.provision import HEALTH_CHECK_INTERVAL
from tests.conftest import START_SECONDS, STOP_SECONDS
from tests.integration.helpers import finish_stop, run_foreign_task, targets

if TYPE_CHECKING:
    from start_engines.local import Emulator, ManualClock

CLUSTER = "auth-cluster"
FAMILY = "auth-api-task"
# Clock readings in the middle of each stop phase, never on a boundary.
GRACE_MIDDLE = STOP_SECONDS / 2
DEACTIVATING_MIDDLE = STOP_SECONDS + STOP_STEP_SECONDS / 2


def describe(aws: Emulator, *arns: str) -> dict[str, Any]:
    found: dict[str, Any] = aws.clients().ecs.describe_tasks(cluster=CLUSTER, tasks=list(arns))
    return found


def one(aws: Emulator, arn: str) -> dict[str, Any]:
    (found,) = describe(aws, arn)["tasks"]
    result: dict[str, Any] = found
    return result


def listed(aws: Emulator, desired: str = "RUNNING") -> list[str]:
    arns: list[str] = aws.clients().ecs.list_tasks(cluster=CLUSTER, desiredStatus=desired)[
        "taskArns"
    ]
    return arns


def running_task(aws: Emulator, clock: ManualClock) -> str:
    arn = run_foreign_task(aws, CLUSTER, FAMILY)
    clock.advance(START_SECONDS + 0.5)
    assert one(aws, arn)["lastStatus"] == "RUNNING"
    return arn


def stop(aws: Emulator, arn: str, reason: str = "maintenance") -> dict[str, Any]:
    stopped: dict[str, Any] = aws.clients().ecs.stop_task(cluster=CLUSTER, task=arn, reason=reason)[
        "task"
    ]
    return stopped


def walk(aws: Emulator, clock: ManualClock, arn: str, steps: list[float]) -> list[str]:
    """lastStatus after each clock step."""
    seen = []
    for seconds in steps:
        clock.advance(seconds)
        seen.append(one(aws, arn)["lastStatus"])
    return seen


# --- StopTask ----------------------------------------------------------------------------


def test_stop_keeps_running_through_the_grace_then_walks_to_stopped(
    aws: Emulator, clock: ManualClock
) -> None:
    arn = running_task(aws, clock)
    answer = stop(aws, arn)
    assert (answer["lastStatus"], answer["desiredStatus"]) == ("RUNNING", "STOPPED")
    assert (answer["stopCode"], answer["stoppedReason"]) == ("UserInitiated", "maintenance")
    assert "stoppingAt" in answer
    assert "stoppedAt" not in answer

    clock.advance(GRACE_MIDDLE)
    grace = one(aws, arn)
    assert (grace["lastStatus"], grace["desiredStatus"]) == ("RUNNING", "STOPPED")
    assert [c["lastStatus"] for c in grace["containers"]] == ["RUNNING"]
    assert "stoppedAt" not in grace

    steps = [DEACTIVATING_MIDDLE - GRACE_MIDDLE, STOP_STEP_SECONDS, STOP_STEP_SECONDS]
    assert walk(aws, clock, arn, steps) == ["DEACTIVATING", "STOPPING", "DEPROVISIONING"]
    assert "stoppedAt" not in one(aws, arn)

    clock.advance(STOP_STEP_SECONDS)
    stopped = one(aws, arn)
    assert (stopped["lastStatus"], stopped["desiredStatus"]) == ("STOPPED", "STOPPED")
    assert (stopped["stopCode"], stopped["stoppedReason"]) == ("UserInitiated", "maintenance")
    assert [(c["lastStatus"], c["exitCode"]) for c in stopped["containers"]] == [("STOPPED", 0)]
    assert stopped["stoppingAt"] == answer["stoppingAt"]
    took = (stopped["stoppedAt"] - stopped["stoppingAt"]).total_seconds()
    assert took == pytest.approx(STOP_SECONDS + 3 * STOP_STEP_SECONDS)
    assert stopped["attachments"][0]["status"] == "DELETED"


def test_stop_task_twice_changes_nothing_and_keeps_the_timer(
    aws: Emulator, clock: ManualClock
) -> None:
    arn = running_task(aws, clock)
    first = stop(aws, arn, "first")
    clock.advance(GRACE_MIDDLE)
    again = stop(aws, arn, "second")
    assert (again["lastStatus"], again["stoppedReason"]) == ("RUNNING", "first")
    assert again["stoppingAt"] == first["stoppingAt"]
    # DEACTIVATING when the first StopTask's grace ends, not the second's
    clock.advance(DEACTIVATING_MIDDLE - GRACE_MIDDLE)
    assert one(aws, arn)["lastStatus"] == "DEACTIVATING"

    finish_stop(aws, clock)
    stopped = one(aws, arn)
    late = stop(aws, arn, "third")
    assert (late["lastStatus"], late["stoppedReason"]) == ("STOPPED", "first")
    assert late["stoppedAt"] == stopped["stoppedAt"]
    assert one(aws, arn)["stoppedAt"] == stopped["stoppedAt"]


def test_stopped_task_leaves_list_tasks_running_at_once(aws: Emulator, clock: ManualClock) -> None:
    arn = running_task(aws, clock)
    assert listed(aws) == [arn]
    stop(aws, arn)
    assert one(aws, arn)["lastStatus"] == "RUNNING"
    assert listed(aws) == []
    assert listed(aws, "STOPPED") == [arn]


def test_target_stays_healthy_while_the_stopping_task_still_runs(
    aws: Emulator, clock: ManualClock
) -> None:
    assert aws.provisioned is not None
    arn = running_task(aws, clock)
    details = one(aws, arn)["attachments"][0]["details"]
    ip = next(d["value"] for d in details if d["name"] == "privateIPv4Address")
    aws.clients().elbv2.register_targets(
        TargetGroupArn=aws.provisioned.target_groups["auth"], Targets=[{"Id": ip, "Port": 8080}]
    )
    clock.advance(aws.lifecycle.health_seconds + 0.5)
    assert targets(aws, "auth") == [(ip, 8080, "healthy")]

    stop(aws, arn)
    assert targets(aws, "auth") == [(ip, 8080, "healthy")]
    clock.advance(GRACE_MIDDLE)
    assert targets(aws, "auth") == [(ip, 8080, "healthy")]
    clock.advance(DEACTIVATING_MIDDLE - GRACE_MIDDLE)
    assert one(aws, arn)["lastStatus"] == "DEACTIVATING"
    assert targets(aws, "auth") == [(ip, 8080, "healthy")]  # until its checks fail
    clock.advance(2 * HEALTH_CHECK_INTERVAL)  # UnhealthyThresholdCount (2) failed checks
    assert targets(aws, "auth") == [(ip, 8080, "unhealthy")]


def test_stop_seconds_per_task(aws: Emulator, clock: ManualClock) -> None:
    aws.lifecycle.plan_next(stop_seconds=30.0)
    arn = running_task(aws, clock)
    stop(aws, arn)
    assert walk(aws, clock, arn, [29.0, 1.0 + STOP_STEP_SECONDS / 2]) == [
        "RUNNING",
        "DEACTIVATING",
    ]


def test_task_stopped_while_provisioning_skips_the_grace(aws: Emulator, clock: ManualClock) -> None:
    aws.lifecycle.plan_next(running_after=60.0)
    arn = run_foreign_task(aws, CLUSTER, FAMILY)
    answer = stop(aws, arn)
    # no container to signal: only its network interface to release
    assert (answer["lastStatus"], answer["desiredStatus"]) == ("DEPROVISIONING", "STOPPED")
    clock.advance(STOP_STEP_SECONDS + 0.25)
    stopped = one(aws, arn)
    assert stopped["lastStatus"] == "STOPPED"
    assert "startedAt" not in stopped
    assert [(c["lastStatus"], c.get("exitCode")) for c in stopped["containers"]] == [
        ("STOPPED", None)
    ]


# --- eventual consistency ----------------------------------------------------------------


def test_invisible_task_is_missing_then_shows_up(aws: Emulator, clock: ManualClock) -> None:
    seen = run_foreign_task(aws, CLUSTER, FAMILY)
    aws.lifecycle.plan_next(invisible_for=5.0)
    hidden = run_foreign_task(aws, CLUSTER, FAMILY)  # RunTask itself answers with the task

    found = describe(aws, seen, hidden)
    assert [t["taskArn"] for t in found["tasks"]] == [seen]
    assert found["failures"] == [{"arn": hidden, "reason": "MISSING"}]
    assert listed(aws) == [seen]

    clock.advance(4.0)
    assert describe(aws, hidden)["tasks"] == []
    assert hidden not in listed(aws)

    clock.advance(1.5)  # it kept starting while unseen
    found = describe(aws, seen, hidden)
    assert [(t["taskArn"], t["lastStatus"]) for t in found["tasks"]] == [
        (seen, "RUNNING"),
        (hidden, "RUNNING"),
    ]
    assert found["failures"] == []
    assert listed(aws) == [seen, hidden]


def test_unknown_task_is_missing(aws: Emulator) -> None:
    found = describe(aws, "0123456789abcdef0123456789abcdef")
    assert found["tasks"] == []
    assert [f["reason"] for f in found["failures"]] == ["MISSING"]
    assert found["failures"][0]["arn"].endswith(f"task/{CLUSTER}/0123456789abcdef0123456789abcdef")
