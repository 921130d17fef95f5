"""The emulator's ALB health checks, through DescribeTargetHealth: a registration delay, then a
check every HealthCheckIntervalSeconds of the group; one pass makes a new target healthy, the
group's thresholds move it afterwards; draining lasts the group's deregistration delay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from start_engines.local.provision import DEREGISTRATION_DELAY, HEALTH_CHECK_INTERVAL
from tests.conftest import HEALTH_SECONDS, START_SECONDS
from tests.integration.helpers import create_target_group, run_foreign_task

if TYPE_CHECKING:
    from collections.abc import Iterator

    from start_engines.local import Emulator, ManualClock

CLUSTER = "auth-cluster"
FAMILY = "auth-api-task"
PORT = 8080
INTERVAL = float(HEALTH_CHECK_INTERVAL)
DELAY = HEALTH_SECONDS  # the emulator's registration delay in these tests
REGISTERING = ("initial", "Elb.RegistrationInProgress")
FIRST_CHECKS = ("initial", "Elb.InitialHealthChecking")
HEALTHY = ("healthy", None)
FAILED = ("unhealthy", "Target.FailedHealthChecks")


@pytest.fixture
def group(aws: Emulator) -> Iterator[str]:
    """auth's target group; its health-check settings and attributes restored afterwards."""
    assert aws.provisioned is not None
    arn = aws.provisioned.target_groups["auth"]
    yield arn
    elbv2 = aws.clients().elbv2
    elbv2.modify_target_group(
        TargetGroupArn=arn,
        HealthCheckIntervalSeconds=int(INTERVAL),
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
    )
    elbv2.modify_target_group_attributes(
        TargetGroupArn=arn,
        Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": str(DEREGISTRATION_DELAY)}
        ],
    )


def health(aws: Emulator, group: str) -> dict[str, tuple[str, str | None]]:
    found = aws.clients().elbv2.describe_target_health(TargetGroupArn=group)
    return {
        t["Target"]["Id"]: (t["TargetHealth"]["State"], t["TargetHealth"].get("Reason"))
        for t in found["TargetHealthDescriptions"]
    }


def start_task(aws: Emulator, **plan: object) -> tuple[str, str]:
    """A task (shaped by `plan`), its ARN and its IP."""
    if plan:
        aws.lifecycle.plan_next(CLUSTER, **plan)
    arn = run_foreign_task(aws, CLUSTER, FAMILY)
    ip = aws.lifecycle.plans[arn].ip
    assert ip is not None
    return arn, ip


def register(aws: Emulator, group: str, ip: str) -> None:
    aws.clients().elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": ip, "Port": PORT}])


def running_target(aws: Emulator, clock: ManualClock, group: str) -> tuple[str, str]:
    """A task RUNNING, then registered: healthy at its first check."""
    arn, ip = start_task(aws)
    clock.advance(START_SECONDS + 0.5)
    assert aws.lifecycle.is_running(arn)
    register(aws, group, ip)
    clock.advance(DELAY)
    assert health(aws, group) == {ip: HEALTHY}
    return arn, ip


def test_first_check_comes_after_the_registration_delay(
    aws: Emulator, clock: ManualClock, group: str
) -> None:
    _, ip = start_task(aws)
    clock.advance(START_SECONDS + 0.5)
    register(aws, group, ip)
    assert health(aws, group) == {ip: REGISTERING}
    clock.advance(DELAY - 0.5)
    assert health(aws, group) == {ip: REGISTERING}  # RUNNING all along, but not checked yet
    clock.advance(0.5)
    assert health(aws, group) == {ip: HEALTHY}


def test_one_pass_makes_a_new_target_healthy(aws: Emulator, clock: ManualClock, group: str) -> None:
    aws.clients().elbv2.modify_target_group(TargetGroupArn=group, HealthyThresholdCount=5)
    running_target(aws, clock, group)  # at its first check, not its fifth


def test_interval_is_the_groups(aws: Emulator, clock: ManualClock, group: str) -> None:
    aws.clients().elbv2.modify_target_group(TargetGroupArn=group, HealthCheckIntervalSeconds=30)
    arn, ip = start_task(aws, running_after=DELAY + 5)
    register(aws, group, ip)
    clock.advance(DELAY)
    assert health(aws, group) == {ip: FIRST_CHECKS}  # the first check failed: still initial
    clock.advance(29.5)
    assert aws.lifecycle.is_running(arn)
    assert health(aws, group) == {ip: FIRST_CHECKS}  # with 5 s it would be healthy by now
    clock.advance(0.5)
    assert health(aws, group) == {ip: HEALTHY}


def test_interval_change_applies_after_the_checks_already_due(
    aws: Emulator, clock: ManualClock, group: str
) -> None:
    _, ip = start_task(aws, running_after=DELAY + 2)
    register(aws, group, ip)
    clock.advance(DELAY + INTERVAL)  # checks at +10 (failed) and +15 (passed), nobody asked
    aws.clients().elbv2.modify_target_group(TargetGroupArn=group, HealthCheckIntervalSeconds=60)
    assert health(aws, group) == {ip: HEALTHY}


def test_registered_before_running_is_healthy_at_the_first_check_after_running(
    aws: Emulator, clock: ManualClock, group: str
) -> None:
    arn, ip = start_task(aws, running_after=DELAY + 2)
    register(aws, group, ip)  # its IP exists from PENDING; nothing listens yet
    clock.advance(DELAY)
    assert health(aws, group) == {ip: FIRST_CHECKS}
    clock.advance(2.5)
    assert aws.lifecycle.is_running(arn)
    assert health(aws, group) == {ip: FIRST_CHECKS}  # RUNNING, but the next check is at +15
    clock.advance(INTERVAL - 2.5)
    assert health(aws, group) == {ip: HEALTHY}


