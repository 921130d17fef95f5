"""Status: per engine, its tasks, each target group's targets, and `ready` (at least one
healthy target in every target group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from start_engines.engines.outcome import Outcome, combine, not_configured
from start_engines.engines.routing import routing_state
from start_engines.errors import ConfigError, StartEnginesError

if TYPE_CHECKING:
    from start_engines.config import EngineConfig
    from start_engines.engines.context import Context
    from start_engines.events import StatusRequest


def status(ctx: Context, request: StatusRequest) -> Outcome:
    results: list[tuple[int, dict[str, Any]]] = []
    now = ctx.clock.wall()
    for engine in ctx.select(request.services):
        if isinstance(engine, ConfigError):
            results.append(not_configured(engine, request.services is None))
            continue
        try:
            tasks = ctx.ecs.find_tasks(engine)
            groups: list[dict[str, Any]] = [
                {
                    "targetGroupArn": arn,
                    "targets": [
                        {"ip": t.ip, "port": t.port, "state": t.state, "reason": t.reason}
                        for t in ctx.targets.get_target_health(arn, engine.name)
                    ],
                }
                for arn in engine.target_group_arns
            ]
            results.append(
                (
                    200,
                    {
                        "service": engine.name,
                        "ready": all(
                            any(t["state"] == "healthy" for t in g["targets"]) for g in groups
                        ),
                        "tasks": [
                            {
                                "taskId": t.id,
                                "taskArn": t.arn,
                                "lastStatus": t.last_status,
                                "desiredStatus": t.desired_status,
                                "privateIp": t.private_ip,
                                "ageSeconds": round((now - t.created_at).total_seconds(), 1)
                                if t.created_at
                                else None,
                            }
                            for t in tasks
                        ],
                        "targetGroups": groups,
                        **_routing(ctx, engine),
                    },
                )
            )
        except StartEnginesError as exc:
            results.append((exc.status_code, {**exc.to_body(), "service": engine.name}))
    return combine(results)


def _routing(ctx: Context, engine: EngineConfig) -> dict[str, Any]:
    """`routing` of an engine that wakes on requests: asleep, awake or mismatch."""
    if not engine.wakeable:
        return {}
    return {"routing": routing_state(ctx, engine), "listenerRuleArn": engine.listener_rule_arn}
