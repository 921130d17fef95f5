"""Stop: claim each task (tag it `stopping`), deregister it from every target group, then,
after draining if asked, StopTask exactly the claimed tasks. Only tasks the engine owns,
unless includeForeign. A StopTask that is refused gives the task back: untagged and
registered again, and the answer says so."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from start_engines import checkpoints
from start_engines.config import env_prefix
from start_engines.engines.outcome import Outcome, combine, not_configured
from start_engines.engines.routing import asleep
from start_engines.errors import ConfigError, ForeignNotAllowed, NoSuchTask, StartEnginesError
from start_engines.event_publisher import ENGINE_STOPPED

if TYPE_CHECKING:
    from start_engines.clock import Deadline
    from start_engines.config import EngineConfig
    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.context import Context
    from start_engines.events import StopRequest

logger = logging.getLogger(__name__)


@dataclass
class Claim:
    """The tasks one stop decided on for one engine, and the targets it took out."""

    engine: EngineConfig
    reason: str
    tasks: list[TaskInfo]
    ips: dict[str, str] = field(default_factory=dict)  # task ARN -> IP
    removed: dict[str, list[str]] = field(default_factory=dict)  # task ARN -> groups

    @property
    def targets_removed(self) -> int:
        return sum(len(groups) for groups in self.removed.values())


def stop(ctx: Context, request: StopRequest, deadline: Deadline) -> Outcome:
    claims: list[Claim] = []
    results: list[tuple[int, dict[str, Any]]] = []
    selected = ctx.select(request.services)
    if request.include_foreign:  # refused as a whole, before anything is touched
        for engine in selected:
            if not isinstance(engine, ConfigError) and not engine.allow_include_foreign:
                raise ForeignNotAllowed(
                    f"engine '{engine.name}' does not allow includeForeign: it would stop tasks "
                    f"start-engines did not start; allow it with "
                    f"{env_prefix(engine.name)}_ALLOW_INCLUDE_FOREIGN=true or "
                    "allowIncludeForeign in ENGINES_CONFIG",
                    service=engine.name,
                    field="includeForeign",
                )
    for engine in selected:
        if isinstance(engine, ConfigError):
            results.append(not_configured(engine, request.services is None))
            continue
        try:
            if ctx.lease is not None and not request.task_id:
                ctx.lease.preempt(engine.name, ctx.clock.wall())  # a start in flight gives way
            tasks = _decide(ctx, engine, request)
            claims.append(claim(ctx, engine, tasks, request.reason))
            results.append((200, {"service": engine.name}))
        except StartEnginesError as exc:
            failed = {**exc.to_body(), "service": engine.name, "status": "failed"}
            results.append((exc.status_code, failed))
    if request.wait_for_draining:
        drain(ctx, claims, deadline)
    position = {body.get("service"): i for i, (_, body) in enumerate(results)}
    for done in claims:
        results[position[done.engine.name]] = finish(ctx, done)
    outcome = combine(results)
    outcome.body["tasksStopped"] = sum(b.get("tasksStopped", 0) for _, b in results)
    outcome.body["targetsDeregistered"] = sum(b.get("targetsDeregistered", 0) for _, b in results)
    return outcome


def _decide(ctx: Context, engine: EngineConfig, request: StopRequest) -> list[TaskInfo]:
    """The engine's live tasks, including those a start has run but ListTasks may not show
    yet (named in the engine's claim), and those another stop already claimed."""
    tasks = ctx.ecs.find_tasks(
        engine, include_foreign=request.include_foreign, include_stopping=True
    )
    holder = ctx.lease.holder(engine.name) if ctx.lease is not None else None
    known = {t.arn for t in tasks}
    missing = [arn for arn in (holder.task_arns if holder else ()) if arn not in known]
    if missing:
        tasks += [
            t
            for t in ctx.ecs.describe(engine.cluster, missing).values()
            if t.is_live and t.owned_by(engine)
        ]
    if request.task_id:
        tasks = [t for t in tasks if request.task_id in (t.id, t.arn)]
        if not tasks:
            raise NoSuchTask(
                f"engine '{engine.name}' has no live task {request.task_id}"
                + ("" if request.include_foreign else " started by start-engines"),
                service=engine.name,
                details={"taskId": request.task_id},
            )
    return tasks


def claim(ctx: Context, engine: EngineConfig, tasks: list[TaskInfo], reason: str) -> Claim:
    """Tag every task `stopping`, then take its targets out: in this order, so that no other
    path registers it again in between (see serving.register_checked)."""
    decided = Claim(engine, reason, [])
    now = ctx.clock.wall()
    try:
        for task in tasks:
            ctx.ecs.mark_stopping(task, reason, now)
            decided.tasks.append(task)
        if engine.wakeable and tasks and not ctx.ecs.find_tasks(engine):
            asleep(ctx, engine)  # the rule leaves the engine before its last targets do
        checkpoints.reached("stop.claimed", service=engine.name)
        for task in tasks:
            if task.private_ip or task.eni_id:
                ip = ctx.ecs.extract_ip(task, engine.name)
                decided.ips[task.arn] = ip
                decided.removed[task.arn] = ctx.targets.deregister_target(
                    engine.target_group_arns, ip, engine.port, engine.name
                )
    except StartEnginesError:
        for task in decided.tasks:  # a claim half made is no claim: give every task back
            _give_back(ctx, decided, task)
        raise
    if engine.wakeable and tasks:
        asleep(ctx, engine, unless_healthy=True)  # undo a wake that switched in between
    if ctx.lease is not None:
        for task in tasks:  # a handed-off start of these tasks is over
            ctx.lease.end_claim(engine.name, task.arn)
    return decided


def drain(ctx: Context, claims: list[Claim], deadline: Deadline) -> None:
    """Wait until the claimed targets have left `draining` (bounded); StopTask comes after."""
    checkpoints.reached("stop.drain", services=[c.engine.name for c in claims])
    drained = ctx.targets.wait_until_drained(
        [
            (arn, ip, c.engine.port)
            for c in claims
            for ip in c.ips.values()
            for arn in c.engine.target_group_arns
        ],
        deadline.within(ctx.settings.drain_timeout),
        interval=ctx.settings.health_poll_interval,
    )
    if not drained:
        logger.warning(
            "draining did not finish in %ss; stopping anyway", ctx.settings.drain_timeout
        )


def finish(ctx: Context, done: Claim) -> tuple[int, dict[str, Any]]:
    """StopTask each claimed task; give back any task whose StopTask is refused."""
    engine = done.engine
    body: dict[str, Any] = {"service": engine.name, "targetsDeregistered": done.targets_removed}
    stopped: list[str] = []
    error: StartEnginesError | None = None
    restored: list[dict[str, Any]] = []
    for task in done.tasks:
        try:
            if ctx.ecs.stop_task(task.cluster or engine.cluster, task.arn, done.reason):
                stopped.append(task.id)
        except StartEnginesError as exc:
            error = error or exc
            restored.append(_give_back(ctx, done, task))
    body.update(
        status="stopped" if stopped else "nothing-to-stop",
        tasksStopped=len(stopped),
        taskIds=stopped,
    )
    if stopped:
        ctx.publish(ENGINE_STOPPED, {**body, "reason": done.reason})
        logger.info(
            "stopped %s tasks %s: %s",
            engine.name,
            stopped,
            done.reason,
            extra={"stop": {"service": engine.name, "reason": done.reason, "taskIds": stopped}},
        )
    if error is None:
        return 200, body
    body.update(error.to_body(), status="failed", tasksNotStopped=restored)
    return error.status_code, body


def _give_back(ctx: Context, done: Claim, task: TaskInfo) -> dict[str, Any]:
    """Undo the claim on a task that StopTask refused: untag it, register it again. Unless
    someone else has stopped it meanwhile: then it stays claimed and out."""
    engine = done.engine
    left: dict[str, Any] = {"taskId": task.id, "targetsRestored": []}
    try:
        now = ctx.ecs.describe(task.cluster or engine.cluster, [task.arn]).get(task.arn)
        if now is None or now.desired_status == "STOPPED" or now.is_stopped:
            left["state"] = "stopped by another operation"
            return left
        ctx.ecs.unmark_stopping(task)
        groups = done.removed.get(task.arn, [])
        ip = done.ips.get(task.arn)
        if ip and groups:
            left["targetsRestored"] = ctx.targets.register_target(
                groups, ip, engine.port, engine.name
            )
        left["state"] = "running, targets restored"
    except StartEnginesError as exc:
        left.update(state="running, not registered", error=exc.message)
        logger.error("could not give back task %s of %s: %s", task.id, engine.name, exc.message)
    return left
