"""A faithful re-implementation of the original system's start flow, as the diagrams describe
it: RunTask, DescribeTasks every 5 seconds until RUNNING, read the IP, register. No reuse, no
lease, no cleanup. It exists only to be measured against."""

from __future__ import annotations

import os
import time
from typing import Any

POLL_SECONDS = 5
TIMEOUT_SECONDS = 300


def seed_lambda_handler(event: dict[str, Any], clients: Any) -> dict[str, Any]:
    service = event["detail"]["service"]
    prefix = service.upper()
    cluster = os.environ.get(f"{prefix}_CLUSTER", f"{service}-cluster")
    task_definition = os.environ[f"{prefix}_TASK_DEF"]
    target_group = os.environ[f"{prefix}_TARGET_GROUP_ARN"]
    port = int(os.environ[f"{prefix}_PORT"])
    ecs, elbv2 = clients.ecs, clients.elbv2

    # Step 3: start the task
    task = ecs.run_task(
        cluster=cluster,
        taskDefinition=task_definition,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": os.environ["SUBNETS"].split(","),
                "securityGroups": os.environ["SECURITY_GROUPS"].split(","),
                "assignPublicIp": "DISABLED",
            }
        },
    )["tasks"][0]
    task_arn = task["taskArn"]

    # Step 4: poll every 5 seconds until RUNNING, 5 minutes at most
    waited = 0
    while waited < TIMEOUT_SECONDS:
        task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
        if task["lastStatus"] == "RUNNING":
            break
        if task["lastStatus"] == "STOPPED":
            raise RuntimeError(f"task stopped: {task.get('stoppedReason')}")
        time.sleep(POLL_SECONDS)
        waited += POLL_SECONDS
    ip = next(
        d["value"]
        for a in task["attachments"]
        for d in a["details"]
        if d["name"] == "privateIPv4Address"
    )

    # Step 5: register IP:port
    elbv2.register_targets(TargetGroupArn=target_group, Targets=[{"Id": ip, "Port": port}])
    health = elbv2.describe_target_health(
        TargetGroupArn=target_group, Targets=[{"Id": ip, "Port": port}]
    )
    return {
        "statusCode": 200,
        "body": {
            "taskArn": task_arn,
            "taskId": task_arn.rsplit("/", 1)[1],
            "privateIp": ip,
            "port": port,
            "targetGroupArn": target_group,
            "healthStatus": health["TargetHealthDescriptions"][0]["TargetHealth"]["State"],
        },
    }
