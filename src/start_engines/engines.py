"""Use cases: start, stop, status, sync, on_task_state_change. The only module that uses both
handlers; it never sees botocore."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from start_engines.clock import Deadline
from start_engines.config import engine_names, env_prefix, get_service_config, load_settings
from start_engines.ecs_handler import STARTED_BY, running_or_raise
from start_engines.errors import (
    BadEvent,
    ConfigError,
    InternalError,
    NoSuchTask,
    OverrideNotAllowed,
    StartEnginesError,
    StartFailedElsewhere,
    StartTimeout,
)
from start_engines.event_publisher import ENGINE_READY, ENGINE_START_FAILED, ENGINE_STOPPED

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from datetime import datetime

    from start_engines.aws import Clients
    from start_engines.clock import Clock
    from start_engines.cloudwatch_handler import CloudWatchHandler, TrafficQuery
    from start_engines.config import EngineConfig, Environ, Settings
    from start_engines.ecs_handler import ECSHandler, TaskInfo
    from start_engines.event_publisher import EventPublisher
    from start_engines.events import (
        Command,
        ReapRequest,
        StartRequest,
        StatusRequest,
        StopRequest,
        SyncRequest,
        TaskStateChange,
    )
    from start_engines.lease import Lease
    from start_engines.network_handler import NetworkHandler
    from start_engines.target_group_handler import TargetGroupHandler, TargetHealth

logger = logging.getLogger(__name__)

NOT_SERIALISED = "LEASE_TABLE is not set: concurrent starts of one engine are not serialised"


@dataclass(frozen=True)
class Problem:
    """A pre-flight finding: what is wrong with an engine and how to fix it."""

    service: str
    severity: str  # error or warning
    problem: str
    fix: str


@dataclass(frozen=True)
class Outcome:
    """What a use case answers: an HTTP-style status and a JSON body."""

    status_code: int
    body: dict[str, Any]


@dataclass
class StartJob:
    """One engine's start within one invocation, as it moves through the shared poll loop."""

    engine: EngineConfig
    began: float
    container: str = ""
    state: str = "new"  # new, follow, watch, health, done, failed
    tasks: dict[str, TaskInfo] = field(default_factory=dict)  # watched, by ARN
    started: list[str] = field(default_factory=list)  # ARNs this invocation ran
    ips: dict[str, str] = field(default_factory=dict)
    health: dict[str, dict[str, str]] = field(default_factory=dict)  # task ARN -> group -> state
    timings: dict[str, float] = field(default_factory=dict)
    reused: bool = False
    lease_owner: str | None = None
    error: StartEnginesError | None = None

    @property
    def already_running(self) -> bool:
        """Every task of this start was already live; this invocation ran none."""
        return self.reused and not self.started

    @property
    def active(self) -> bool:
        return self.state not in ("done", "failed", "handed-off")

    def fail(self, error: StartEnginesError) -> None:
        if error.service is None:
            error.service = self.engine.name
        self.error, self.state = error, "failed"

    def handoff_body(self) -> dict[str, Any]:
        """202: RunTask succeeded; the task-state entry point finishes the registration."""
        first = next(iter(self.tasks.values()), None)
        body: dict[str, Any] = {
            "message": f"Engine '{self.engine.name}' is starting; poll the status route, or "
            "listen for the 'Engine Ready' event",
            "service": self.engine.name,
            "statusUrl": f"/engines/{self.engine.name}",
            "reused": self.already_running,
        }
        if first is not None:
            body.update(taskArn=first.arn, taskId=first.id, lastStatus=first.last_status)
        return body

    def body(self, serialised: bool) -> dict[str, Any]:
        engine = self.engine
        primary = engine.target_group_arns[0]
        first = next(iter(self.tasks.values()))
        ip = self.ips[first.arn]
        body: dict[str, Any] = {
            "message": f"Engine '{engine.name}' "
            + ("already running" if self.already_running else "started")
            + f" at {ip}:{engine.port}",
            "service": engine.name,
            "taskArn": first.arn,
            "taskId": first.id,
            "privateIp": ip,
            "port": engine.port,
            "containerName": self.container,
            "targetGroupArn": primary,
            "healthStatus": self.health[first.arn][primary],
            "reused": self.already_running,
            "timings": self.timings,
        }
        if len(engine.target_group_arns) > 1:
            body["targetGroupArns"] = list(engine.target_group_arns)
            body["healthStatuses"] = dict(self.health[first.arn])
        if len(self.tasks) > 1:
            body["tasks"] = [
                {
                    "taskArn": t.arn,
                    "taskId": t.id,
                    "privateIp": self.ips[t.arn],
                    "healthStatus": self.health[t.arn][primary],
                }
                for t in self.tasks.values()
            ]
        if not serialised:
            body["serialised"] = False
            body["warning"] = NOT_SERIALISED
        return body


