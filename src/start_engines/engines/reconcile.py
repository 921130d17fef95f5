"""Reconcile: keep target groups true to an ECS Task State Change. Events come at least once
and out of order, so the task's current state (DescribeTasks) decides, not the event."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from start_engines.ecs_handler import STARTED_BY, STOPPED_STATUSES
from start_engines.engines.outcome import Outcome
from start_engines.engines.routing import asleep, await_wake
from start_engines.engines.serving import (
    failed_before_running,
    ready_to_register,
    register_checked,
    settle_handed_off,
)
from start_engines.errors import StartEnginesError
from start_engines.event_publisher import ENGINE_READY, ENGINE_START_FAILED, ENGINE_STOPPED

if TYPE_CHECKING:
    from start_engines.clock import Deadline
    from start_engines.config import EngineConfig
    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.context import Context
    from start_engines.events import TaskStateChange

logger = logging.getLogger(__name__)


def on_task_state_change(ctx: Context, change: TaskStateChange, deadline: Deadline) -> Outcome:
    task_id = change.task_arn.rsplit("/", 1)[-1]
    base: dict[str, Any] = {
        "taskId": task_id,
        "eventLastStatus": change.last_status,
        "eventVersion": change.version,
    }
    if change.started_by != STARTED_BY:
        logger.debug(
            "ignoring task %s: started by %r, not start-engines", task_id, change.started_by
        )
        return Outcome(200, {**base, "action": "ignored", "reason": "not started by start-engines"})
    cluster = change.cluster_arn.rsplit("/", 1)[-1]
    if cluster not in ctx.engine_clusters():
        return Outcome(200, {**base, "action": "ignored", "reason": "not an engine's cluster"})
    seen_at = ctx.clock.wall()  # before the look: what it shows is at least this fresh
    current = ctx.ecs.describe(cluster, [change.task_arn]).get(change.task_arn)
    engine = ctx.engine_of(current, cluster, change.task_definition_arn)
    if engine is None:
        logger.debug("ignoring task %s: no configured engine runs in %s", task_id, cluster)
        return Outcome(
            200, {**base, "action": "ignored", "reason": "no configured engine for this task"}
        )
    if ctx.lease is not None and current is not None:  # pushed: a start reads it, not ECS
        try:
            ctx.lease.record_task_state(current, seen_at, ctx.clock.wall())
        except StartEnginesError as exc:  # only a start's shortcut: it polls ECS instead
            logger.warning("task %s: state not recorded: %s", task_id, exc.message)
    base.update(
        service=engine.name,
        lastStatus=current.last_status if current else "MISSING",
        version=current.version if current else None,
    )
    if current is not None and current.stopping and not current.is_stopped:
        _end_claim(ctx, engine, current)
        return Outcome(200, {**base, "action": "none", "reason": "a stop has claimed the task"})
    if current is None and change.last_status not in STOPPED_STATUSES:
        # ECS reads are eventually consistent: not visible yet is not gone
        return Outcome(200, {**base, "action": "none", "reason": "the task is not visible yet"})
    if current is not None and current.is_live and current.is_running:
        result = _running(ctx, engine, current, base)
        if engine.wakeable and result["action"] in ("registered", "already-registered"):
            result["routing"] = "awake" if await_wake(ctx, engine, deadline) else "unchanged"
        return Outcome(200, result)
    if current is None or current.is_stopped or current.desired_status == "STOPPED":
        return Outcome(200, _stopped(ctx, engine, current, change, base))
    if ready_to_register(current, engine):  # registerAt ip: its IP is known, it is starting
        return Outcome(200, _early(ctx, engine, current, base))
    return Outcome(200, {**base, "action": "none", "reason": "the task is still starting"})


def _missing(ctx: Context, engine: EngineConfig, ip: str) -> list[str]:
    """The engine's groups where ip:port is absent or leaving (`unused` is registered: its AZ
    is not served, and registering again changes nothing)."""
    before = ctx.targets.health_of(engine.target_group_arns, ip, engine.port, engine.name)
    return [g for g, state in before.items() if state in ("unregistered", "draining")]


def _early(
    ctx: Context, engine: EngineConfig, task: TaskInfo, base: dict[str, Any]
) -> dict[str, Any]:
    """Register a starting task as soon as its IP is known, so the ALB's registration delay
    passes while the image is pulled. The start's claim stays until RUNNING."""
    ip = ctx.ecs.extract_ip(task, engine.name)
    missing = _missing(ctx, engine, ip)
    if not missing:
        return {**base, "action": "already-registered", "privateIp": ip, "targetGroupArns": []}
    if register_checked(ctx, engine, task, ip, missing).being_stopped:
        return {**base, "action": "none", "reason": "a stop claimed the task while registering"}
    logger.info(
        "task %s of %s is %s with IP %s; registered early in %d group(s)",
        task.id,
        engine.name,
        task.last_status,
        ip,
        len(missing),
    )
    return {**base, "action": "registered", "privateIp": ip, "targetGroupArns": missing}


