"""The `aws.ecs` "ECS Task State Change" event EventBridge would deliver for a task."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def task_state_change(
    task: dict[str, Any], version: int | None = None, at: datetime | None = None
) -> dict[str, Any]:
    """Build the event from a DescribeTasks task, as EventBridge shapes it (`at`: its time)."""
    arn = task["taskArn"]
    region, account = arn.split(":")[3], arn.split(":")[4]
    detail = {
        "clusterArn": task["clusterArn"],
        "taskArn": arn,
        "taskDefinitionArn": task.get("taskDefinitionArn", ""),
        "lastStatus": task["lastStatus"],
        "desiredStatus": task["desiredStatus"],
        "startedBy": task.get("startedBy", ""),
        "group": task.get("group", ""),
        "launchType": task.get("launchType", "FARGATE"),
        "version": version if version is not None else int(task.get("version", 1) or 1),
        "attachments": task.get("attachments", []),
        "containers": [
            {k: c[k] for k in ("name", "lastStatus", "exitCode") if k in c}
            for c in task.get("containers", [])
        ],
        "stoppedReason": task.get("stoppedReason", ""),
    }
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": account,
        "time": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [arn],
        "detail": detail,
    }
