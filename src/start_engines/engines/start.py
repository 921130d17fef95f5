"""Start: RunTask (or reuse), wait for RUNNING, read the IP, register, maybe wait healthy.

A live task of ours is reused instead of starting another. With a lease table, one
invocation starts an engine while the others follow it. One DescribeTasks per cluster per
round serves every task in flight. Any failure after RunTask stops the tasks this
invocation ran and removes their targets (`cleanedUp`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from start_engines.clock import Deadline
from start_engines.engines.budget import DescribeBudget
from start_engines.engines.outcome import Outcome, combine
from start_engines.engines.overrides import task_overrides, with_overrides
from start_engines.engines.start_job import NOT_SERIALISED, JobState, StartJob
from start_engines.engines.start_poll import poll_health, poll_tasks, timeout_error
from start_engines.errors import (
    BadEvent,
    ConfigError,
    InternalError,
    StartEnginesError,
    StartFailedElsewhere,
)
from start_engines.event_publisher import ENGINE_READY, ENGINE_START_FAILED

if TYPE_CHECKING:
    from collections.abc import Callable

    from start_engines.engines.context import Context
    from start_engines.events import StartRequest

logger = logging.getLogger(__name__)


def start(ctx: Context, request: StartRequest, deadline: Deadline) -> Outcome:
    selected = ctx.select(request.services)
    engines = [
        with_overrides(e, request.overrides) for e in selected if not isinstance(e, ConfigError)
    ]
    for engine in engines:
        wanted = request.count or 1
        if wanted > engine.max_tasks:
            raise BadEvent(
                f"count {wanted} exceeds maxTasks {engine.max_tasks} of engine '{engine.name}'",
                service=engine.name,
                field="count",
            )
    starter = Starter(ctx, request)
    began = ctx.clock.now()
    jobs = [StartJob(engine, began) for engine in engines]
    if ctx.lease is None:
        logger.warning(NOT_SERIALISED)
    # RunTask for every engine at once; the waiting is shared below.
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        list(pool.map(lambda job: starter.guard(job, lambda: starter.launch(job)), jobs))
    handoff = deadline.within(request.wait_budget or 0.0) if request.asynchronous else None
    try:
        starter.poll(jobs, deadline, handoff)
    finally:
        for job in jobs:
            starter.finish(job)
    results: list[tuple[int, dict[str, Any]]] = [
        (e.status_code, e.to_body()) for e in selected if isinstance(e, ConfigError)
    ]
    for job in jobs:
        if job.error is not None:
            results.append((job.error.status_code, job.error.to_body()))
            ctx.publish(ENGINE_START_FAILED, results[-1][1])
        elif job.state is JobState.HANDED_OFF:
            results.append((202, job.handoff_body()))
        else:
            results.append((200, job.body(ctx.lease is not None)))
            ctx.publish(ENGINE_READY, results[-1][1])
    if not request.listed and len(results) == 1:
        status, body = results[0]
        return Outcome(status, body)
    return combine(results)


class Starter:
    """The steps of one start request, shared by its engines' jobs."""

    def __init__(self, ctx: Context, request: StartRequest) -> None:
        self.ctx = ctx
        self.request = request

    def guard(self, job: StartJob, step: Callable[[], None]) -> None:
        try:
            step()
        except StartEnginesError as exc:
            job.fail(exc)
        except Exception as exc:
            logger.exception("unexpected error while starting %s", job.engine.name)
            job.fail(InternalError(f"unexpected error: {exc!r}", service=job.engine.name))

    def launch(self, job: StartJob) -> None:
        ctx, engine, request = self.ctx, job.engine, self.request
        job.container = ctx.ecs.container_name(engine)
        if ctx.lease is not None:
            if request.event_id:
                recorded = ctx.lease.event_tasks(request.event_id, engine.name)
                live = (
                    [t for t in ctx.ecs.describe(engine.cluster, recorded).values() if t.is_live]
                    if recorded
                    else []
                )
                if live:
                    logger.info(
                        "event %s was handled already: %s", request.event_id, [t.id for t in live]
                    )
                    job.watch(live, reused=True)
                    return
            if not self.acquire(job):
                logger.info("start of %s is in flight elsewhere; following it", engine.name)
                job.move(JobState.FOLLOW)
                return
        self.run_or_reuse(job)

    def run_or_reuse(self, job: StartJob) -> None:
        ctx, engine, request = self.ctx, job.engine, self.request
        live = sorted(ctx.ecs.find_tasks(engine), key=lambda t: not t.is_running)
        if request.force:
            if len(live) + 1 > engine.max_tasks:
                raise BadEvent(
                    f"engine '{engine.name}' already has {len(live)} task(s); maxTasks is {engine.max_tasks}",
                    service=engine.name,
                    field="force",
                )
            reuse, to_start = [], 1
        else:
            wanted = request.count or 1
            reuse, to_start = live[:wanted], max(0, wanted - len(live))
        if to_start == 0:
            logger.info(
                "%s already has live task(s) %s; reusing", engine.name, [t.id for t in reuse]
            )
            for task in reuse:  # this start resets the engine's idle clock
                ctx.ecs.mark_started(task, ctx.clock.wall())
            job.watch(reuse, reused=True)
            return
        token = client_token(request.event_id, engine.name)
        started = ctx.ecs.start_task(
            engine,
            client_token=token,
            count=to_start,
            overrides=task_overrides(job.container, request.overrides),
        )
        job.started = [t.arn for t in started]
        for task in started:
            job.progress(
                "RunTask",
                f"RunTask accepted: task {task.id} is {task.last_status}",
                ctx.clock.now() - job.began,
                taskId=task.id,
                lastStatus=task.last_status,
            )
        if ctx.lease is not None and request.event_id:
            ctx.lease.remember_event(request.event_id, engine.name, job.started, ctx.clock.wall())
        job.watch([*reuse, *started], reused=bool(reuse))

    def lease_seconds(self) -> float:
        settings = self.ctx.settings
        return settings.start_timeout + settings.health_timeout + settings.deadline_margin

    def poll(self, jobs: list[StartJob], deadline: Deadline, handoff: Deadline | None) -> None:
        """Rounds until every job is done or failed. With `handoff` (asynchronous starts), jobs
        still under way when it passes are handed to the task-state entry point, not failed."""
        ctx = self.ctx
        start_deadline = deadline.within(ctx.settings.start_timeout)
        health_deadline: Deadline | None = None
        budget = DescribeBudget(ctx.clock, ctx.settings.describe_rate)
        while True:
            for job in jobs:
                if job.state is JobState.FOLLOW:
                    self.guard(job, lambda job=job: self.follow(job))  # type: ignore[misc]
            poll_tasks(ctx, [j for j in jobs if j.state is JobState.WATCH], self, budget)
            health_jobs = [j for j in jobs if j.state is JobState.HEALTH]
            if health_jobs:
                if health_deadline is None:
                    health_deadline = deadline.within(ctx.settings.health_timeout)
                poll_health(ctx, health_jobs, self)
            active = [j for j in jobs if j.active]
            if not active:
                return
            if handoff is not None and handoff.expired():
                for job in active:
                    job.move(JobState.HANDED_OFF)
                return
            waiting_for_tasks = any(j.state in (JobState.FOLLOW, JobState.WATCH) for j in active)
            limit = start_deadline if waiting_for_tasks else (health_deadline or deadline)
            if handoff is not None:
                limit = Deadline(limit.clock, min(limit.at, handoff.at))
            elif limit.expired() or deadline.expired():
                for job in active:
                    job.fail(timeout_error(job))
                return
            limit.sleep(
                ctx.settings.poll_interval
                if waiting_for_tasks
                else ctx.settings.health_poll_interval
            )

    def follow(self, job: StartJob) -> None:
        """Another invocation holds the lease: wait for its task, or take over if it let go."""
        live = self.ctx.ecs.find_tasks(job.engine)
        if live:
            wanted = self.request.count or 1
            job.watch(sorted(live, key=lambda t: not t.is_running)[:wanted], reused=True)
        elif self.acquire(job):
            self.run_or_reuse(job)

    def acquire(self, job: StartJob) -> bool:
        """Take the engine's lease for this job. False while another start holds it;
        StartFailedElsewhere during the cooldown after a concurrent start failed."""
        ctx = self.ctx
        assert ctx.lease is not None
        owner = str(uuid.uuid4())
        holder = ctx.lease.acquire(job.engine.name, owner, ctx.clock.wall(), self.lease_seconds())
        if holder is None:
            job.lease_owner = owner
            return True
        if holder.state == "failed":
            raise StartFailedElsewhere(
                f"a concurrent start of '{job.engine.name}' failed moments ago: {holder.error}",
                service=job.engine.name,
                details={
                    "retryAfterSeconds": max(
                        0, round(holder.expires_at - ctx.clock.wall().timestamp())
                    )
                },
            )
        return False

    def finish(self, job: StartJob) -> None:
        """Clean up after a failed start, and hand the lease back."""
        ctx = self.ctx
        error = job.error
        if error is not None and (job.started or job.tasks):
            self.clean_up(job, error)
        if ctx.lease is not None and job.lease_owner:
            try:
                if error is None:
                    ctx.lease.release(job.engine.name, job.lease_owner)
                else:
                    ctx.lease.fail(
                        job.engine.name,
                        job.lease_owner,
                        error.message,
                        ctx.clock.wall(),
                        ctx.settings.lease_cooldown,
                    )
            except StartEnginesError as exc:
                logger.error("could not update the lease of %s: %s", job.engine.name, exc.message)

    def clean_up(self, job: StartJob, error: StartEnginesError) -> None:
        """Stop the tasks this invocation ran and remove their targets. A reused task that
        died loses its targets too; a reused task still alive is left to the start that owns it."""
        ctx, engine = self.ctx, job.engine
        arns = list(dict.fromkeys([*job.started, *job.tasks]))
        report: dict[str, Any] = {"taskId": arns[0].rsplit("/", 1)[-1], "taskArn": arns[0]}
        try:
            seen = ctx.ecs.describe(engine.cluster, arns)
            removed: set[str] = set()
            stopped: list[str] = []
            left: list[str] = []
            for arn in arns:
                info = seen.get(arn)
                task_id = arn.rsplit("/", 1)[-1]
                if arn not in job.started and info is not None and info.is_live:
                    left.append(task_id)
                    continue
                ip = (info.private_ip if info else None) or job.ips.get(arn)
                if ip:
                    removed.update(
                        ctx.targets.deregister_target(
                            engine.target_group_arns, ip, engine.port, engine.name
                        )
                    )
                if arn in job.started:
                    ctx.ecs.stop_task(
                        engine.cluster, arn, f"start-engines: start failed ({error.error_type})"
                    )
                    stopped.append(task_id)
            report.update(cleanedUp=True, tasksStopped=stopped, targetsRemoved=sorted(removed))
            if left:
                report["tasksLeftRunning"] = left
            logger.warning(
                "start of %s failed (%s); stopped %s, removed targets from %s",
                engine.name,
                error.error_type,
                stopped,
                sorted(removed),
            )
        except StartEnginesError as cleanup_error:
            report.update(cleanedUp=False, cleanupError=cleanup_error.message)
            logger.error(
                "start of %s failed and its cleanup failed too: %s",
                engine.name,
                cleanup_error.message,
            )
        error.details.update(report)


def client_token(event_id: str | None, engine: str) -> str | None:
    """RunTask's clientToken: one per event and engine (ECS honours it, up to 64 chars)."""
    if not event_id:
        return None
    return hashlib.sha256(f"{event_id}\x00{engine}".encode()).hexdigest()[:64]