class Engines:
    def __init__(
        self,
        ecs: ECSHandler,
        targets: TargetGroupHandler,
        settings: Settings,
        clock: Clock,
        lease: Lease | None = None,
        publisher: EventPublisher | None = None,
        environ: Environ | None = None,
        network: NetworkHandler | None = None,
        cloudwatch: CloudWatchHandler | None = None,
    ) -> None:
        self.ecs = ecs
        self.targets = targets
        self.settings = settings
        self.clock = clock
        self.lease = lease
        self.publisher = publisher
        self.environ = environ
        self.network = network
        self.cloudwatch = cloudwatch

    @classmethod
    def build(cls, clients: Clients, clock: Clock, environ: Environ | None = None) -> Engines:
        """Engines wired to AWS through `clients`, configured from the environment."""
        from start_engines.cloudwatch_handler import CloudWatchHandler
        from start_engines.ecs_handler import ECSHandler
        from start_engines.event_publisher import EventPublisher
        from start_engines.lease import Lease
        from start_engines.network_handler import NetworkHandler
        from start_engines.target_group_handler import TargetGroupHandler

        settings = load_settings(environ)
        return cls(
            ECSHandler(clients.ecs, lambda: clients.ec2),
            TargetGroupHandler(clients.elbv2),
            settings,
            clock,
            lease=Lease(clients.dynamodb, settings.lease_table) if settings.lease_table else None,
            publisher=EventPublisher(clients.events, settings.event_bus)
            if settings.event_bus
            else None,
            environ=environ,
            network=NetworkHandler(clients.ec2),
            cloudwatch=CloudWatchHandler(clients.cloudwatch),
        )

    def dispatch(self, command: Command, deadline: Deadline) -> Outcome:
        """Run any command; every front door (Lambda, CLI) comes through here."""
        from start_engines.events import (
            ReapRequest,
            StartRequest,
            StatusRequest,
            StopRequest,
            SyncRequest,
        )

        if isinstance(command, StartRequest):
            return self.start(command, deadline)
        if isinstance(command, StopRequest):
            return self.stop(command, deadline)
        if isinstance(command, StatusRequest):
            return self.status(command)
        if isinstance(command, SyncRequest):
            return self.sync(command)
        if isinstance(command, ReapRequest):
            return self.reap_idle(command, deadline)
        return self.on_task_state_change(command)

    # --- configuration -------------------------------------------------------------------

    def engine(self, name: str) -> EngineConfig:
        return get_service_config(name, self.environ)

    def _select(self, names: Sequence[str] | None) -> list[EngineConfig | ConfigError]:
        """The engines a request names (every one if None). Unknown names fail the whole
        request before anything is touched; an engine that is not configured is returned as
        its ConfigError so the others still proceed."""
        known = engine_names(self.environ)
        for name in names or ():
            if name.strip().lower() not in known:
                self.engine(name)  # raises UnknownEngine with the valid names
        selected: list[EngineConfig | ConfigError] = []
        for name in names if names is not None else known:
            try:
                selected.append(self.engine(name))
            except ConfigError as exc:
                exc.service = exc.service or name
                selected.append(exc)
        return selected

    # --- start ---------------------------------------------------------------------------

    def start(self, request: StartRequest, deadline: Deadline) -> Outcome:
        """RunTask, wait for RUNNING, read the IP, register, maybe wait healthy; per engine.

        A live task of ours is reused instead of starting another. With a lease table, one
        invocation starts an engine while the others follow it. One DescribeTasks per cluster
        per round serves every task in flight. Any failure after RunTask stops the tasks this
        invocation ran and removes their targets (`cleanedUp`).
        """
        selected = self._select(request.services)
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
        began = self.clock.now()
        jobs = [StartJob(engine, began) for engine in engines]
        if self.lease is None:
            logger.warning(NOT_SERIALISED)
        # RunTask for every engine at once; the waiting is shared below.
        with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
            list(pool.map(lambda job: self._guard(job, lambda: self._launch(job, request)), jobs))
        handoff = deadline.within(request.wait_budget or 0.0) if request.asynchronous else None
        try:
            self._poll(jobs, request, deadline, handoff)
        finally:
            for job in jobs:
                self._finish(job)
        results: list[tuple[int, dict[str, Any]]] = [
            (e.status_code, e.to_body()) for e in selected if isinstance(e, ConfigError)
        ]
        for job in jobs:
            if job.error is not None:
                results.append((job.error.status_code, job.error.to_body()))
                self._publish(ENGINE_START_FAILED, results[-1][1])
            elif job.state == "handed-off":
                results.append((202, job.handoff_body()))
            else:
                results.append((200, job.body(self.lease is not None)))
                self._publish(ENGINE_READY, results[-1][1])
        if not request.listed and len(results) == 1:
            status, body = results[0]
            return Outcome(status, body)
        return combine(results)

    def _publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        if self.publisher is not None:
            self.publisher.publish(detail_type, detail)

    def _guard(self, job: StartJob, step: Callable[[], None]) -> None:
        try:
            step()
        except StartEnginesError as exc:
            job.fail(exc)
        except Exception as exc:
            logger.exception("unexpected error while starting %s", job.engine.name)
            job.fail(InternalError(f"unexpected error: {exc!r}", service=job.engine.name))

    def _launch(self, job: StartJob, request: StartRequest) -> None:
        engine = job.engine
        job.container = self.ecs.container_name(engine)
        if self.lease is not None:
            if request.event_id:
                recorded = self.lease.event_tasks(request.event_id, engine.name)
                live = (
                    [t for t in self.ecs.describe(engine.cluster, recorded).values() if t.is_live]
                    if recorded
                    else []
                )
                if live:
                    logger.info(
                        "event %s was handled already: %s", request.event_id, [t.id for t in live]
                    )
                    self._watch(job, live, reused=True)
                    return
            if not self._acquire(job):
                logger.info("start of %s is in flight elsewhere; following it", engine.name)
                job.state = "follow"
                return
        self._run_or_reuse(job, request)

    def _run_or_reuse(self, job: StartJob, request: StartRequest) -> None:
        engine = job.engine
        live = sorted(self.ecs.find_tasks(engine), key=lambda t: not t.is_running)
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
                self.ecs.mark_started(task, self.clock.wall())
            self._watch(job, reuse, reused=True)
            return
        token = _client_token(request.event_id, engine.name)
        started = self.ecs.start_task(
            engine,
            client_token=token,
            count=to_start,
            overrides=task_overrides(job.container, request.overrides),
        )
        job.started = [t.arn for t in started]
        for task in started:
            self._task_progress(
                job, "RunTask", f"RunTask accepted: task {task.id} is {task.last_status}", task
            )
        if self.lease is not None and request.event_id:
            self.lease.remember_event(request.event_id, engine.name, job.started, self.clock.wall())
        self._watch(job, [*reuse, *started], reused=bool(reuse))

    def _watch(self, job: StartJob, tasks: Iterable[TaskInfo], reused: bool) -> None:
        job.tasks = {t.arn: t for t in tasks}
        job.reused = reused
        job.state = "watch"

    def _lease_seconds(self) -> float:
        return (
            self.settings.start_timeout
            + self.settings.health_timeout
            + self.settings.deadline_margin
        )

    def _poll(
        self,
        jobs: list[StartJob],
        request: StartRequest,
        deadline: Deadline,
        handoff: Deadline | None,
    ) -> None:
        """Rounds until every job is done or failed. With `handoff` (asynchronous starts), jobs
        still under way when it passes are handed to the task-state entry point, not failed."""
        start_deadline = deadline.within(self.settings.start_timeout)
        health_deadline: Deadline | None = None
        budget = DescribeBudget(self.clock, self.settings.describe_rate)
        while True:
            for job in jobs:
                if job.state == "follow":
                    self._guard(job, lambda job=job: self._follow(job, request))  # type: ignore[misc]
            self._poll_tasks([j for j in jobs if j.state == "watch"], request, budget)
            health_jobs = [j for j in jobs if j.state == "health"]
            if health_jobs:
                if health_deadline is None:
                    health_deadline = deadline.within(self.settings.health_timeout)
                self._poll_health(health_jobs)
            active = [j for j in jobs if j.active]
            if not active:
                return
            if handoff is not None and handoff.expired():
                for job in active:
                    job.state = "handed-off"
                return
            waiting_for_tasks = any(j.state in ("follow", "watch") for j in active)
            limit = start_deadline if waiting_for_tasks else (health_deadline or deadline)
            if handoff is not None:
                limit = Deadline(limit.clock, min(limit.at, handoff.at))
            elif limit.expired() or deadline.expired():
                for job in active:
                    job.fail(self._timeout(job))
                return
            limit.sleep(
                self.settings.poll_interval
                if waiting_for_tasks
                else self.settings.health_poll_interval
            )

    def _follow(self, job: StartJob, request: StartRequest) -> None:
        """Another invocation holds the lease: wait for its task, or take over if it let go."""
        live = self.ecs.find_tasks(job.engine)
        if live:
            wanted = request.count or 1
            self._watch(job, sorted(live, key=lambda t: not t.is_running)[:wanted], reused=True)
        elif self._acquire(job):
            self._run_or_reuse(job, request)

    def _acquire(self, job: StartJob) -> bool:
        """Take the engine's lease for this job. False while another start holds it;
        StartFailedElsewhere during the cooldown after a concurrent start failed."""
        assert self.lease is not None
        owner = str(uuid.uuid4())
        holder = self.lease.acquire(
            job.engine.name, owner, self.clock.wall(), self._lease_seconds()
        )
        if holder is None:
            job.lease_owner = owner
            return True
        if holder.state == "failed":
            raise StartFailedElsewhere(
                f"a concurrent start of '{job.engine.name}' failed moments ago: {holder.error}",
                service=job.engine.name,
                details={
                    "retryAfterSeconds": max(
                        0, round(holder.expires_at - self.clock.wall().timestamp())
                    )
                },
            )
        return False

    def _poll_tasks(
        self, jobs: list[StartJob], request: StartRequest, budget: DescribeBudget
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
                seen.update(self.ecs.describe(cluster, by_cluster[cluster]))
            except StartEnginesError as exc:
                for job in waiting:
                    if job.engine.cluster == cluster:
                        job.fail(exc)
        for job in jobs:
            if job.state == "watch" and (job not in waiting or job.engine.cluster in polled):
                self._guard(job, lambda job=job: self._advance(job, seen, request))  # type: ignore[misc]

    def _task_progress(self, job: StartJob, step: str, text: str, task: TaskInfo) -> None:
        elapsed = self.clock.now() - job.began
        _progress(job, step, text, elapsed, taskId=task.id, lastStatus=task.last_status)

    def _advance(self, job: StartJob, seen: dict[str, TaskInfo], request: StartRequest) -> None:
        for arn, previous in list(job.tasks.items()):
            info = seen.get(arn)
            current = (
                running_or_raise(info, arn, job.engine.name)
                if info is None or info.is_stopped
                else info
            )
            if current.last_status != previous.last_status:
                self._task_progress(
                    job, "status", f"task {current.id} is {current.last_status}", current
                )
            job.tasks[arn] = current
        if not all(t.is_running for t in job.tasks.values()):
            return
        job.timings["running"] = round(self.clock.now() - job.began, 3)
        engine = job.engine
        for task in job.tasks.values():
            ip = self.ecs.extract_ip(task, engine.name)
            job.ips[task.arn] = ip
            self.targets.register_target(engine.target_group_arns, ip, engine.port, engine.name)
            _progress(
                job,
                "registered",
                f"{ip}:{engine.port} registered in {len(engine.target_group_arns)} target group(s)",
                self.clock.now() - job.began,
                taskId=task.id,
                privateIp=ip,
            )
        job.timings["registered"] = round(self.clock.now() - job.began, 3)
        if request.wait_for_healthy:
            job.state = "health"
        else:
            self._record_health(job, self._health_snapshot(job))
            job.state = "done"

    def _health_snapshot(self, job: StartJob) -> dict[str, list[TargetHealth]]:
        return {
            arn: self.targets.get_target_health(arn, job.engine.name)
            for arn in job.engine.target_group_arns
        }

    def _record_health(self, job: StartJob, by_group: dict[str, list[TargetHealth]]) -> None:
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
            _progress(job, "health", f"target health: {summary}", self.clock.now() - job.began)

    def _poll_health(self, jobs: list[StartJob]) -> None:
        """One DescribeTargetHealth per target group per round, shared by every job."""
        cache: dict[str, list[TargetHealth]] = {}

        def check(job: StartJob) -> None:
            for arn in job.engine.target_group_arns:
                if arn not in cache:
                    cache[arn] = self.targets.get_target_health(arn, job.engine.name)
            self._record_health(job, {arn: cache[arn] for arn in job.engine.target_group_arns})
            if all(s == "healthy" for states in job.health.values() for s in states.values()):
                job.timings["healthy"] = round(self.clock.now() - job.began, 3)
                job.state = "done"

        for job in jobs:
            self._guard(job, lambda job=job: check(job))  # type: ignore[misc]

    def _timeout(self, job: StartJob) -> StartTimeout:
        if job.state == "health":
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

    def _finish(self, job: StartJob) -> None:
        """Clean up after a failed start, and hand the lease back."""
        error = job.error
        if error is not None and (job.started or job.tasks):
            self._clean_up(job, error)
        if self.lease is not None and job.lease_owner:
            try:
                if error is None:
                    self.lease.release(job.engine.name, job.lease_owner)
                else:
                    self.lease.fail(
                        job.engine.name,
                        job.lease_owner,
                        error.message,
                        self.clock.wall(),
                        self.settings.lease_cooldown,
                    )
            except StartEnginesError as exc:
                logger.error("could not update the lease of %s: %s", job.engine.name, exc.message)

    def _clean_up(self, job: StartJob, error: StartEnginesError) -> None:
        """Stop the tasks this invocation ran and remove their targets. A reused task that
        died loses its targets too; a reused task still alive is left to the start that owns it."""
        engine = job.engine
        arns = list(dict.fromkeys([*job.started, *job.tasks]))
        report: dict[str, Any] = {"taskId": arns[0].rsplit("/", 1)[-1], "taskArn": arns[0]}
        try:
            seen = self.ecs.describe(engine.cluster, arns)
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
                        self.targets.deregister_target(
                            engine.target_group_arns, ip, engine.port, engine.name
                        )
                    )
                if arn in job.started:
                    self.ecs.stop_task(
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

    # --- stop ----------------------------------------------------------------------------

    def stop(self, request: StopRequest, deadline: Deadline) -> Outcome:
        """Deregister from every target group first, optionally wait for draining, then
        StopTask. Only tasks start-engines started, unless includeForeign."""
        selected = self._select(request.services)
        plans: list[tuple[EngineConfig, list[TaskInfo], dict[str, str]]] = []
        results: list[tuple[int, dict[str, Any]]] = []
        for engine in selected:
            if isinstance(engine, ConfigError):
                results.append(_not_configured(engine, request.services is None))
                continue
            try:
                tasks = self.ecs.find_tasks(engine, include_foreign=request.include_foreign)
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
                    t.arn: self.ecs.extract_ip(t, engine.name)
                    for t in tasks
                    if t.private_ip or t.eni_id
                }
                removed = 0
                for ip in ips.values():
                    removed += len(
                        self.targets.deregister_target(
                            engine.target_group_arns, ip, engine.port, engine.name
                        )
                    )
                plans.append((engine, tasks, ips))
                results.append((200, {"service": engine.name, "targetsDeregistered": removed}))
            except StartEnginesError as exc:
                results.append((exc.status_code, {**exc.to_body(), "status": "failed"}))
        if request.wait_for_draining:
            pending = [(e, ip) for e, _, ips in plans for ip in ips.values()]
            drained = self.targets.wait_until_drained(
                [(arn, ip, e.port) for e, ip in pending for arn in e.target_group_arns],
                deadline.within(self.settings.drain_timeout),
                interval=self.settings.health_poll_interval,
            )
            if not drained:
                logger.warning(
                    "draining did not finish in %ss; stopping anyway", self.settings.drain_timeout
                )
        position = {body.get("service"): i for i, (_, body) in enumerate(results)}
        for engine, tasks, _ in plans:
            body = results[position[engine.name]][1]
            try:
                stopped = [
                    t.id for t in tasks if self.ecs.stop_task(engine.cluster, t.arn, request.reason)
                ]
                body.update(
                    status="stopped" if stopped else "nothing-to-stop",
                    tasksStopped=len(stopped),
                    taskIds=stopped,
                )
                if stopped:
                    self._publish(ENGINE_STOPPED, {**body, "reason": request.reason})
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
        outcome.body["targetsDeregistered"] = sum(
            b.get("targetsDeregistered", 0) for _, b in results
        )
        return outcome

    # --- status --------------------------------------------------------------------------

    def status(self, request: StatusRequest) -> Outcome:
        """Per engine: its tasks, each target group's targets, and `ready` (at least one
        healthy target in every target group)."""
        results: list[tuple[int, dict[str, Any]]] = []
        now = self.clock.wall()
        for engine in self._select(request.services):
            if isinstance(engine, ConfigError):
                results.append(_not_configured(engine, request.services is None))
                continue
            try:
                tasks = self.ecs.find_tasks(engine)
                groups: list[dict[str, Any]] = [
                    {
                        "targetGroupArn": arn,
                        "targets": [
                            {"ip": t.ip, "port": t.port, "state": t.state, "reason": t.reason}
                            for t in self.targets.get_target_health(arn, engine.name)
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
                        },
                    )
                )
            except StartEnginesError as exc:
                results.append((exc.status_code, exc.to_body()))
        return combine(results)

    # --- sync ----------------------------------------------------------------------------

    def sync(self, request: SyncRequest) -> Outcome:
        """Make each target group match the live tasks of ours: remove targets whose IP belongs
        to no live task of ours (stale), register RUNNING tasks that are missing."""
        results: list[tuple[int, dict[str, Any]]] = []
        for engine in self._select(request.services):
            if isinstance(engine, ConfigError):
                results.append(_not_configured(engine, request.services is None))
                continue
            try:
                results.append((200, self._sync_engine(engine)))
            except StartEnginesError as exc:
                results.append((exc.status_code, exc.to_body()))
        outcome = combine(results)
        outcome.body["changes"] = sum(
            len(b.get("registered", [])) + len(b.get("deregistered", [])) for _, b in results
        )
        return outcome

    def _sync_engine(self, engine: EngineConfig) -> dict[str, Any]:
        tasks = self.ecs.find_tasks(engine)
        live_ips = {t.private_ip for t in tasks if t.private_ip}
        running_ips = {self.ecs.extract_ip(t, engine.name) for t in tasks if t.is_running}
        registered: list[dict[str, Any]] = []
        deregistered: list[dict[str, Any]] = []
        for arn in engine.target_group_arns:
            current = self.targets.get_target_health(arn, engine.name)
            for target in current:
                if target.ip not in live_ips | running_ips and target.state != "draining":
                    self.targets.deregister_target([arn], target.ip, target.port, engine.name)
                    deregistered.append(
                        {
                            "ip": target.ip,
                            "port": target.port,
                            "targetGroupArn": arn,
                            "state": target.state,
                        }
                    )
            present = {t.ip for t in current if t.port == engine.port}
            for ip in sorted(running_ips - present):
                self.targets.register_target([arn], ip, engine.port, engine.name)
                registered.append({"ip": ip, "port": engine.port, "targetGroupArn": arn})
        for change in deregistered:
            logger.info(
                "sync %s: removed stale target %s:%s from %s",
                engine.name,
                change["ip"],
                change["port"],
                target_group_name(change["targetGroupArn"]),
            )
        for change in registered:
            logger.info(
                "sync %s: registered missing target %s:%s in %s",
                engine.name,
                change["ip"],
                change["port"],
                target_group_name(change["targetGroupArn"]),
            )
        return {
            "service": engine.name,
            "status": "changed" if registered or deregistered else "in-sync",
            "registered": registered,
            "deregistered": deregistered,
        }

    # --- reconcile from ECS events -------------------------------------------------------

    def on_task_state_change(self, change: TaskStateChange) -> Outcome:
        """Keep target groups true to an ECS Task State Change. Events come at least once and
        out of order, so the task's current state (DescribeTasks) decides, not the event."""
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
            return Outcome(
                200, {**base, "action": "ignored", "reason": "not started by start-engines"}
            )
        cluster = change.cluster_arn.rsplit("/", 1)[-1]
        current = self.ecs.describe(cluster, [change.task_arn]).get(change.task_arn)
        engine = self._engine_of(current, cluster, change.task_definition_arn)
        if engine is None:
            logger.debug("ignoring task %s: no configured engine runs in %s", task_id, cluster)
            return Outcome(
                200, {**base, "action": "ignored", "reason": "no configured engine for this task"}
            )
        base.update(
            service=engine.name,
            lastStatus=current.last_status if current else "MISSING",
            version=current.version if current else None,
        )
        if current is not None and current.is_live and current.is_running:
            return Outcome(200, self._reconcile_running(engine, current, base))
        if current is None or current.is_stopped or current.desired_status == "STOPPED":
            return Outcome(200, self._reconcile_stopped(engine, current, change, base))
        return Outcome(200, {**base, "action": "none", "reason": "the task is still starting"})

    def _reconcile_running(
        self, engine: EngineConfig, task: TaskInfo, base: dict[str, Any]
    ) -> dict[str, Any]:
        """Register a RUNNING task where it is missing; that completes an asynchronous start."""
        ip = self.ecs.extract_ip(task, engine.name)
        before = self.targets.health_of(engine.target_group_arns, ip, engine.port, engine.name)
        missing = [
            g for g, state in before.items() if state in ("unregistered", "unused", "draining")
        ]
        if not missing:
            return {**base, "action": "already-registered", "privateIp": ip, "targetGroupArns": []}
        self.targets.register_target(missing, ip, engine.port, engine.name)
        logger.info(
            "task %s of %s is RUNNING; registered in %d missing group(s)",
            task.id,
            engine.name,
            len(missing),
        )
        health = self.targets.health_of(engine.target_group_arns, ip, engine.port, engine.name)
        primary = engine.target_group_arns[0]
        self._publish(
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
        return {**base, "action": "registered", "privateIp": ip, "targetGroupArns": missing}

    def _reconcile_stopped(
        self,
        engine: EngineConfig,
        task: TaskInfo | None,
        change: TaskStateChange,
        base: dict[str, Any],
    ) -> dict[str, Any]:
        """Deregister a task that is stopping, unless its IP already serves another live task."""
        if (
            task is not None
            and task.is_stopped
            and task.started_at is None
            and not (task.stopped_reason or "").startswith("start-engines:")
        ):
            exit_codes = dict(task.exit_codes)
            self._publish(
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
        if any(t.private_ip == ip for t in self.ecs.find_tasks(engine) if t.arn != change.task_arn):
            return {**base, "action": "none", "reason": f"{ip} now belongs to another live task"}
        removed = self.targets.deregister_target(
            engine.target_group_arns, ip, engine.port, engine.name
        )
        logger.info(
            "task %s of %s is stopping; deregistered from %d group(s)",
            base["taskId"],
            engine.name,
            len(removed),
        )
        if removed and task is not None and task.started_at is not None:
            self._publish(
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

    # --- scale to zero ------------------------------------------------------------------

    def reap_idle(self, request: ReapRequest, deadline: Deadline) -> Outcome:
        """Stop engines that had no traffic for their idleMinutes (after minUptimeMinutes), and
        tasks past maxLifetimeHours. Traffic comes from CloudWatch in one GetMetricData call
        for every engine. No datapoint at all because a target group is attached to no load
        balancer keeps the engine: never stop on missing data."""
        now = self.clock.wall()
        decisions: list[dict[str, Any]] = []
        candidates: list[tuple[EngineConfig, list[TaskInfo]]] = []
        for engine in self._select(request.services):
            if isinstance(engine, ConfigError):
                continue
            tasks = self.ecs.find_tasks(engine)
            if tasks:
                candidates.append((engine, tasks))
        too_old = {
            engine.name: [
                t
                for t in tasks
                if engine.max_lifetime_hours is not None
                and _age(t, now) >= engine.max_lifetime_hours * 3600
            ]
            for engine, tasks in candidates
        }
        traffic = self._traffic(candidates, now)
        for engine, tasks in candidates:
            for task in too_old[engine.name]:
                reason = "max lifetime"
                decisions.append(
                    self._reap(engine, [task], reason, request, deadline, task_id=task.id)
                )
            rest = [t for t in tasks if t not in too_old[engine.name]]
            if rest:
                decisions.append(
                    self._idle_decision(
                        engine, rest, traffic.get(engine.name), now, request, deadline
                    )
                )
        stopped = sum(len(d.get("taskIds", [])) for d in decisions if d["action"] == "stopped")
        return Outcome(
            200, {"results": decisions, "dryRun": request.dry_run, "tasksStopped": stopped}
        )

    def _idle_decision(
        self,
        engine: EngineConfig,
        tasks: list[TaskInfo],
        requests: float | str | None,
        now: datetime,
        request: ReapRequest,
        deadline: Deadline,
    ) -> dict[str, Any]:
        def keep(reason: str, **extra: Any) -> dict[str, Any]:
            return {
                "service": engine.name,
                "action": "kept",
                "reason": reason,
                "taskIds": [t.id for t in tasks],
                **extra,
            }

        if engine.idle_minutes is None:
            return keep("idle stop is off (idleMinutes null)")
        age_minutes = min(_age(t, now) for t in tasks) / 60
        if age_minutes < engine.min_uptime_minutes:
            return keep(
                f"started {age_minutes:.0f} min ago, under minUptimeMinutes {engine.min_uptime_minutes:g}"
            )
        if age_minutes < engine.idle_minutes:
            return keep(
                f"started {age_minutes:.0f} min ago, under idleMinutes {engine.idle_minutes:g}"
            )
        if isinstance(requests, str) or requests is None:
            logger.warning("keeping %s: %s", engine.name, requests or "no traffic metrics")
            return keep(f"no traffic metrics: {requests or 'unavailable'}")
        if requests > 0:
            return keep(
                f"busy: {requests:g} requests in the last {engine.idle_minutes:g} min",
                requests=requests,
            )
        return self._reap(engine, tasks, f"idle for {engine.idle_minutes:g} min", request, deadline)

    def _reap(
        self,
        engine: EngineConfig,
        tasks: list[TaskInfo],
        reason: str,
        request: ReapRequest,
        deadline: Deadline,
        task_id: str | None = None,
    ) -> dict[str, Any]:
        ids = [t.id for t in tasks]
        if request.dry_run:
            return {
                "service": engine.name,
                "action": "would-stop",
                "reason": reason,
                "taskIds": ids,
            }
        from start_engines.events import StopRequest

        outcome = self.stop(
            StopRequest(
                services=(engine.name,), task_id=task_id, wait_for_draining=True, reason=reason
            ),
            deadline,
        )
        result = outcome.body["results"][0]
        if outcome.status_code >= 400:
            return {
                "service": engine.name,
                "action": "failed",
                "reason": reason,
                "error": result.get("error"),
                "errorType": result.get("errorType", "Error"),
            }
        logger.info("reaped %s (%s): %s", engine.name, reason, result.get("taskIds"))
        return {
            "service": engine.name,
            "action": "stopped",
            "reason": reason,
            "taskIds": result.get("taskIds", []),
        }

    def _traffic(
        self, candidates: list[tuple[EngineConfig, list[TaskInfo]]], now: datetime
    ) -> dict[str, float | str]:
        """Requests (ALB) or flows (NLB) per engine over its idle window; a string says why
        there is no figure. One GetMetricData call serves every engine."""
        from datetime import timedelta

        queries: list[TrafficQuery] = []
        owner: dict[str, str] = {}
        missing: dict[str, str] = {}
        windows = [e.idle_minutes for e, _ in candidates if e.idle_minutes is not None]
        if not windows or self.cloudwatch is None:
            return {}
        for engine, _ in candidates:
            if engine.idle_minutes is None:
                continue
            for arn in engine.target_group_arns:
                group = self.targets.describe_target_group(arn)
                if group is None or not group.load_balancer_arns:
                    missing[engine.name] = (
                        f"target group {target_group_name(arn)} is attached to no load balancer"
                    )
                    continue
                for query in traffic_queries(
                    f"q{len(queries)}", arn, group.load_balancer_arns[0], group.protocol
                ):
                    queries.append(query)
                    owner[query.id] = engine.name
        try:
            series = (
                self.cloudwatch.series(queries, now - timedelta(minutes=max(windows)), now)
                if queries
                else {}
            )
        except StartEnginesError as exc:
            logger.warning("no traffic metrics, keeping every engine: %s", exc.message)
            return {engine.name: f"GetMetricData failed: {exc.message}" for engine, _ in candidates}
        idle_minutes = {engine.name: engine.idle_minutes or 0.0 for engine, _ in candidates}
        totals: dict[str, float | str] = {}
        for query_id, points in series.items():
            engine_name = owner[query_id]
            since = now - timedelta(minutes=idle_minutes[engine_name])  # each engine its own window
            totals[engine_name] = float(totals.get(engine_name, 0.0)) + sum(
                v for at, v in points if at >= since
            )
        totals.update(missing)
        return totals

    # --- pre-flight check ----------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Everything a start would trip over, for every engine, before any task runs."""
        found: list[Problem] = []
        for engine in self._select(None):
            if isinstance(engine, ConfigError):
                fix = f"set {engine.field}" if engine.field else "fix the configuration"
                found.append(
                    Problem(
                        str(engine.service),
                        "warning",
                        engine.message,
                        fix + " (or ignore an engine you do not run)",
                    )
                )
                continue
            try:
                found += self._check_engine(engine)
            except StartEnginesError as exc:
                found.append(
                    Problem(
                        engine.name,
                        "error",
                        exc.message,
                        "check the credentials and region, then the resource",
                    )
                )
        return found

    def _check_engine(self, engine: EngineConfig) -> list[Problem]:
        found: list[Problem] = []
        prefix = env_prefix(engine.name)

        def problem(text: str, fix: str, severity: str = "error") -> None:
            found.append(Problem(engine.name, severity, text, fix))

        if not self.ecs.cluster_exists(engine.cluster):
            problem(
                f"cluster {engine.cluster} does not exist", f"create it or set {prefix}_CLUSTER"
            )
        for arn in engine.target_group_arns:
            group = self.targets.describe_target_group(arn)
            if group is None:
                problem(
                    f"target group {arn} does not exist",
                    f"create it (infra/alb.yaml) or fix {prefix}_TARGET_GROUP_ARN",
                )
                continue
            if group.target_type != "ip":
                problem(
                    f"target group {target_group_name(arn)} has target type {group.target_type}; "
                    "Fargate tasks (awsvpc) register by IP",
                    "recreate it with TargetType ip",
                )
            if not group.load_balancer_arns:
                problem(
                    f"target group {target_group_name(arn)} is attached to no listener, so no traffic reaches it",
                    "add a listener rule that forwards to it (infra/alb.yaml adds /api/<engine>/*)",
                )
        try:
            definition = self.ecs.task_definition(engine)
        except StartEnginesError as exc:
            problem(exc.message, f"register it or fix {prefix}_TASK_DEF")
        else:
            if "FARGATE" not in definition.compatibilities:
                problem(
                    f"task definition {engine.task_definition} is not FARGATE-compatible "
                    f"(requiresCompatibilities {list(definition.compatibilities)})",
                    "add FARGATE to requiresCompatibilities",
                )
            if definition.network_mode != "awsvpc":
                problem(
                    f"task definition {engine.task_definition} uses network mode {definition.network_mode}",
                    "use networkMode awsvpc (Fargate requires it)",
                )
            if engine.port not in definition.container_ports:
                problem(
                    f"port {engine.port} is no containerPort of {engine.task_definition} "
                    f"(it has {list(definition.container_ports)})",
                    f"set {prefix}_PORT to the container's port",
                )
        if self.network is not None:
            for subnet in self.network.missing_subnets(engine.subnets):
                problem(f"subnet {subnet} does not exist", f"fix {prefix}_SUBNETS or SUBNETS")
            for group_id in self.network.missing_security_groups(engine.security_groups):
                problem(
                    f"security group {group_id} does not exist",
                    f"fix {prefix}_SECURITY_GROUPS or SECURITY_GROUPS",
                )
        return found

    def _engine_of(
        self, task: TaskInfo | None, cluster: str, task_definition_arn: str
    ) -> EngineConfig | None:
        """The engine a task belongs to: its engine tag, else its cluster and family."""
        family = (
            (task.task_definition_arn if task else task_definition_arn)
            .rsplit("/", 1)[-1]
            .split(":", 1)[0]
        )
        candidates = (
            [task.engine] if task is not None and task.engine else list(engine_names(self.environ))
        )
        for name in candidates:
            try:
                engine = self.engine(name)
            except StartEnginesError:
                continue
            if task is not None and task.engine:
                return engine
            if engine.cluster.rsplit("/", 1)[-1] == cluster and engine.family == family:
                return engine
        return None


STAGES = {"PROVISIONING": 1, "PENDING": 2, "ACTIVATING": 3}
STARVED_AFTER = 5.0  # seconds; a cluster not polled for this long goes first


class DescribeBudget:
    """At most `rate` DescribeTasks per second for the whole invocation (ECS throttles the
    account, not the caller). Each round spends what has accrued on the clusters whose tasks
    are closest to RUNNING, then on those polled longest ago; none waits much more than
    STARVED_AFTER (starved clusters take turns). One cluster is polled every round; five share the same rate. It starts
    empty: RunTask has just told the status, so the first poll waits a round."""

    def __init__(self, clock: Clock, rate: float) -> None:
        self.clock = clock
        self.rate = rate
        self.tokens = 0.0
        self.at = clock.now()
        self.polled: dict[str, float] = {}

    def choose(self, stages: dict[str, int]) -> list[str]:
        now = self.clock.now()
        self.tokens = min(max(1.0, len(stages)), self.tokens + self.rate * (now - self.at))
        self.at = now

        for cluster in stages:
            self.polled.setdefault(cluster, now)  # a new cluster's tasks were just described

        def priority(cluster: str) -> tuple[bool, int, float]:
            waited = now - self.polled[cluster]
            return (waited >= STARVED_AFTER, stages[cluster], waited)

        chosen = sorted(stages, key=priority, reverse=True)[: int(self.tokens)]
        self.tokens -= len(chosen)
        for cluster in chosen:
            self.polled[cluster] = now
        return chosen


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


def combine(results: list[tuple[int, dict[str, Any]]]) -> Outcome:
    """One answer for several engines: 200 if all succeeded, the shared status if all failed
    alike, else 207 (multi-status). Each result carries its own statusCode."""
    codes = [code for code, _ in results]
    failed = sum(1 for code in codes if code >= 400)
    if failed == 0:
        status = 200
    elif failed == len(codes):
        status = codes[0] if len(set(codes)) == 1 else 500
    else:
        status = 207
    return Outcome(
        status,
        {
            "results": [{"statusCode": code, **body} for code, body in results],
            "succeeded": len(codes) - failed,
            "failed": failed,
        },
    )


def _not_configured(error: ConfigError, implicit: bool) -> tuple[int, dict[str, Any]]:
    """An engine left out of the deployment: skipped when the request meant 'every engine'."""
    if implicit:
        return 200, {"service": error.service, "status": "not-configured", "reason": error.message}
    return error.status_code, error.to_body()


def traffic_queries(
    prefix: str, target_group_arn: str, load_balancer_arn: str, protocol: str
) -> list[TrafficQuery]:
    """ALB: RequestCount. NLB: NewFlowCount and ActiveFlowCount. Dimensions are ARN suffixes."""
    from start_engines.cloudwatch_handler import TrafficQuery

    group = target_group_arn.split(":", 5)[-1]
    balancer = load_balancer_arn.split(":loadbalancer/", 1)[-1]
    if balancer.startswith("net/") or protocol in ("TCP", "UDP", "TLS", "TCP_UDP"):
        metrics = [("AWS/NetworkELB", "NewFlowCount"), ("AWS/NetworkELB", "ActiveFlowCount")]
    else:
        metrics = [("AWS/ApplicationELB", "RequestCount")]
    return [
        TrafficQuery(f"{prefix}x{i}", ns, name, group, balancer)
        for i, (ns, name) in enumerate(metrics)
    ]


def _age(task: TaskInfo, now: datetime) -> float:
    """Seconds since the engine last started on this task."""
    began = task.began
    return (now - began).total_seconds() if began else 0.0


def state_of(targets: Sequence[TargetHealth], ip: str, port: int) -> str:
    return next((t.state for t in targets if t.ip == ip and t.port == port), "unregistered")


def _client_token(event_id: str | None, engine: str) -> str | None:
    """RunTask's clientToken: one per event and engine (ECS honours it, up to 64 chars)."""
    if not event_id:
        return None
    return hashlib.sha256(f"{event_id}\x00{engine}".encode()).hexdigest()[:64]


def _progress(job: StartJob, step: str, text: str, elapsed: float, **data: Any) -> None:
    logger.info(
        "%s: %s",
        job.engine.name,
        text,
        extra={
            "progress": {
                "service": job.engine.name,
                "step": step,
                "elapsed": round(elapsed, 3),
                **data,
            }
        },
    )


def target_group_name(arn: str) -> str:
    """`auth-tg` from arn:...:targetgroup/auth-tg/0123abcd."""
    return arn.split(":targetgroup/", 1)[-1].split("/", 1)[0]
