"""RunTask `failures` (capacity, agent): paths no emulator produces, so botocore's Stubber."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber

from start_engines.config import EngineConfig
from start_engines.ecs_handler import ECSHandler
from start_engines.errors import RunTaskFailed

ENGINE = EngineConfig(
    name="auth",
    cluster="auth-cluster",
    task_definition="auth-api-task",
    target_group_arns=("arn:tg",),
    port=8080,
    subnets=("subnet-a",),
    security_groups=("sg-1",),
)


@pytest.mark.parametrize(
    ("reason", "detail"),
    [("RESOURCE:MEMORY", "no capacity"), ("AGENT", "agent disconnected")],
)
def test_run_task_failures_carry_each_reason(reason: str, detail: str) -> None:
    ecs = boto3.client(
        "ecs", region_name="us-east-2", aws_access_key_id="x", aws_secret_access_key="x"
    )
    handler = ECSHandler(ecs, lambda: pytest.fail("EC2 must not be called"))
    with Stubber(ecs) as stub:
        stub.add_response(
            "run_task",
            {
                "tasks": [],
                "failures": [
                    {
                        "arn": "arn:aws:ecs:::container-instance/x",
                        "reason": reason,
                        "detail": detail,
                    }
                ],
            },
            {
                "cluster": "auth-cluster",
                "taskDefinition": "auth-api-task",
                "launchType": "FARGATE",
                "count": 1,
                "networkConfiguration": ANY,
                "startedBy": "start-engines",
                "tags": [{"key": "start-engines:engine", "value": "auth"}],
                "propagateTags": "TASK_DEFINITION",
                "enableECSManagedTags": True,
                "clientToken": "event-1",
            },
        )
        with pytest.raises(RunTaskFailed) as info:
            handler.start_task(ENGINE, client_token="event-1")
        stub.assert_no_pending_responses()
    assert reason in info.value.message
    assert info.value.details["failures"][0]["reason"] == reason
    assert info.value.details["failures"][0]["detail"] == detail
    assert info.value.status_code == 500
