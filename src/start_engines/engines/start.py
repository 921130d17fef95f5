"""Start: RunTask (or reuse), wait for RUNNING, read the IP, register, maybe wait healthy.

A live task of ours is reused instead of starting another. With a lease table, one
invocation starts an engine while the others follow it. One DescribeTasks per cluster per
round serves every task in flight. Any failure after RunTask stops the tasks this
invocation ran and removes their targets (`cleanedUp`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from start_engines import checkpoints
from start_engines.engines.budget import DescribeBudget
from start_engines.engines.outcome import Outcome, combine
from start_engines.engines.overrides import task_overrides, with_overrides
from start_engines.engines.start_job import NOT_SERIALISED, POLLED, JobState, StartJob
from start_engines.engines.start_poll import in_parallel, poll_health, poll_tasks, timeout_error
from start_engines.errors import (
    AwsError,
    BadEvent,
    ConfigError,
    EngineBusy,
    InternalError,
    Interrupted,
    RunTaskConflict,
    StartEnginesError,
    StartFailedElsewhere,
    StartTimeout,
    StoppedDuringStart,
)
from start_engines.event_publisher import ENGINE_READY, ENGINE_START_FAILED
from start_engines.lease import LOST, PREEMPTED

if TYPE_CHECKING:
    from collections.abc import Callable

    from start_engines.clock import Deadline
    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.context import Context
    from start_engines.events import StartRequest
    from start_engines.lease import LeaseHolder

logger = logging.getLogger(__name__)
RECORD_GAP = 0.15  # seconds: how often a start short of budget reads the records, at most


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
    starter = Starter(ctx, request, deadline)
    began = ctx.clock.now()
    jobs = [StartJob(engine, began) for engine in engines]
    if ctx.lease is None:
        logger.warning(NOT_SERIALISED)
    handoff = deadline.within(request.wait_budget or 0.0) if request.asynchronous else None
    try:
        # every engine's claim at once; under them, what an earlier delivery of this event
        # started (one read); then RunTask for every engine at once; the waiting is shared
        with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
            list(pool.map(lambda job: starter.guard(job, lambda: starter.claim(job)), jobs))
            starter.recall([job for job in jobs if job.lease_owner])
            list(pool.map(lambda job: starter.guard(job, lambda: starter.launch(job)), jobs))
        starter.poll(jobs, handoff)
    except KeyboardInterrupt:  # the CLI's Ctrl-C: clean up what this start ran, then answer
        for job in jobs:
            if job.active:
                job.fail(Interrupted("interrupted", service=job.engine.name))
    finally:  # each job its own claim and tasks: ten finish in the time of one
        in_parallel(starter.finish, jobs)
    results: list[tuple[int, dict[str, Any]]] = [
        (e.status_code, e.to_body()) for e in selected if isinstance(e, ConfigError)
    ]
    for job in jobs:
        if job.error is not None:
            results.append((job.error.status_code, job.error.to_body()))
            if not isinstance(job.error, (StoppedDuringStart, Interrupted)):
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

    def __init__(self, ctx: Context, request: StartRequest, deadline: Deadline) -> None:
        self.ctx = ctx
        self.request = request
        self.deadline = deadline
        self.start_deadline = deadline.within(ctx.settings.start_timeout)
        self.recorded: dict[str, tuple[str, ...]] = {}  # recall(): each engine's first look

    def guard(self, job: StartJob, step: Callable[[], None]) -> None:
        try:
            step()
        except StartEnginesError as exc:
            job.fail(exc)
        except Exception as exc:
            logger.exception("unexpected error while starting %s", job.engine.name)
            job.fail(InternalError(f"unexpected error: {exc!r}", service=job.engine.name))

    def claim(self, job: StartJob) -> None:
        """Take the engine's claim for this job, or follow the start that holds it. A
        redelivered event whose tasks live is answered with them even while the claim is a
        failed start's cooldown or a reap's: those are not this event's delivery in flight."""
        ctx, engine = self.ctx, job.engine
        job.container = ctx.ecs.container_name(engine)
        if ctx.lease is None:
            return
        try:
            holder = self.acquire(job)
        except StartFailedElsewhere:
            if self.handled_before(job):
                return
            raise
        if holder is None or (holder.state != "starting" and self.handled_before(job)):
            return
        logger.info("start of %s is in flight elsewhere; following it", engine.name)
        job.move(JobState.FOLLOW)

    def launch(self, job: StartJob) -> None:
        """Under the claim: watch what an earlier delivery of this event started, or run."""
        if job.state is not JobState.NEW:  # following, or failed to claim
            return
        if not self.handled_before(job):
            self.run_or_reuse(job)

    def recall(self, jobs: list[StartJob]) -> None:
        """The tasks an earlier delivery of this event started, for every claimed engine in
        one read (handled_before). Read under the claims: an earlier delivery writes its
        record before it gives its claim up. An engine it leaves out is read on its own."""
        ctx, event_id = self.ctx, self.request.event_id
        if ctx.lease is None or not event_id or not jobs:
            return
        try:
            self.recorded = ctx.lease.events_tasks(event_id, [j.engine.name for j in jobs])
        except StartEnginesError as exc:
            logger.warning("event records unread together, one by one instead: %s", exc.message)

    def handled_before(self, job: StartJob) -> bool:
        """A redelivered event whose tasks still live: watch those (named in our claim), start
        nothing."""
        ctx, engine, event_id = self.ctx, job.engine, self.request.event_id
        if ctx.lease is None or not event_id:
            return False
        recorded = self.recorded.pop(engine.name, None)  # only the first look: later ones read
        if recorded is None:
            recorded = ctx.lease.event_tasks(event_id, engine.name)
        described = ctx.ecs.describe(engine.cluster, recorded).values() if recorded else []
        live = [t for t in described if t.is_live and not t.stopping]
        if live:
            logger.info("event %s was handled already: %s", event_id, [t.id for t in live])
            self.record(job, live)
            job.watch(live, reused=True)
        return bool(live)

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
            self.record(job, reuse)
            job.watch(reuse, reused=True)
            return
        if self.start_deadline.expired():
            raise StartTimeout(
                f"engine '{engine.name}': no time left to start a task in this invocation; "
                "nothing was started",
                service=engine.name,
                details={"runTask": False},
            )
        checkpoints.reached("start.before-run-task", service=engine.name)
        token = client_token(request.event_id, engine.name)
        try:
            started = ctx.ecs.start_task(
                engine,
                client_token=token,
                count=to_start,
                overrides=task_overrides(job.container, request.overrides),
            )
        except RunTaskConflict:
            # ECS ran this event's token before, with another count: a retried event.
            handled = ctx.ecs.find_tasks(engine)
            if not handled:
                raise
            logger.info("event %s was handled already (clientToken)", request.event_id)
            self.record(job, handled)
            job.watch(handled[: request.count or 1], reused=True)
            return
        job.started = [t.arn for t in started]
        for task in started:
            text = f"RunTask accepted: task {task.id} is {task.last_status}"
            job.task_progress("RunTask", text, task, ctx.clock.now())
        if ctx.lease is not None and request.event_id:
            ctx.lease.remember_event(request.event_id, engine.name, job.started, ctx.clock.wall())
        self.record(job, [*reuse, *started])
        job.watch([*reuse, *started], reused=bool(reuse))
        checkpoints.reached("start.after-run-task", service=engine.name, taskArns=job.started)

    def record(self, job: StartJob, tasks: list[TaskInfo]) -> None:
        """Name our tasks in the claim: followers and stops then find them by ARN."""
        if self.ctx.lease is not None and job.lease_owner:
            self.ctx.lease.record_tasks(job.engine.name, job.lease_owner, [t.arn for t in tasks])

    def claim_seconds(self) -> float:
        """How long our claim lasts without a heartbeat: never past our own deadline."""
        return min(self.ctx.settings.lease_ttl, self.deadline.remaining())

    def heartbeat(self, jobs: list[StartJob]) -> None:
        """Renew each claim we hold once a third of its time has passed; learn of stops. A job
        done while others go on keeps its claim live until the answer: a stop that comes
        meanwhile must find it, and flag it, to be told."""
        ctx = self.ctx
        if ctx.lease is None:
            return
        now = ctx.clock.now()
        for job in jobs:
            if not job.lease_owner or not (job.active or job.state is JobState.DONE):
                continue
            if now - job.renewed_at < ctx.settings.lease_ttl / 3:
                continue
            job.renewed_at = now
            state = ctx.lease.renew(
                job.engine.name, job.lease_owner, ctx.clock.wall(), self.claim_seconds()
            )
            if state == PREEMPTED:
                job.fail(preempted(job))
            elif state == LOST:
                logger.warning("the claim on %s expired under this start", job.engine.name)
                job.lease_owner = None

    def poll(self, jobs: list[StartJob], handoff: Deadline | None) -> None:
        """Rounds until every job is done or failed. With `handoff` (asynchronous starts), jobs
        still under way when it passes are handed to the task-state entry point. Every round
        begins a poll interval after the last one began (it sleeps what is left of it, at
        least nothing): only an expired deadline ends the loop early."""
        ctx = self.ctx
        start_deadline = self.start_deadline
        budget = DescribeBudget(ctx.clock, ctx.settings.describe_rate)
        while True:
            round_began = ctx.clock.now()
            self.heartbeat(jobs)
            for job in jobs:
                if job.state is JobState.FOLLOW:
                    self.guard(job, lambda job=job: self.follow(job, budget))  # type: ignore[misc]
            short = poll_tasks(ctx, [j for j in jobs if j.state in POLLED], self, budget)
            health_jobs = [j for j in jobs if j.state is JobState.HEALTH]
            if health_jobs:
                poll_health(ctx, health_jobs, self)
            for job in jobs:
                limit = job.health_deadline if job.state is JobState.HEALTH else start_deadline
                if job.active and (limit is None or limit.expired()):
                    job.fail(timeout_error(job))
            active = [j for j in jobs if j.active]
            if not active:
                return
            if handoff is not None and handoff.expired():
                for job in active:
                    self.guard(job, lambda job=job: self.hand_off(job))  # type: ignore[misc]
                return
            waiting_for_tasks = any(j.state is not JobState.HEALTH for j in active)
            interval = (
                ctx.settings.poll_interval
                if waiting_for_tasks
                else ctx.settings.health_poll_interval
            )
            # rounds begin every interval: a round's own calls are not added to the wait
            wait = handoff or self.deadline
            # more clusters than the budget looks at: read the events' records between rounds
            # too, so a task they tell about moves without waiting for a look
            between = short and ctx.lease is not None and waiting_for_tasks
            if between and self.read_records_between(jobs, round_began, interval, wait):
                return  # they ended every job: answer now, not a round later
            wait.sleep(interval - (ctx.clock.now() - round_began))

    def read_records_between(
        self, jobs: list[StartJob], round_began: float, interval: float, wait: Deadline
    ) -> bool:
        """Read the records every RECORD_GAP or so until the next round (none when the
        interval is shorter than two gaps); a read whose time has passed is skipped. True if
        the reads ended every job."""
        clock = self.ctx.clock
        gap = interval / max(1, math.floor(interval / RECORD_GAP + 1e-9))
        at = gap
        while at < interval - 1e-9:
            if clock.now() - round_began < at:
                wait.sleep(at - (clock.now() - round_began))
                if wait.expired():
                    return False
                poll_tasks(self.ctx, [j for j in jobs if j.state in POLLED], self, None)
                if not any(j.active for j in jobs):
                    return True
            at += gap
        return False

    def hand_off(self, job: StartJob) -> None:
        """202 only for a start that is under way: ours, or (following) another live start's.
        An engine that a stop or reap holds gets EngineBusy instead: nothing would start."""
        ctx = self.ctx
        if job.state is JobState.FOLLOW and ctx.lease is not None:
            holder = ctx.lease.holder(job.engine.name)
            if holder is None or holder.state != "starting" or holder.preempted:
                wait = holder.expires_at - ctx.clock.wall().timestamp() if holder else 0.0
                raise EngineBusy(
                    f"engine '{job.engine.name}' is being stopped by another operation; "
                    "start it again in a moment",
                    service=job.engine.name,
                    details={"retryAfterSeconds": max(1, round(wait))},
                )
        job.move(JobState.HANDED_OFF)

    def follow(self, job: StartJob, budget: DescribeBudget) -> None:
        """Another invocation holds the claim. A plain start watches the holder's tasks; a
        start with count or force waits for the claim, then decides for itself. Its
        DescribeTasks is on the same budget as every other poll of this invocation."""
        ctx = self.ctx
        checkpoints.reached("start.follow", service=job.engine.name)
        holder = self.acquire(job)
        if holder is None:
            if not self.handled_before(job):  # the first delivery may have run meanwhile
                self.run_or_reuse(job)
            return
        own_decision = self.request.force or (self.request.count or 1) > 1
        if own_decision or holder.state != "starting" or not holder.task_arns:
            return
        if not budget.look(job.engine.cluster):
            return
        described = ctx.ecs.describe(job.engine.cluster, holder.task_arns).values()
        live = [t for t in described if t.is_live and not t.stopping and t.owned_by(job.engine)]
        if live:
            job.watch(sorted(live, key=lambda t: not t.is_running)[:1], reused=True)

    def acquire(self, job: StartJob) -> LeaseHolder | None:
        """Take the engine's claim for this job: None when taken, else the holder that keeps
        it. StartFailedElsewhere during the cooldown after a start failed."""
        ctx = self.ctx
        assert ctx.lease is not None
        owner = str(uuid.uuid4())
        holder = ctx.lease.acquire(job.engine.name, owner, ctx.clock.wall(), self.claim_seconds())
        if holder is None:
            job.lease_owner, job.renewed_at = owner, ctx.clock.now()
            return None
        if holder.state == "failed":
            raise self.failed_elsewhere(job, holder)
        return holder

    def failed_elsewhere(self, job: StartJob, holder: LeaseHolder) -> StartFailedElsewhere:
        """The cooldown after a failed start, told as it is: whose start, when, and when to
        retry. "Yours" only when both said who they are and it is the same caller."""
        now = self.ctx.clock.wall().timestamp()
        retry = max(1, round(holder.expires_at - now))
        mine = self.request.requester
        whose, by = "a start", "unknown"
        if holder.requester and mine:
            same = holder.requester == mine
            whose = "your own earlier start" if same else "another caller's start"
            by = "you" if same else "another caller"
        ago = f" {round(now - holder.failed_at)} s ago" if holder.failed_at else ""
        return StartFailedElsewhere(
            f"{whose} of '{job.engine.name}' failed{ago}: {holder.error}; starts are held off "
            f"to avoid a storm: retry in {retry} s",
            service=job.engine.name,
            details={"retryAfterSeconds": retry, "failedBy": by},
        )

    def finish(self, job: StartJob) -> None:
        """Clean up after a failed start, and settle the claim: kept past a hand-off (unless
        its tasks already run: no RUNNING event would come to end it), marked failed (the
        cooldown) after a task failed or AWS refused, else released."""
        ctx = self.ctx
        lease, owner, engine = ctx.lease, job.lease_owner, job.engine.name
        checkpoints.reached("start.settle", service=engine)
        if lease is not None and owner and job.state is JobState.DONE:
            if not self.flagged_at_release(job, owner):
                return  # released, or left to lapse: no stop flagged it
            job.fail(preempted(job))
        try:
            if lease is not None and owner and job.state is JobState.HANDED_OFF:
                holder = lease.holder(engine)
                if holder is not None and holder.owner == owner and holder.preempted:
                    job.fail(preempted(job))
        except StartEnginesError as exc:
            logger.error("could not read the claim on %s: %s", engine, exc.message)
        error = job.error
        if error is not None and (job.started or job.tasks):
            self.clean_up(job, error)
        if lease is None or not owner:
            return
        try:
            running = bool(job.tasks) and all(t.is_running for t in job.tasks.values())
            if job.state is JobState.HANDED_OFF and not running:
                left = ctx.settings.start_timeout - (ctx.clock.now() - job.began)
                lease.hand_off(engine, owner, ctx.clock.wall(), max(left, ctx.settings.lease_ttl))
            elif error is not None and cools_down(job, error):
                lease.fail(
                    engine,
                    owner,
                    error.message,
                    ctx.clock.wall(),
                    ctx.settings.lease_cooldown,
                    self.request.requester,
                    error.error_type,
                )
            else:
                lease.release(engine, owner)
        except StartEnginesError as exc:
            logger.error("could not update the lease of %s: %s", engine, exc.message)

    def flagged_at_release(self, job: StartJob, owner: str) -> bool:
        """Release a done job's claim unless a stop flagged it; True if one did. One
        conditional call in the common case; when it is refused or its condition fails, the
        claim is read, so a stop's flag is never deleted unseen. A claim that can be neither
        released nor read (DynamoDB failing twice) is left to lapse at its expiry, and the
        tasks are looked at instead: a stop's tag on one counts as its flag."""
        ctx, lease, engine = self.ctx, self.ctx.lease, job.engine.name
        assert lease is not None
        for _ in range(2):  # a refused call is tried once more
            try:
                if lease.release_unflagged(engine, owner):
                    return False
            except StartEnginesError as exc:
                logger.error("could not release the claim on %s: %s", engine, exc.message)
            try:
                holder = lease.holder(engine)
            except StartEnginesError as exc:
                logger.error("could not read the claim on %s: %s", engine, exc.message)
                continue
            if holder is None or holder.owner != owner:
                return False  # no longer ours: nothing to release, no flag of ours
            if holder.preempted:
                return True
        # the claim unreadable: a stop tags the tasks it claims before it deregisters them
        try:
            seen = ctx.ecs.describe(job.engine.cluster, list(job.tasks))
        except StartEnginesError as exc:
            logger.error("could not look at the tasks of %s either: %s", engine, exc.message)
            return False
        return any(task.being_stopped for task in seen.values())

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
            reason = f"start-engines: start failed ({error.error_type})"
            for arn in job.started:  # claimed first, like any stop: nobody registers it again
                claimed = seen.get(arn)
                if claimed is not None and not claimed.being_stopped:
                    ctx.ecs.mark_stopping(claimed, reason, ctx.clock.wall())
            for arn in arns:
                info = seen.get(arn)
                task_id = arn.rsplit("/", 1)[-1]
                if (
                    arn not in job.started
                    and info is not None
                    and info.is_live
                    and not info.stopping
                ):
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
                    ctx.ecs.stop_task(engine.cluster, arn, reason)
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


def cools_down(job: StartJob, error: StartEnginesError) -> bool:
    """A failed start holds others off for the cooldown only if a task of it failed or AWS
    refused it; not after a stop, or a request refused before anything ran."""
    if isinstance(error, (StoppedDuringStart, Interrupted)):
        return False
    return bool(job.started) or isinstance(error, AwsError)


def preempted(job: StartJob) -> StoppedDuringStart:
    return StoppedDuringStart(
        f"engine '{job.engine.name}' was stopped during this start; start again for a fresh task",
        service=job.engine.name,
    )


def client_token(event_id: str | None, engine: str) -> str | None:
    """RunTask's clientToken: one per event and engine (ECS honours it, up to 64 chars)."""
    if not event_id:
        return None
    return hashlib.sha256(f"{event_id}\x00{engine}".encode()).hexdigest()[:64]
