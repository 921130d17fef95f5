"""What a start event may override, and how the overrides reach RunTask."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from start_engines.config import env_prefix
from start_engines.errors import OverrideNotAllowed

if TYPE_CHECKING:
    from collections.abc import Sequence

    from start_engines.config import EngineConfig

INFRA_OVERRIDES = {
    "cluster": "cluster",
    "taskDefinition": "task_definition",
    "targetGroupArns": "target_group_arns",
    "subnets": "subnets",
    "securityGroups": "security_groups",
}


def with_overrides(engine: EngineConfig, overrides: Sequence[tuple[str, Any]]) -> EngineConfig:
    """The engine as this start may run it. Any override its config does not allow by name is
    refused (400) before anything starts: the original system let anyone who could PutEvents
    run any task definition, with its role, behind the ALB."""
    refused = [name for name, _ in overrides if name not in engine.allowed_overrides]
    if refused:
        allowed = sorted(engine.allowed_overrides) or "none"
        raise OverrideNotAllowed(
            f"engine '{engine.name}' does not allow overriding {refused[0]} (allowed: {allowed}); "
            f"allow it by name with {env_prefix(engine.name)}_ALLOWED_OVERRIDES or allowedOverrides in ENGINES_CONFIG",
            service=engine.name,
            field=f"overrides.{refused[0]}",
        )
    changes = {INFRA_OVERRIDES[name]: value for name, value in overrides if name in INFRA_OVERRIDES}
    return dataclasses.replace(engine, **changes) if changes else engine


def task_overrides(container: str, overrides: Sequence[tuple[str, Any]]) -> dict[str, Any] | None:
    """RunTask's `overrides` for what is left once the infrastructure overrides are applied."""
    given = dict(overrides)
    result: dict[str, Any] = {}
    container_override: dict[str, Any] = {}
    if "environment" in given:
        container_override["environment"] = [
            {"name": k, "value": v} for k, v in given["environment"]
        ]
    if "command" in given:
        container_override["command"] = list(given["command"])
    if container_override:
        result["containerOverrides"] = [{"name": container, **container_override}]
    for name in ("taskRoleArn", "executionRoleArn", "cpu", "memory"):
        if name in given:
            result[name] = given[name]
    return result or None
