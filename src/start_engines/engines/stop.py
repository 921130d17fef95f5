"""Stop: deregister from every target group first, optionally wait for draining, then
StopTask. Only tasks start-engines started, unless includeForeign."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from start_engines.engines.outcome import Outcome, combine, not_configured
from start_engines.errors import ConfigError, NoSuchTask, StartEnginesError
from start_engines.event_publisher import ENGINE_STOPPED

if TYPE_CHECKING:
    from start_engines.clock import Deadline
    from start_engines.config import EngineConfig
    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.context import Context
    from start_engines.events import StopRequest

logger = logging.getLogger(__name__)


def stop(ctx: Context, request: StopRequest, deadline: Deadline) -> Outcome:
    selected = ctx.select(request.services)
    plans: list[tuple[EngineConfig, list[TaskInfo], dict[str, str]]] = []
    results: list[tuple[int, dict[str, Any]]] = []
    for engine in selected:
        if isinstance(engine, ConfigError):
            results.append(not_configured(engine, request.services is None))
            continue
        try:
            tasks = ctx.ecs.find_tasks(engine, include_foreign=request.include_foreign)
            if request.task_id:
                tasks = [t for t in tasks if request.task_id in (t.id, t.arn)]
                if not tasks:
                    raise NoSuchTask(
                        f"engine '{engine.name}' has no live task {request.task_id}"
                        + ("" if request.include_foreign else " started by start-engines"),
                        service=engine.name,
                        details={"taskId": request.task_id},
                    )
            ips = {
                t.arn: ctx.ecs.extract_ip(t, engine.name) for t in tasks if t.private_ip or t.eni_id
            }
            removed = 0
            for ip in ips.values():
                removed += len(
                    ctx.targets.deregister_target(
                        engine.target_group_arns, ip, engine.port, engine.name
                    )
                )
            plans.append((engine, tasks, ips))
            results.append((200, {"service": engine.name, "targetsDeregistered": removed}))
        except StartEnginesError as exc:
            results.append((exc.status_code, {**exc.to_body(), "status": "failed"}))
    if request.wait_for_draining:
        pending = [(e, ip) for e, _, ips in plans for ip in ips.values()]
        drained = ctx.targets.wait_until_drained(
            [(arn, ip, e.port) for e, ip in pending for arn in e.target_group_arns],
            deadline.within(ctx.settings.drain_timeout),
            interval=ctx.settings.health_poll_interval,
        )
        if not drained:
            logger.warning(
                "draining did not finish in %ss; stopping anyway", ctx.settings.drain_timeout
            )
    position = {body.get("service"): i for i, (_, body) in enumerate(results)}
    for engine, tasks, _ in plans:
        body = results[position[engine.name]][1]
        try:
            stopped = [
                t.id for t in tasks if ctx.ecs.stop_task(engine.cluster, t.arn, request.reason)
            ]
            body.update(
                status="stopped" if stopped else "nothing-to-stop",
                tasksStopped=len(stopped),
                taskIds=stopped,
            )
            if stopped:
                ctx.publish(ENGINE_STOPPED, {**body, "reason": request.reason})
                logger.info(
                    "stopped %s tasks %s: %s",
                    engine.name,
                    stopped,
                    request.reason,
                    extra={
                        "stop": {
                            "service": engine.name,
                            "reason": request.reason,
                            "taskIds": stopped,
                        }
                    },
                )
        except StartEnginesError as exc:
            body.update(exc.to_body(), status="failed")
            results[position[engine.name]] = (exc.status_code, body)
    outcome = combine(results)
    outcome.body["tasksStopped"] = sum(b.get("tasksStopped", 0) for _, b in results)
    outcome.body["targetsDeregistered"] = sum(b.get("targetsDeregistered", 0) for _, b in results)
    return outcome
