"""The seed's flow through lambda_handler, against the moto server over HTTP."""

from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from start_engines.config import SERVICE_MAPPINGS
from start_engines.ecs_handler import ENGINE_TAG, STARTED_BY
from tests.conftest import START_SECONDS, load_event, start_event
from tests.integration.helpers import create_target_group, targets, task

if TYPE_CHECKING:
    from start_engines.local import Emulator, ManualClock

Invoke = Any


@pytest.mark.parametrize("engine", sorted(SERVICE_MAPPINGS))
def test_start_registers_the_tasks_ip_and_port(aws: Emulator, invoke: Invoke, engine: str) -> None:
    response = invoke(start_event(engine))

    assert response["statusCode"] == 200, response
    body = response["body"]
    port = SERVICE_MAPPINGS[engine]["port"]
    described = task(aws, SERVICE_MAPPINGS[engine]["cluster"], body["taskArn"])
    eni_ip = next(
        d["value"]
        for d in described["attachments"][0]["details"]
        if d["name"] == "privateIPv4Address"
    )
    assert body["privateIp"] == eni_ip
    assert body["port"] == port
    assert body["service"] == engine
    assert body["taskId"] == body["taskArn"].rsplit("/", 1)[1]
    assert body["targetGroupArn"] == aws.provisioned.target_groups[engine]  # type: ignore[union-attr]
    assert body["healthStatus"] == "initial"
    assert body["containerName"] == f"{engine}-app"
    assert body["message"]
    assert targets(aws, engine) == [(eni_ip, port, "initial")]
    assert described["lastStatus"] == "RUNNING"
    assert described["startedBy"] == STARTED_BY
    assert {"key": ENGINE_TAG, "value": engine} in described["tags"]


def test_seed_event_file_through_the_handler(aws: Emulator, invoke: Invoke) -> None:
    response = invoke(load_event("start-auth.json"))
    assert response["statusCode"] == 200
    assert set(response["body"]) >= {
        "taskArn",
        "taskId",
        "privateIp",
        "port",
        "targetGroupArn",
        "healthStatus",
        "message",
        "service",
    }
    json.dumps(response)  # the result is plain JSON


def test_poll_is_not_the_seeds_five_seconds(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    before = len(clock.sleeps)
    response = invoke(start_event("auth"))
    assert response["statusCode"] == 200
    sleeps = clock.sleeps[before:]
    assert sleeps and max(sleeps) < 1.0
    assert response["body"]["timings"]["running"] - START_SECONDS < 1.0


def test_wait_for_healthy(aws: Emulator, invoke: Invoke) -> None:
    response = invoke(start_event("pdf", waitForHealthy=True))
    assert response["statusCode"] == 200
    assert response["body"]["healthStatus"] == "healthy"
    assert targets(aws, "pdf") == [(response["body"]["privateIp"], 9080, "healthy")]
    assert response["body"]["timings"]["healthy"] >= response["body"]["timings"]["registered"]


def test_several_target_groups(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert aws.provisioned is not None
    elbv2 = aws.clients().elbv2
    nlb_arn = create_target_group(aws, "auth-nlb-tg", protocol="TCP")
    alb_arn = aws.provisioned.target_groups["auth"]
    monkeypatch.setenv("AUTH_TARGET_GROUP_ARN", f"{alb_arn},{nlb_arn}")
    try:
        response = invoke(start_event("auth"))
        body = response["body"]
        assert response["statusCode"] == 200
        assert body["targetGroupArn"] == alb_arn
        assert body["targetGroupArns"] == [alb_arn, nlb_arn]
        assert set(body["healthStatuses"]) == {alb_arn, nlb_arn}
        for arn in (alb_arn, nlb_arn):
            found = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
            assert [t["Target"] for t in found] == [{"Id": body["privateIp"], "Port": 8080}]
    finally:
        elbv2.delete_target_group(TargetGroupArn=nlb_arn)


def test_ip_falls_back_to_describe_network_interfaces(aws: Emulator, invoke: Invoke) -> None:
    aws.lifecycle.plan_next(hide_ip=True)
    response = invoke(start_event("fa"))
    assert response["statusCode"] == 200
    described = task(aws, "fa-cluster", response["body"]["taskArn"])
    details = {d["name"]: d["value"] for d in described["attachments"][0]["details"]}
    assert "privateIPv4Address" not in details
    interface = aws.clients().ec2.describe_network_interfaces(
        NetworkInterfaceIds=[details["networkInterfaceId"]]
    )["NetworkInterfaces"][0]
    assert response["body"]["privateIp"] == interface["PrivateIpAddress"]
    assert targets(aws, "fa") == [(interface["PrivateIpAddress"], 2531, "initial")]


def test_configured_container_name_wins(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERS_CONTAINER_NAME", "sidecar-proxy")
    response = invoke(start_event("users"))
    assert response["body"]["containerName"] == "sidecar-proxy"


def test_port_no_container_maps_is_a_config_error_before_run_task(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_PORT", "9999")
    response = invoke(start_event("batch"))
    assert response["statusCode"] == 500
    assert response["body"]["errorType"] == "ConfigError"
    assert "9999" in response["body"]["error"]
    assert aws.lifecycle.mutations == []


def test_logs_are_json_with_the_event_id(aws: Emulator, invoke: Invoke) -> None:
    stream = io.StringIO()
    handler = logging.getLogger("start-engines").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    try:
        invoke({**start_event("auth"), "id": "corr-123"})
    finally:
        handler.setStream(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines
    assert {line.get("correlation_id") for line in lines} == {"corr-123"}
    assert any(line.get("progress", {}).get("step") == "registered" for line in lines)
