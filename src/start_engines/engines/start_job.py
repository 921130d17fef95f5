"""One engine's start within one invocation: its typed state and the answers it gives."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from start_engines.clock import Deadline
    from start_engines.config import EngineConfig
    from start_engines.ecs_handler import TaskInfo
    from start_engines.errors import StartEnginesError

logger = logging.getLogger(__name__)

NOT_SERIALISED = "LEASE_TABLE is not set: concurrent starts of one engine are not serialised"


class JobState(Enum):
    NEW = "new"
    FOLLOW = "follow"  # another invocation holds the lease; wait for its task or the lease
    WATCH = "watch"  # tasks chosen; poll them to RUNNING, then register
    CONFIRM = "confirm"  # registered; one more look shows no stop claimed the tasks meanwhile
    HEALTH = "health"  # registered; poll target health
    DONE = "done"
    FAILED = "failed"
    HANDED_OFF = "handed-off"  # asynchronous start: the task-state entry point finishes


# Every transition a start may make, in one place.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.NEW: frozenset({JobState.FOLLOW, JobState.WATCH, JobState.FAILED}),
    JobState.FOLLOW: frozenset({JobState.WATCH, JobState.FAILED, JobState.HANDED_OFF}),
    JobState.WATCH: frozenset({JobState.CONFIRM, JobState.FAILED, JobState.HANDED_OFF}),
    JobState.CONFIRM: frozenset(
        {JobState.HEALTH, JobState.DONE, JobState.FAILED, JobState.HANDED_OFF}
    ),
    JobState.HEALTH: frozenset({JobState.DONE, JobState.FAILED, JobState.HANDED_OFF}),
    JobState.DONE: frozenset({JobState.FAILED}),  # a stop pre-empted it at the very end
    JobState.FAILED: frozenset(),
    JobState.HANDED_OFF: frozenset({JobState.FAILED}),  # a stop pre-empted it at the end
}
ACTIVE = frozenset(
    {JobState.NEW, JobState.FOLLOW, JobState.WATCH, JobState.CONFIRM, JobState.HEALTH}
)
POLLED = frozenset({JobState.WATCH, JobState.CONFIRM, JobState.HEALTH})  # on the budget


@dataclass
class StartJob:
    """One engine's start within one invocation, as it moves through the shared poll loop."""

    engine: EngineConfig
    began: float
    container: str = ""
    state: JobState = JobState.NEW
    tasks: dict[str, TaskInfo] = field(default_factory=dict)  # watched, by ARN
    started: list[str] = field(default_factory=list)  # ARNs this invocation ran
    ips: dict[str, str] = field(default_factory=dict)
    registered_at: dict[str, float] = field(default_factory=dict)  # by ARN: epoch seconds
    health: dict[str, dict[str, str]] = field(default_factory=dict)  # task ARN -> group -> state
    timings: dict[str, float] = field(default_factory=dict)
    reused: bool = False
    lease_owner: str | None = None
    renewed_at: float = 0.0  # when the lease was last renewed (monotonic)
    health_deadline: Deadline | None = None  # each engine's own, from its registration
    warnings: list[str] = field(default_factory=list)
    error: StartEnginesError | None = None

    def move(self, state: JobState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise AssertionError(f"start job of {self.engine.name}: {self.state} -> {state}")
        self.state = state

    @property
    def already_running(self) -> bool:
        """Every task of this start was already live; this invocation ran none."""
        return self.reused and not self.started

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def fail(self, error: StartEnginesError) -> None:
        if error.service is None:
            error.service = self.engine.name
        self.error = error
        if self.state is not JobState.FAILED:
            self.move(JobState.FAILED)

    def watch(self, tasks: list[TaskInfo], reused: bool) -> None:
        self.tasks = {t.arn: t for t in tasks}
        self.reused = reused
        self.move(JobState.WATCH)

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
            if first.created_at is not None:
                body["createdAt"] = first.created_at.isoformat()
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
        warnings = list(self.warnings)
        if not serialised:
            body["serialised"] = False
            warnings.append(NOT_SERIALISED)
        if warnings:
            body["warning"] = "; ".join(warnings)
        return body

    def task_progress(self, step: str, text: str, task: TaskInfo, now: float) -> None:
        self.progress(step, text, now - self.began, taskId=task.id, lastStatus=task.last_status)

    def progress(self, step: str, text: str, elapsed: float, **data: Any) -> None:
        """A progress record: JSON in the Lambda's logs, a live line in the CLI."""
        logger.info(
            "%s: %s",
            self.engine.name,
            text,
            extra={
                "progress": {
                    "service": self.engine.name,
                    "step": step,
                    "elapsed": round(elapsed, 3),
                    **data,
                }
            },
        )
