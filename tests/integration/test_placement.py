"""Tasks in an Availability Zone the load balancer does not serve: their targets stay `unused`
(Target.NotInUse). The start says so, reconcile does not churn, config check finds it first."""

from __future__ import annotations

import os
from typing import Any

import pytest

from start_engines import lambda_function
from start_engines.clock import SystemClock
from start_engines.engines import Engines
from start_engines.local import Emulator, ManualClock
from start_engines.local.context import LambdaContext
from tests.conftest import start_event
from tests.integration.helpers import (
    EventCapture,
    live_tasks,
    past_draining,
    state_change_event,
    targets,
)

Invoke = Any


@pytest.fixture
def unserved_subnet(aws: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A subnet in us-east-2c, where the ALB has no node, as auth's only subnet."""
    assert aws.provisioned is not None
    ec2 = aws.clients().ec2
    zone = [{"Name": "availability-zone", "Values": ["us-east-2c"]}]
    found = ec2.describe_subnets(Filters=zone)["Subnets"]  # the emulator keeps it between tests
    subnet: str = (
        found[0]
        if found
        else ec2.create_subnet(
            VpcId=aws.provisioned.vpc_id, CidrBlock="10.0.3.0/24", AvailabilityZone="us-east-2c"
        )["Subnet"]
    )["SubnetId"]
    monkeypatch.setenv("AUTH_SUBNETS", subnet)
    return subnet


def test_a_start_into_an_unserved_zone_warns(
    aws: Emulator, invoke: Invoke, clock: ManualClock, unserved_subnet: str
) -> None:
    capture = EventCapture(aws)
    response = invoke(start_event("auth"))
    assert response["statusCode"] == 200
    assert response["body"]["healthStatus"] == "unused"
    assert "unused in auth-tg (Target.NotInUse)" in response["body"]["warning"]
    assert "config check" in response["body"]["warning"]
    ready = [e for e in capture.received() if e["detail-type"] == "Engine Ready"]
    assert len(ready) == 1
    arn = response["body"]["taskArn"]
    for _ in range(2):  # the RUNNING event, delivered twice
        event = state_change_event(aws, "auth-cluster", arn)
        answer = lambda_function.task_state_handler(event, LambdaContext(clock, 60))
        assert answer["body"]["action"] == "already-registered"
    assert not [e for e in capture.received() if e["detail-type"] == "Engine Ready"]
    assert [t[2] for t in targets(aws, "auth")] == ["unused"]


def test_waiting_for_health_in_an_unserved_zone_fails_at_once(
    aws: Emulator, invoke: Invoke, clock: ManualClock, unserved_subnet: str
) -> None:
    before = clock.now()
    response = invoke(start_event("auth", waitForHealthy=True))
    assert response["statusCode"] == 500
    assert response["body"]["errorType"] == "TargetNotInUse"
    assert clock.now() - before < 30.0  # not the 120 s health timeout
    assert response["body"]["cleanedUp"] is True
    assert live_tasks(aws, "auth-cluster") == []
    past_draining(clock)
    assert targets(aws, "auth") == []


def test_config_check_finds_an_unserved_zone_and_a_foreign_vpc(
    aws: Emulator, unserved_subnet: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ec2 = aws.clients().ec2
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    elsewhere = ec2.create_subnet(
        VpcId=other_vpc, CidrBlock="10.9.1.0/24", AvailabilityZone="us-east-2a"
    )["Subnet"]["SubnetId"]
    monkeypatch.setenv("PDF_SUBNETS", elsewhere)
    problems = Engines.build(aws.clients(), SystemClock(), dict(os.environ)).check()
    found = {(p.service, p.problem) for p in problems}
    auth = [text for service, text in found if service == "auth"]
    assert any("not us-east-2c" in text and "stay unused" in text for text in auth), auth
    pdf = [text for service, text in found if service == "pdf"]
    assert any(f"subnet {elsewhere} is in {other_vpc}" in text for text in pdf), pdf
    assert all(p.severity == "error" for p in problems if p.service in ("auth", "pdf"))
    assert not [p for p in problems if p.service == "fa"]