def test_new_target_failing_the_unhealthy_threshold_is_unhealthy_until_enough_passes(
    aws: Emulator, clock: ManualClock, group: str
) -> None:
    # checks at +10, +15 fail (UnhealthyThresholdCount 2); RUNNING at +21; +25, +30 pass
    arn, ip = start_task(aws, running_after=DELAY + 11)
    register(aws, group, ip)
    clock.advance(DELAY)
    assert health(aws, group) == {ip: FIRST_CHECKS}
    clock.advance(INTERVAL)
    assert health(aws, group) == {ip: FAILED}
    clock.advance(2 * INTERVAL)
    assert aws.lifecycle.is_running(arn)
    assert health(aws, group) == {ip: FAILED}  # one pass: HealthyThresholdCount is 2
    clock.advance(INTERVAL)
    assert health(aws, group) == {ip: HEALTHY}


def test_thresholds_take_a_target_down_and_back(
    aws: Emulator, clock: ManualClock, group: str
) -> None:
    aws.clients().elbv2.modify_target_group(
        TargetGroupArn=group, UnhealthyThresholdCount=3, HealthyThresholdCount=2
    )
    arn, ip = running_target(aws, clock, group)  # healthy at check 0 (+10)
    clock.advance(1)
    aws.lifecycle.kill(arn)  # STOPPED at +11: nothing listens at the IP
    clock.advance(INTERVAL - 1)
    assert health(aws, group) == {ip: HEALTHY}  # one failure (+15)
    clock.advance(INTERVAL)
    assert health(aws, group) == {ip: HEALTHY}  # two (+20)
    clock.advance(INTERVAL)
    assert health(aws, group) == {ip: FAILED}  # three in a row (+25)

    clock.advance(1)
    replacement, same_ip = start_task(aws, ip=ip)  # a new task gets the IP, RUNNING at +30
    assert same_ip == ip
    clock.advance(INTERVAL - 1)
    assert aws.lifecycle.is_running(replacement)
    assert health(aws, group) == {ip: FAILED}  # one pass (+30)
    clock.advance(INTERVAL)
    assert health(aws, group) == {ip: HEALTHY}  # two in a row (+35)


def test_a_stopping_task_passes_until_it_leaves_running(
    aws: Emulator, clock: ManualClock, group: str
) -> None:
    aws.lifecycle.plan_next(CLUSTER, stop_seconds=8.0)  # a SIGTERM grace past the next check
    arn, ip = running_target(aws, clock, group)
    aws.clients().ecs.stop_task(cluster=CLUSTER, task=arn, reason="maintenance")  # at +10
    clock.advance(INTERVAL)  # +15: still in its grace, RUNNING
    assert health(aws, group) == {ip: HEALTHY}
    clock.advance(INTERVAL)  # +20: failed once
    assert health(aws, group) == {ip: HEALTHY}
    clock.advance(INTERVAL)  # +25: failed twice
    assert health(aws, group) == {ip: FAILED}


def test_draining_lasts_the_groups_deregistration_delay(
    aws: Emulator, clock: ManualClock, group: str
) -> None:
    elbv2 = aws.clients().elbv2
    elbv2.modify_target_group_attributes(
        TargetGroupArn=group,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "7"}],
    )
    _, ip = running_target(aws, clock, group)
    elbv2.deregister_targets(TargetGroupArn=group, Targets=[{"Id": ip, "Port": PORT}])
    assert health(aws, group) == {ip: ("draining", "Target.DeregistrationInProgress")}
    clock.advance(6.5)
    assert health(aws, group) == {ip: ("draining", "Target.DeregistrationInProgress")}
    clock.advance(1)
    assert health(aws, group) == {}


def test_registered_again_starts_over(aws: Emulator, clock: ManualClock, group: str) -> None:
    elbv2 = aws.clients().elbv2
    _, ip = running_target(aws, clock, group)
    register(aws, group, ip)  # already registered: nothing changes
    assert health(aws, group) == {ip: HEALTHY}
    elbv2.deregister_targets(TargetGroupArn=group, Targets=[{"Id": ip, "Port": PORT}])
    register(aws, group, ip)
    assert health(aws, group) == {ip: REGISTERING}


def test_unused_while_no_listener_uses_the_group(aws: Emulator, clock: ManualClock) -> None:
    elbv2 = aws.clients().elbv2
    lonely = create_target_group(aws, "lonely-tg")
    try:
        _, ip = start_task(aws)
        clock.advance(START_SECONDS + 0.5)
        register(aws, lonely, ip)
        clock.advance(DELAY + INTERVAL)
        assert health(aws, lonely) == {ip: ("unused", "Target.NotInUse")}
    finally:
        elbv2.delete_target_group(TargetGroupArn=lonely)


def test_lambda_target_without_health_checks_is_unavailable(pdf_sleeps: Emulator) -> None:
    assert pdf_sleeps.provisioned is not None  # pdf's rule forwards to the wake target group
    found = health(pdf_sleeps, pdf_sleeps.provisioned.wake_target_group)
    assert set(found.values()) == {("unavailable", "Target.HealthCheckDisabled")}
