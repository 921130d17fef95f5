"""TaskStateChange: an `aws.ecs` "ECS Task State Change" event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal


@dataclass(frozen=True)
class TaskStateChange:
    """An `aws.ecs` "ECS Task State Change" event."""

    kind: ClassVar[Literal["task-state"]] = "task-state"

    task_arn: str
    cluster_arn: str
    last_status: str
    desired_status: str
    started_by: str
    task_definition_arn: str
    version: int
    private_ip: str | None = None
