"""The start's rounds: DescribeTasks on the budget, register as soon as a task is ready
(its IP known, or RUNNING: the engine's registerAt), confirm at RUNNING, target health."""

from __future__ import annotations

import dataclasses
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from start_engines import checkpoints
from start_engines.ecs_handler import running_or_raise
from start_engines.engines.budget import CONFIRMING, STAGES
from start_engines.engines.outcome import state_of, target_group_name
from start_engines.engines.serving import ready_to_register, stopped_by_request
from start_engines.engines.start_job import JobState
from start_engines.errors import (
    StartEnginesError,
    StartTimeout,
    StoppedDuringStart,
    TargetNotInUse,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.budget import DescribeBudget
    from start_engines.engines.context import Context
    from start_engines.engines.start import Starter
    from start_engines.engines.start_job import StartJob
    from start_engines.target_group_handler import TargetHealth


logger = logging.getLogger(__name__)

NOT_IN_USE = "Target.NotInUse"
MISSING_GRACE = 30.0  # seconds: ECS reads are eventually consistent for a task this young
MOVERS = 10  # calls at once in a round: DescribeTasks per cluster, each job's registration
T = TypeVar("T")
CLOCK_SKEW = 0.1  # seconds two Lambda hosts' clocks may differ by (both NTP-synchronised)
QUIET_SECONDS = 5.0  # a task's recorded state spares its DescribeTasks this long, no longer


def poll_tasks(
    ctx: Context,
    jobs: list[StartJob],
    starter: Starter,
    budget: DescribeBudget | None,
) -> bool:
    """One round: DescribeTasks for the clusters the budget picks (each call carries all of
    that cluster's tasks in flight), then move every job whose tasks were seen. Jobs waiting
    for health stay on the budget too, so a task that dies is noticed at once. Without a
    budget, only the recorded states (a round between rounds). True if the budget is short:
    more clusters have tasks in flight than it looks at in a round."""
    # A reused task known to be RUNNING needs no poll to be registered (its registration is
    # confirmed by the next round, like any other).
    seen: dict[str, TaskInfo] = {
        t.arn: t
        for job in jobs
        if job.state is JobState.WATCH and all(t.is_running for t in job.tasks.values())
        for t in job.tasks.values()
    }
    polling = [job for job in jobs if not all(arn in seen for arn in job.tasks)]
    quiet: set[str] = set()
    seen.update(pushed(ctx, jobs, seen, quiet))
    waiting = [job for job in jobs if not all(arn in seen for arn in job.tasks)]
    by_cluster: dict[str, list[str]] = {}
    stage: dict[str, int] = {}
    for job in polling:  # a look is fresher than a record: spare budget still looks
        by_cluster.setdefault(job.engine.cluster, []).extend(job.tasks)
        for task in job.tasks.values():
            rank = CONFIRMING if job.state is JobState.CONFIRM else STAGES.get(task.last_status, 0)
            stage[job.engine.cluster] = max(stage.get(job.engine.cluster, 0), rank)
    # clusters whose every task an event told or will tell about get what budget is left over
    loud = {
        job.engine.cluster
        for job in waiting
        if not all(arn in seen or arn in quiet for arn in job.tasks)
    }
    polled: list[str] = []
    if budget is not None:
        polled = budget.choose({c: r for c, r in stage.items() if c in loud}) if loud else []
        hushed = {c: r for c, r in stage.items() if c not in loud}
        polled += budget.choose(hushed) if hushed else []
    looked: dict[str, dict[str, TaskInfo]] = {}

    def look(cluster: str) -> None:
        try:
            looked[cluster] = ctx.ecs.describe(cluster, by_cluster[cluster])
        except StartEnginesError as exc:
            for job in polling:
                if job.engine.cluster == cluster:
                    job.fail(exc)

    in_parallel(look, polled)  # one call per cluster: the round takes the time of one
    for found in looked.values():
        seen.update(found)
    moving = [
        job for job in jobs if job.active and (job not in waiting or job.engine.cluster in polled)
    ]

    # each job its own targets: ten registrations take the time of one
    in_parallel(lambda job: starter.guard(job, lambda: advance(ctx, job, seen, starter)), moving)
    return budget is not None and len(stage) > budget.rate * ctx.settings.poll_interval


def in_parallel(step: Callable[[T], None], items: list[T]) -> None:
    """step(item) for each item, at most MOVERS at once (inline for a single item)."""
    if len(items) > 1:
        with ThreadPoolExecutor(min(len(items), MOVERS)) as pool:
            list(pool.map(step, items))
    else:
        for item in items:
            step(item)


def pushed(
    ctx: Context, jobs: list[StartJob], seen: dict[str, TaskInfo], quiet: set[str]
) -> dict[str, TaskInfo]:
    """What the task-state entry point recorded (one BatchGetItem for the round), as seen
    tasks: a look of a newer version than the job knows or, for a registered task, a look
    that began after its registration (the confirming look: it would show a stop's claim
    made before it, as DescribeTasks would). A task whose record is recent and as new as what
    the job knows goes in `quiet`: its next change comes as an event, so it is polled only
    with budget to spare (for QUIET_SECONDS at most). The rest is left to DescribeTasks, as
    is everything when the records cannot be read."""
    watched = [arn for job in jobs for arn in job.tasks if arn not in seen]
    if ctx.lease is None or not watched:
        return {}
    try:
        records = ctx.lease.task_states(watched)
    except StartEnginesError as exc:
        logger.warning("task states unread, polling ECS instead: %s", exc.message)
        return {}
    now = ctx.clock.wall().timestamp()
    found: dict[str, TaskInfo] = {}
    for job in jobs:
        confirming = job.state is JobState.CONFIRM
        for arn, known in job.tasks.items():
            record = records.get(arn)
            if record is None:
                continue
            registered = job.registered_at.get(arn)
            after = (registered + CLOCK_SKEW) if registered else (math.inf if confirming else 0)
            newer = record.version > known.version or (
                confirming and record.version == known.version
            )
            if newer and record.seen_at > after:
                task = dataclasses.replace(
                    known,
                    last_status=record.last_status,
                    desired_status=record.desired_status,
                    private_ip=record.private_ip or known.private_ip,
                    stopping=record.stopping,
                    version=record.version,
                )
                # a task stopping on its own: DescribeTasks tells why (reason, exit codes)
                if not task.being_stopped or task.stopping:
                    found[arn] = task
            elif (
                not confirming
                and record.version == known.version
                and now - record.seen_at < QUIET_SECONDS
            ):
                quiet.add(arn)  # nothing new, and an event will tell what is
    return found


def advance(ctx: Context, job: StartJob, seen: dict[str, TaskInfo], starter: Starter) -> None:
    for arn, previous in list(job.tasks.items()):
        current = seen.get(arn)
        if current is None and ctx.clock.now() - job.began < MISSING_GRACE:
            continue  # not visible yet: eventual consistency, not a lost task
        if current is None or current.being_stopped:
            raise start_error(current, arn, job)
        if current.last_status != previous.last_status:
            text = f"task {current.id} is {current.last_status}"
            job.task_progress("status", text, current, ctx.clock.now())
        job.tasks[arn] = current
    if job.state is JobState.CONFIRM:  # seen after registering, and no stop claimed it
        confirm(ctx, job, starter)
        return
    if job.state is not JobState.WATCH:
        return
    fresh = register_ready(ctx, job)
    if not all(t.is_running for t in job.tasks.values()):
        return
    job.timings["running"] = round(ctx.clock.now() - job.began, 3)
    job.health_deadline = starter.deadline.within(ctx.settings.health_timeout)
    job.move(JobState.CONFIRM)
    if not fresh:  # registered in an earlier round: this round's look was the second one
        confirm(ctx, job, starter)


def register_ready(ctx: Context, job: StartJob) -> list[str]:
    """Register each task that has become ready (registerAt: its IP known, or RUNNING) and is
    not registered yet. Returns the ARNs registered now; their confirming look is next round."""
    engine = job.engine
    fresh: list[str] = []
    for task in job.tasks.values():
        if task.arn in job.ips or not ready_to_register(task, engine):
            continue
        ip = ctx.ecs.extract_ip(task, engine.name)
        job.ips[task.arn] = ip
        ctx.targets.register_target(engine.target_group_arns, ip, engine.port, engine.name)
        job.registered_at[task.arn] = ctx.clock.wall().timestamp()  # a confirming look is later
        fresh.append(task.arn)
        already = "" if task.arn in job.started else " (already running)"
        early = "" if task.is_running else f" while {task.last_status}"
        job.progress(
            "registered",
            f"{ip}:{engine.port} registered in {len(engine.target_group_arns)} target group(s)"
            + early
            + already,
            ctx.clock.now() - job.began,
            taskId=task.id,
            privateIp=ip,
        )
    if fresh and "registered" not in job.timings:
        job.timings["registered"] = round(ctx.clock.now() - job.began, 3)
    if fresh:  # a later round looks at the tasks again before any answer
        checkpoints.reached("start.registered", service=engine.name)
    return fresh


def confirm(ctx: Context, job: StartJob, starter: Starter) -> None:
    """Registered and RUNNING, and a look after registering shows no stop claimed the tasks."""
    if starter.request.wait_for_healthy:
        job.move(JobState.HEALTH)
        return
    snapshot = health_snapshot(ctx, job)
    record_health(ctx, job, snapshot)
    unused = not_in_use(job, snapshot)
    if unused:
        job.warnings.append(unused_text(unused) + "; run `start-engines config check`")
    job.move(JobState.DONE)


def start_error(task: TaskInfo | None, arn: str, job: StartJob) -> StartEnginesError:
    """Why a watched task will not serve: a stop took it, it died, or ECS lost it."""
    if task is not None and stopped_by_request(task):
        reason = task.stopping.split(" ", 1)[-1] if task.stopping else task.stopped_reason
        return StoppedDuringStart(
            f"engine '{job.engine.name}': task {task.id} was stopped during this start "
            f"({reason or 'StopTask'}); start again for a fresh task",
            service=job.engine.name,
            details={"taskId": task.id, "stopReason": reason},
        )
    if task is not None and not task.is_stopped:  # desired STOPPED, still shutting down
        task = dataclasses.replace(task, last_status="STOPPED")
    try:
        running_or_raise(task, arn, job.engine.name)
    except StartEnginesError as exc:
        return exc
    raise AssertionError("a task that will not serve passed running_or_raise")


def health_snapshot(ctx: Context, job: StartJob) -> dict[str, list[TargetHealth]]:
    return {
        arn: ctx.targets.get_target_health(arn, job.engine.name)
        for arn in job.engine.target_group_arns
    }


def record_health(ctx: Context, job: StartJob, by_group: dict[str, list[TargetHealth]]) -> None:
    """Store each task's state in each group; log it when it changed."""
    states = {
        task_arn: {
            group: state_of(targets, ip, job.engine.port) for group, targets in by_group.items()
        }
        for task_arn, ip in job.ips.items()
    }
    if states != job.health:
        job.health = states
        summary = ", ".join(
            f"{target_group_name(g)} {s}" for g, s in next(iter(states.values())).items()
        )
        job.progress("health", f"target health: {summary}", ctx.clock.now() - job.began)


def poll_health(ctx: Context, jobs: list[StartJob], starter: Starter) -> None:
    """One DescribeTargetHealth per target group per round, shared by every job."""
    cache: dict[str, list[TargetHealth]] = {}

    def check(job: StartJob) -> None:
        for arn in job.engine.target_group_arns:
            if arn not in cache:
                cache[arn] = ctx.targets.get_target_health(arn, job.engine.name)
        by_group = {arn: cache[arn] for arn in job.engine.target_group_arns}
        record_health(ctx, job, by_group)
        unused = not_in_use(job, by_group)
        if unused:
            raise TargetNotInUse(
                f"engine '{job.engine.name}': {unused_text(unused)}; it would never become "
                "healthy. Run `start-engines config check`",
                service=job.engine.name,
                details={"healthStatus": next(iter(job.health.values()), {})},
            )
        if all(s == "healthy" for states in job.health.values() for s in states.values()):
            job.timings["healthy"] = round(ctx.clock.now() - job.began, 3)
            job.move(JobState.DONE)

    for job in jobs:
        starter.guard(job, lambda job=job: check(job))  # type: ignore[misc]


def not_in_use(job: StartJob, by_group: dict[str, list[TargetHealth]]) -> list[str]:
    """The groups where one of the job's targets is `unused` because its AZ is not served."""
    return [
        group
        for group, targets in by_group.items()
        for t in targets
        if t.ip in job.ips.values() and t.port == job.engine.port and t.reason == NOT_IN_USE
    ]


def unused_text(groups: list[str]) -> str:
    names = ", ".join(sorted({target_group_name(g) for g in groups}))
    return (
        f"its target is unused in {names} ({NOT_IN_USE}): the load balancer does not serve the "
        "task's Availability Zone"
    )


def timeout_error(job: StartJob) -> StartTimeout:
    if job.state is JobState.HEALTH:
        return StartTimeout(
            f"engine '{job.engine.name}' registered but not healthy in time",
            service=job.engine.name,
            details={"healthStatus": next(iter(job.health.values()), {})},
        )
    statuses = {t.id: t.last_status for t in job.tasks.values()}
    what = (
        ", ".join(f"task {task_id} ({status})" for task_id, status in statuses.items())
        if statuses
        else "the concurrent start it followed"
    )
    return StartTimeout(
        f"engine '{job.engine.name}': {what} did not reach RUNNING in time",
        service=job.engine.name,
        details={
            "lastStatus": next(iter(statuses.values()), "UNKNOWN"),
            "taskIds": list(statuses),
        },
    )
