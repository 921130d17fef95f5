"""Putting a task behind its target groups safely, for every path that registers one.

A stop tags a task `stopping` before it deregisters it. Whoever registers a task therefore
looks at the task again after RegisterTargets: if a stop claimed it in between, the targets
come back out. Either the registration lands before the stop's deregistration (which then
removes it), or the claim is visible to this second look.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from start_engines import checkpoints

if TYPE_CHECKING:
    from collections.abc import Sequence

    from start_engines.config import EngineConfig
    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.context import Context


def register_checked(
    ctx: Context,
    engine: EngineConfig,
    task: TaskInfo,
    ip: str,
    groups: Sequence[str] | None = None,
) -> TaskInfo:
    """Register ip:port in `groups` (default: every group of the engine). Returns the task as
    it is now; when a stop claimed it meanwhile (`being_stopped`), its targets are out again."""
    groups = list(groups or engine.target_group_arns)
    ctx.targets.register_target(groups, ip, engine.port, engine.name)
    checkpoints.reached("register.verify", service=engine.name, taskArn=task.arn)
    current = ctx.ecs.describe(task.cluster or engine.cluster, [task.arn]).get(task.arn)
    if current is not None and current.being_stopped:
        ctx.targets.deregister_target(groups, ip, engine.port, engine.name)
    return current or task


def stopped_by_request(task: TaskInfo) -> bool:
    """Someone stopped the task on purpose (a stop, a reap, StopTask in the console)."""
    return bool(task.stopping) or task.stop_code == "UserInitiated"


EARLY_STATUSES = ("PENDING", "ACTIVATING")  # the ENI is attached: the task has its IP


def ready_to_register(task: TaskInfo, engine: EngineConfig) -> bool:
    """A live task of the engine's that no stop has claimed, with its IP, at the point the
    engine registers (`registerAt`): RUNNING, or as soon as its IP is known."""
    if not task.is_live or task.stopping:
        return False
    if task.is_running:  # its IP from the attachment, or from its network interface
        return True
    early = engine.register_at == "ip" and task.last_status in EARLY_STATUSES
    return early and task.private_ip is not None


def failed_before_running(task: TaskInfo) -> bool:
    """The task ended before it ever ran, and nobody stopped it: a failed start."""
    return (
        task.is_stopped
        and task.started_at is None
        and not stopped_by_request(task)
        and not (task.stopped_reason or "").startswith("start-engines:")
    )


def settle_handed_off(ctx: Context, engine: EngineConfig, task: TaskInfo) -> bool:
    """The task of a handed-off start has ended: its claim becomes the failure cooldown if
    the task failed before it ran, else the claim ends. True if this call settled it."""
    if ctx.lease is None:
        return False
    if failed_before_running(task):
        error = f"task {task.id} stopped before it ran: {task.stopped_reason}"
        return ctx.lease.fail_claim(
            engine.name,
            task.arn,
            error,
            "TaskStopped",
            ctx.clock.wall(),
            ctx.settings.lease_cooldown,
        )
    return ctx.lease.end_claim(engine.name, task.arn)
