"""The start's rounds: DescribeTasks on the budget, register at RUNNING, target health."""

from __future__ import annotations

from typing import TYPE_CHECKING

from start_engines.ecs_handler import running_or_raise
from start_engines.engines.budget import STAGES
from start_engines.engines.outcome import state_of, target_group_name
from start_engines.engines.start_job import JobState
from start_engines.errors import StartEnginesError, StartTimeout

if TYPE_CHECKING:
    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.budget import DescribeBudget
    from start_engines.engines.context import Context
    from start_engines.engines.start import Starter
    from start_engines.engines.start_job import StartJob
    from start_engines.target_group_handler import TargetHealth


def poll_tasks(
    ctx: Context, jobs: list[StartJob], starter: Starter, budget: DescribeBudget
) -> None:
    """One round: DescribeTasks for the clusters the budget picks (each call carries all of
    that cluster's tasks in flight), then move every job whose tasks were seen."""
    # Tasks known to be RUNNING already (a reused task) need no poll to be registered.
    seen: dict[str, TaskInfo] = {
        t.arn: t
        for job in jobs
        if all(t.is_running for t in job.tasks.values())
        for t in job.tasks.values()
    }
    waiting = [job for job in jobs if not all(arn in seen for arn in job.tasks)]
    by_cluster: dict[str, list[str]] = {}
    stage: dict[str, int] = {}
    for job in waiting:
        by_cluster.setdefault(job.engine.cluster, []).extend(job.tasks)
        for task in job.tasks.values():
            stage[job.engine.cluster] = max(
                stage.get(job.engine.cluster, 0), STAGES.get(task.last_status, 0)
            )
    polled = budget.choose(stage) if stage else []
    for cluster in polled:
        try:
            seen.update(ctx.ecs.describe(cluster, by_cluster[cluster]))
        except StartEnginesError as exc:
            for job in waiting:
                if job.engine.cluster == cluster:
                    job.fail(exc)
    for job in jobs:
        if job.state is JobState.WATCH and (job not in waiting or job.engine.cluster in polled):
            starter.guard(job, lambda job=job: advance(ctx, job, seen, starter))  # type: ignore[misc]


def advance(ctx: Context, job: StartJob, seen: dict[str, TaskInfo], starter: Starter) -> None:
    for arn, previous in list(job.tasks.items()):
        info = seen.get(arn)
        current = (
            running_or_raise(info, arn, job.engine.name)
            if info is None or info.is_stopped
            else info
        )
        if current.last_status != previous.last_status:
            job.progress(
                "status",
                f"task {current.id} is {current.last_status}",
                ctx.clock.now() - job.began,
                taskId=current.id,
                lastStatus=current.last_status,
            )
        job.tasks[arn] = current
    if not all(t.is_running for t in job.tasks.values()):
        return
    job.timings["running"] = round(ctx.clock.now() - job.began, 3)
    engine = job.engine
    for task in job.tasks.values():
        ip = ctx.ecs.extract_ip(task, engine.name)
        job.ips[task.arn] = ip
        ctx.targets.register_target(engine.target_group_arns, ip, engine.port, engine.name)
        job.progress(
            "registered",
            f"{ip}:{engine.port} registered in {len(engine.target_group_arns)} target group(s)",
            ctx.clock.now() - job.began,
            taskId=task.id,
            privateIp=ip,
        )
    job.timings["registered"] = round(ctx.clock.now() - job.began, 3)
    if starter.request.wait_for_healthy:
        job.move(JobState.HEALTH)
    else:
        record_health(ctx, job, health_snapshot(ctx, job))
        job.move(JobState.DONE)


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
        record_health(ctx, job, {arn: cache[arn] for arn in job.engine.target_group_arns})
        if all(s == "healthy" for states in job.health.values() for s in states.values()):
            job.timings["healthy"] = round(ctx.clock.now() - job.began, 3)
            job.move(JobState.DONE)

    for job in jobs:
        starter.guard(job, lambda job=job: check(job))  # type: ignore[misc]


def timeout_error(job: StartJob) -> StartTimeout:
    if job.state is JobState.HEALTH:
        return StartTimeout(
            f"engine '{job.engine.name}' registered but not healthy in time",
            service=job.engine.name,
            details={"healthStatus": next(iter(job.health.values()), {})},
        )
    statuses = {t.id: t.last_status for t in job.tasks.values()}
    what = f"task(s) {statuses}" if statuses else "the concurrent start it followed"
    return StartTimeout(
        f"engine '{job.engine.name}': {what} did not reach RUNNING in time",
        service=job.engine.name,
        details={
            "lastStatus": next(iter(statuses.values()), "UNKNOWN"),
            "taskIds": list(statuses),
        },
    )
