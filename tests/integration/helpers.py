"""Reading the emulator's state back, the way an operator would with the AWS CLI."""

from __future__ import annotations

import uuid
from typing import Any

from start_engines.local import Emulator, ManualClock
from start_engines.local.ecs_events import task_state_change
from start_engines.local.lifecycle import STOP_STEP_SECONDS


def targets(aws: Emulator, engine: str, arn: str | None = None) -> list[tuple[str, int, str]]:
    assert aws.provisioned is not None
    group = arn or aws.provisioned.target_groups[engine]
    found = aws.clients().elbv2.describe_target_health(TargetGroupArn=group)
    return [
        (t["Target"]["Id"], t["Target"]["Port"], t["TargetHealth"]["State"])
        for t in found["TargetHealthDescriptions"]
    ]


def task(aws: Emulator, cluster: str, task_arn: str) -> dict[str, Any]:
    found = aws.clients().ecs.describe_tasks(cluster=cluster, tasks=[task_arn], include=["TAGS"])
    result: dict[str, Any] = found["tasks"][0]
    return result


def finish_stop(aws: Emulator, clock: ManualClock) -> None:
    """Move the clock past a StopTask: the container's grace, then DEACTIVATING, STOPPING and
    DEPROVISIONING, and a step to spare. The task reads STOPPED on the next DescribeTasks."""
    clock.advance(aws.lifecycle.stop_seconds + 4 * STOP_STEP_SECONDS)


def live_tasks(aws: Emulator, cluster: str) -> list[str]:
    arns: list[str] = aws.clients().ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")[
        "taskArns"
    ]
    return arns


def mutations(aws: Emulator, kind: str) -> list[tuple[str, str]]:
    return [m for m in aws.lifecycle.mutations if m[0] == kind]


def state_change_event(aws: Emulator, cluster: str, task_arn: str) -> dict[str, Any]:
    """The ECS Task State Change event for the task as it is now."""
    return task_state_change(task(aws, cluster, task_arn))


def run_foreign_task(aws: Emulator, cluster: str, family: str) -> str:
    """A task someone else started (no startedBy, no engine tag) from the engine's family."""
    assert aws.provisioned is not None
    response = aws.clients().ecs.run_task(
        cluster=cluster,
        taskDefinition=family,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(aws.provisioned.subnets),
                "securityGroups": [aws.provisioned.security_group],
            }
        },
    )
    arn: str = response["tasks"][0]["taskArn"]
    return arn


def create_target_group(aws: Emulator, name: str, port: int = 8080, protocol: str = "HTTP") -> str:
    assert aws.provisioned is not None
    arn: str = aws.clients().elbv2.create_target_group(
        Name=name, Protocol=protocol, Port=port, VpcId=aws.provisioned.vpc_id, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    return arn


class EventCapture:
    """An SQS queue behind an EventBridge rule for source `start-engines`: the outgoing events,
    read back the way a subscriber would receive them."""

    def __init__(self, aws: Emulator, bus: str = "default") -> None:
        clients = aws.clients()
        self._sqs = clients._client("sqs")
        events = clients.events
        name = f"capture-{bus}-{uuid.uuid4().hex[:8]}"  # its own queue: nothing from other tests
        self.queue_url = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventBusName=bus, EventPattern='{"source": ["start-engines"]}')
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])

    def received(self) -> list[dict[str, Any]]:
        import json

        found: list[dict[str, Any]] = []
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10
            ).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                self._sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