def _running(
    ctx: Context, engine: EngineConfig, task: TaskInfo, base: dict[str, Any]
) -> dict[str, Any]:
    """Register a RUNNING task where it is missing; that completes an asynchronous start."""
    ip = ctx.ecs.extract_ip(task, engine.name)
    missing = _missing(ctx, engine, ip)
    if not missing:
        # registered early (at its IP): RUNNING completes a handed-off start all the same;
        # without a lease table nothing tells which start it was, so Engine Ready is told
        # (EventBridge's own delivery is at least once: subscribers handle a second one)
        if _end_claim(ctx, engine, task) or ctx.lease is None:
            _ready(ctx, engine, task, ip)
        return {**base, "action": "already-registered", "privateIp": ip, "targetGroupArns": []}
    if register_checked(ctx, engine, task, ip, missing).being_stopped:
        return {**base, "action": "none", "reason": "a stop claimed the task while registering"}
    _end_claim(ctx, engine, task)
    logger.info(
        "task %s of %s is RUNNING; registered in %d missing group(s)",
        task.id,
        engine.name,
        len(missing),
    )
    _ready(ctx, engine, task, ip)
    return {**base, "action": "registered", "privateIp": ip, "targetGroupArns": missing}


def _ready(ctx: Context, engine: EngineConfig, task: TaskInfo, ip: str) -> None:
    """Engine Ready for an asynchronous start: its task RUNNING and registered."""
    health = ctx.targets.health_of(engine.target_group_arns, ip, engine.port, engine.name)
    primary = engine.target_group_arns[0]
    ctx.publish(
        ENGINE_READY,
        {
            "message": f"Engine '{engine.name}' started at {ip}:{engine.port}",
            "service": engine.name,
            "taskArn": task.arn,
            "taskId": task.id,
            "privateIp": ip,
            "port": engine.port,
            "targetGroupArn": primary,
            "healthStatus": health[primary],
        },
    )


def _stopped(
    ctx: Context,
    engine: EngineConfig,
    task: TaskInfo | None,
    change: TaskStateChange,
    base: dict[str, Any],
) -> dict[str, Any]:
    """Deregister a task that is stopping, unless its IP already serves another live task."""
    failed_start = task is not None and failed_before_running(task)
    if task is not None and failed_start:
        # a handed-off start failed: its claim becomes the cooldown, as a live start's would
        settle_handed_off(ctx, engine, task)
    elif task is not None:
        _end_claim(ctx, engine, task)
    if task is not None and failed_start:
        exit_codes = dict(task.exit_codes)
        ctx.publish(
            ENGINE_START_FAILED,
            {
                "error": f"task {task.id} stopped before it ran: {task.stopped_reason}",
                "errorType": "TaskStopped",
                "service": engine.name,
                "taskId": task.id,
                "taskArn": task.arn,
                "stoppedReason": task.stopped_reason,
                "stopCode": task.stop_code,
                "exitCodes": exit_codes,
            },
        )
    ip = (task.private_ip if task else None) or change.private_ip
    if not ip:
        return {**base, "action": "none", "reason": "the task has no IP"}
    others = [t for t in ctx.ecs.find_tasks(engine) if t.arn != change.task_arn]
    if any(t.private_ip == ip for t in others):
        return {**base, "action": "none", "reason": f"{ip} now belongs to another live task"}
    if engine.wakeable and not others:
        asleep(ctx, engine)  # the last task: the rule leaves it before its targets do
    removed = ctx.targets.deregister_target(engine.target_group_arns, ip, engine.port, engine.name)
    if engine.wakeable:
        asleep(ctx, engine, unless_healthy=True)
    logger.info(
        "task %s of %s is stopping; deregistered from %d group(s)",
        base["taskId"],
        engine.name,
        len(removed),
    )
    if removed and task is not None and task.started_at is not None:
        ctx.publish(
            ENGINE_STOPPED,
            {
                "service": engine.name,
                "status": "stopped",
                "taskIds": [task.id],
                "tasksStopped": 1,
                "targetsDeregistered": len(removed),
                "reason": task.stopped_reason,
            },
        )
    return {
        **base,
        "action": "deregistered" if removed else "already-deregistered",
        "privateIp": ip,
        "targetGroupArns": removed,
    }


def _end_claim(ctx: Context, engine: EngineConfig, task: TaskInfo) -> bool:
    """A start handed off with this task is over: its claim on the engine ends. True if it
    was this call that ended it."""
    if ctx.lease is not None and ctx.lease.end_claim(engine.name, task.arn):
        logger.info("the handed-off start of %s with task %s is over", engine.name, task.id)
        return True
    return False
