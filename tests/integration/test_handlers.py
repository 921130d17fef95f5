"""The adapters against the moto server: idempotent stop and deregister, errors translated."""

from __future__ import annotations

import pytest

from start_engines.clock import Deadline
from start_engines.config import get_service_config
from start_engines.ecs_handler import ECSHandler
from start_engines.errors import StartTimeout, TargetGroupNotFound, TaskStopped
from start_engines.local import Emulator, ManualClock
from start_engines.target_group_handler import TargetGroupHandler
from tests.integration.helpers import finish_stop, past_draining


def test_stop_task_is_idempotent(aws: Emulator, clock: ManualClock) -> None:
    clients = aws.clients()
    ecs = ECSHandler(clients.ecs, lambda: clients.ec2)
    engine = get_service_config("auth")
    (task,) = ecs.start_task(engine)
    assert ecs.stop_task(engine.cluster, task.arn, "test") is True
    assert ecs.stop_task(engine.cluster, task.arn, "again") is True
    stopping = ecs.describe(engine.cluster, [task.arn])[task.arn]
    assert (stopping.desired_status, stopping.stopped_reason) == ("STOPPED", "test")
    assert ecs.list_tasks(engine.cluster) == []
    finish_stop(aws, clock)
    assert ecs.describe(engine.cluster, [task.arn])[task.arn].last_status == "STOPPED"
    assert ecs.list_tasks(engine.cluster) == []


def test_deregister_is_idempotent(aws: Emulator, clock: ManualClock) -> None:
    elbv2 = TargetGroupHandler(aws.clients().elbv2)
    arn = get_service_config("auth").target_group_arn
    assert elbv2.register_target([arn], "10.0.1.5", 8080) == [arn]
    assert elbv2.deregister_target([arn], "10.0.1.5", 8080) == [arn]
    assert elbv2.deregister_target([arn], "10.0.1.5", 8080) == []
    past_draining(clock)
    assert elbv2.get_target_health(arn) == []


def test_deregister_from_a_deleted_group_counts_as_done(aws: Emulator) -> None:
    assert aws.provisioned is not None
    client = aws.clients().elbv2
    arn = client.create_target_group(
        Name="gone-tg", Protocol="HTTP", Port=80, VpcId=aws.provisioned.vpc_id, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    client.delete_target_group(TargetGroupArn=arn)
    assert TargetGroupHandler(client).deregister_target([arn], "10.0.1.5", 80) == []


def test_health_of_a_missing_group_is_translated(aws: Emulator) -> None:
    handler = TargetGroupHandler(aws.clients().elbv2)
    missing = (
        "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/nope/0000000000000000"
    )
    with pytest.raises(TargetGroupNotFound) as info:
        handler.get_target_health(missing, service="auth")
    assert info.value.details["targetGroupArn"] == missing
    assert info.value.service == "auth"


def test_wait_for_running_bounded_and_reports_why(aws: Emulator, clock: ManualClock) -> None:
    clients = aws.clients()
    ecs = ECSHandler(clients.ecs, lambda: clients.ec2)
    engine = get_service_config("pdf")
    (task,) = ecs.start_task(engine)
    running = ecs.wait_for_running(
        engine.cluster, task.arn, Deadline.after(clock, 30), interval=0.5
    )
    assert running.is_running and running.private_ip

    aws.lifecycle.plan_next(dies_after=1.0, exit_code=2)
    (dying,) = ecs.start_task(engine)
    with pytest.raises(TaskStopped) as stopped:
        ecs.wait_for_running(engine.cluster, dying.arn, Deadline.after(clock, 30), interval=0.5)
    assert stopped.value.details["exitCodes"] == {"pdf-app": 2}

    aws.lifecycle.plan_next(running_after=float("inf"))
    (stuck,) = ecs.start_task(engine)
    began = clock.now()
    with pytest.raises(StartTimeout):
        ecs.wait_for_running(engine.cluster, stuck.arn, Deadline.after(clock, 5), interval=0.5)
    assert clock.now() - began == pytest.approx(5.0)


def test_wait_for_healthy_is_bounded(aws: Emulator, clock: ManualClock) -> None:
    clients = aws.clients()
    ecs, targets = ECSHandler(clients.ecs, lambda: clients.ec2), TargetGroupHandler(clients.elbv2)
    engine = get_service_config("users")
    (task,) = ecs.start_task(engine)
    running = ecs.wait_for_running(
        engine.cluster, task.arn, Deadline.after(clock, 30), interval=0.5
    )
    assert running.private_ip is not None
    targets.register_target(engine.target_group_arns, running.private_ip, engine.port)
    began = clock.now()
    with pytest.raises(StartTimeout) as info:  # ALB health checks need 10 s here
        targets.wait_for_healthy(
            engine.target_group_arns,
            running.private_ip,
            engine.port,
            Deadline.after(clock, 4),
            interval=1,
        )
    assert info.value.details["healthStatus"] == {engine.target_group_arn: "initial"}
    assert clock.now() - began == pytest.approx(4.0)
    states = targets.wait_for_healthy(
        engine.target_group_arns,
        running.private_ip,
        engine.port,
        Deadline.after(clock, 30),
        interval=1,
    )
    assert states == {engine.target_group_arn: "healthy"}
