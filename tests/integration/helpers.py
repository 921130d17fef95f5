"""Reading the emulator's state back, the way an operator would with the AWS CLI."""

from __future__ import annotations

import uuid
from typing import Any

from start_engines.local import Emulator, ManualClock
from start_engines.local.ecs_events import task_state_change
from start_engines.local.lifecycle import STOP_STEP_SECONDS
from start_engines.local.provision import DEREGISTRATION_DELAY


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


def past_draining(clock: ManualClock) -> None:
    """Move the clock past the engines' deregistration delay: deregistered targets are gone
    from DescribeTargetHealth, no longer `draining`."""
    clock.advance(DEREGISTRATION_DELAY)


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
    elbv2 = aws.clients().elbv2
    arn: str = elbv2.create_target_group(
        Name=name, Protocol=protocol, Port=port, VpcId=aws.provisioned.vpc_id, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.modify_target_group_attributes(  # drains as the engines' groups do
        TargetGroupArn=arn,
        Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": str(DEREGISTRATION_DELAY)}
        ],
    )
    return arn


def behind_a_network_load_balancer(aws: Emulator, group: str, port: int) -> None:
    """A listener of its own forwards to the group: ALB and NLB health-check only the targets
    of groups a listener uses (the others stay `unused`)."""
    assert aws.provisioned is not None
    elbv2 = aws.clients().elbv2
    balancer = elbv2.create_load_balancer(
        Name=f"nlb-{uuid.uuid4().hex[:8]}",
        Subnets=list(aws.provisioned.subnets),
        Type="network",
        Scheme="internal",
    )["LoadBalancers"][0]["LoadBalancerArn"]
    elbv2.create_listener(
        LoadBalancerArn=balancer,
        Protocol="TCP",
        Port=port,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
    )


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


def settle_and_check_owners(aws: Emulator, deliver: Any, clock: Any) -> None:
    """Invariant I4. Let every stop finish and deliver each STOPPED event, as EventBridge
    would; then every live RUNNING task of ours that no stop claimed is behind every target
    group of its engine, and every target belongs to such a task."""
    from start_engines.config import SERVICE_MAPPINGS
    from start_engines.ecs_handler import ENGINE_TAG, STARTED_BY, STOPPING_TAG

    assert aws.provisioned is not None
    ecs, elbv2 = aws.clients().ecs, aws.clients().elbv2
    clock.advance(120)  # past every stop timeout and draining delay
    for engine, spec in SERVICE_MAPPINGS.items():
        cluster = spec["cluster"]
        stopped = ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]
        for arn in stopped:
            deliver(state_change_event(aws, cluster, arn))
        arns = ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
        tasks = (
            ecs.describe_tasks(cluster=cluster, tasks=arns, include=["TAGS"])["tasks"]
            if arns
            else []
        )

        def owned(t: dict[str, Any], engine: str = engine, spec: dict[str, Any] = spec) -> bool:
            tags = {tag["key"]: tag["value"] for tag in t.get("tags", [])}
            family = t["taskDefinitionArn"].rsplit("/", 1)[-1].split(":", 1)[0]
            return (
                t.get("startedBy") == STARTED_BY
                and tags.get(ENGINE_TAG) == engine
                and family == spec["taskDefinition"]
                and STOPPING_TAG not in tags
            )

        def ip(t: dict[str, Any]) -> str | None:
            details = t["attachments"][0]["details"] if t.get("attachments") else []
            return next((d["value"] for d in details if d["name"] == "privateIPv4Address"), None)

        ours = [t for t in tasks if owned(t)]
        serving = {ip(t) for t in ours if t["lastStatus"] == "RUNNING"}
        allowed = {ip(t) for t in ours}
        health = elbv2.describe_target_health(TargetGroupArn=aws.provisioned.target_groups[engine])
        registered = {
            t["Target"]["Id"]
            for t in health["TargetHealthDescriptions"]
            if t["TargetHealth"]["State"] != "draining"
        }
        assert serving <= registered, f"{engine}: a RUNNING task of ours has no target"
        assert registered <= allowed, f"{engine}: a target without a live task of ours"


def stop_event(service: str, **detail: Any) -> dict[str, Any]:
    return {
        "id": f"stop-{service}",
        "source": "custom.app",
        "detail-type": "Stop ECS Task",
        "detail": {"service": service, **detail},
    }


def reap_event(**detail: Any) -> dict[str, Any]:
    return {"source": "custom.app", "detail-type": "Reap Idle Engines", "detail": detail}


def sync_event(**detail: Any) -> dict[str, Any]:
    return {"source": "custom.app", "detail-type": "Sync Target Groups", "detail": detail}


def lease(aws: Emulator) -> Any:
    """The engines' claims, read and written as another invocation would."""
    from start_engines.lease import Lease

    assert aws.provisioned is not None
    return Lease(aws.clients().dynamodb, aws.provisioned.lease_table)


def endpoint_client(url: str, service: str, region: str = "us-east-2", **config: Any) -> Any:
    """A boto3 client of `url` with no retries (`config`: more botocore Config)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name=region,
        endpoint_url=url,
        config=Config(retries={"total_max_attempts": 1}, **config),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
