"""A realistic Fargate task lifecycle and ALB health timing on top of moto's backends.

moto starts tasks as RUNNING and marks targets healthy at once. Here, a task walks
PROVISIONING -> PENDING -> ACTIVATING -> RUNNING over `start_seconds` on a clock, its ENI's IP
appears at PENDING, and it can be told to die during start-up. A registered target is
`initial` for `health_seconds`, then `healthy` while a RUNNING task owns its IP, else
`unhealthy`. Everything is patched onto moto's backend classes while installed.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

from start_engines.clock import Clock, SystemClock

DIED_REASON = "Essential container in task exited"
NEVER = float("inf")


@dataclass
class TaskPlan:
    created: float
    running_after: float
    dies_after: float | None = None
    exit_code: int = 1
    reason: str = DIED_REASON
    hide_ip: bool = False
    ip: str | None = None
    stopped: bool = False
    details: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class NextTask:
    running_after: float | None = None
    dies_after: float | None = None
    exit_code: int = 1
    reason: str = DIED_REASON
    hide_ip: bool = False


class Lifecycle:
    def __init__(
        self,
        clock: Clock | None = None,
        start_seconds: float = 3.0,
        health_seconds: float = 10.0,
    ) -> None:
        self.time = clock or SystemClock()
        self.clock = self.time.now
        self.start_seconds = start_seconds
        self.health_seconds = health_seconds
        self.plans: dict[str, TaskPlan] = {}
        self.registered_at: dict[tuple[str, str], float] = {}
        self._next: dict[str | None, deque[NextTask]] = {}
        self._lock = threading.RLock()
        self._saved: list[tuple[type, str, Any]] = []
        self.start_seconds_for: Callable[[str], float] | None = None
        # Every call that changes something, by name: tests assert "nothing was started".
        self.mutations: list[tuple[str, str]] = []

    # --- what tests and benchmarks steer ---------------------------------------------------

    def plan_next(self, cluster: str | None = None, **plan: Any) -> None:
        """Shape the next task RunTask starts (in `cluster`, or in any cluster)."""
        with self._lock:
            self._next.setdefault(cluster, deque()).append(NextTask(**plan))

    def kill(self, task_arn: str, reason: str = DIED_REASON, exit_code: int = 137) -> None:
        """A task dies outside start-engines (OOM, a crash, a person in the console)."""
        with self._lock:
            plan = self.plans[task_arn]
            plan.dies_after = self.clock() - plan.created
            plan.reason, plan.exit_code = reason, exit_code

    def clear(self) -> None:
        with self._lock:
            self.plans.clear()
            self.registered_at.clear()
            self._next.clear()
            self.mutations.clear()

    def wall(self, at: float) -> datetime:
        """The wall time of clock reading `at`."""
        return self.time.wall() - timedelta(seconds=self.clock() - at)

    # --- installing onto moto --------------------------------------------------------------

    def install(self) -> None:
        from moto.ecs.models import EC2ContainerServiceBackend
        from moto.elbv2.models import FakeTargetGroup
        from moto.moto_api import state_manager

        # moto walks RUNNING -> STOPPED one step per DescribeTasks; the lifecycle is ours here.
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**12})
        lifecycle = self

        def patch(cls: type, name: str, make: Callable[[Any], Any]) -> None:
            original = getattr(cls, name)
            self._saved.append((cls, name, original))
            setattr(cls, name, make(original))

        def run_task(original: Any) -> Any:
            def wrapper(backend: Any, cluster_str: str, *args: Any, **kwargs: Any) -> Any:
                lifecycle.mutations.append(("RunTask", cluster_str))
                tasks = original(backend, cluster_str, *args, **kwargs)
                lifecycle._track(tasks, cluster_str)
                return tasks

            return wrapper

        def ticking(original: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                lifecycle.tick()
                return original(*args, **kwargs)

            return wrapper

        def stop_task(original: Any) -> Any:
            def wrapper(backend: Any, cluster_str: str, task_str: str, reason: str) -> Any:
                lifecycle.tick()
                lifecycle.mutations.append(("StopTask", task_str))
                task = original(backend, cluster_str, task_str, reason)
                lifecycle._stopped(task)
                return task

            return wrapper

        def register(original: Any) -> Any:
            def wrapper(group: Any, targets: list[dict[str, Any]]) -> None:
                lifecycle.mutations.append(("RegisterTargets", group.arn))
                original(group, targets)
                with lifecycle._lock:
                    for target in targets:
                        lifecycle.registered_at[(group.arn, target["Id"])] = lifecycle.clock()

            return wrapper

        def deregister(original: Any) -> Any:
            def wrapper(group: Any, targets: list[dict[str, Any]]) -> None:
                lifecycle.mutations.append(("DeregisterTargets", group.arn))
                original(group, targets)

            return wrapper

        def health_for(original: Any) -> Any:
            def wrapper(group: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
                status = original(group, target, ec2_backend)
                if status.status == "healthy":
                    lifecycle.tick()
                    lifecycle._health(group.arn, status)
                return status

            return wrapper

        patch(EC2ContainerServiceBackend, "run_task", run_task)
        patch(EC2ContainerServiceBackend, "describe_tasks", ticking)
        patch(EC2ContainerServiceBackend, "list_tasks", ticking)
        patch(EC2ContainerServiceBackend, "stop_task", stop_task)
        patch(FakeTargetGroup, "register", register)
        patch(FakeTargetGroup, "deregister", deregister)
        patch(FakeTargetGroup, "health_for", health_for)

    def uninstall(self) -> None:
        from moto.moto_api import state_manager

        while self._saved:
            cls, name, original = self._saved.pop()
            setattr(cls, name, original)
        state_manager.unset_transition("ecs::task")

    # --- the model -------------------------------------------------------------------------

    def _track(self, tasks: list[Any], cluster_str: str) -> None:
        with self._lock:
            now = self.clock()
            cluster = cluster_str.rsplit("/", 1)[-1]
            for task in tasks:
                queue = self._next.get(cluster) or self._next.get(None)
                shape = queue.popleft() if queue else NextTask()
                running_after = shape.running_after
                if running_after is None:
                    running_after = (
                        self.start_seconds_for(cluster)
                        if self.start_seconds_for
                        else self.start_seconds
                    )
                details = task.attachments[0]["details"] if task.attachments else []
                plan = TaskPlan(
                    created=now,
                    running_after=running_after,
                    dies_after=shape.dies_after,
                    exit_code=shape.exit_code,
                    reason=shape.reason,
                    hide_ip=shape.hide_ip,
                    details=list(details),
                )
                plan.ip = next(
                    (d["value"] for d in details if d["name"] == "privateIPv4Address"), None
                )
                task.created_at = self.wall(now)
                self.plans[task.task_arn] = plan
                self._apply(task, plan, now)

    def _stopped(self, task: Any) -> None:
        with self._lock:
            plan = self.plans.get(task.task_arn)
            if plan and not plan.stopped:
                plan.stopped = True
                task.stopped_at = self.wall(self.clock())
                task.stop_code = "UserInitiated"
                for container in task.containers:
                    container.last_status = "STOPPED"

    def tick(self) -> None:
        with self._lock:
            now = self.clock()
            for cluster_tasks in _backends("ecs", "tasks"):
                for arn, task in cluster_tasks.items():
                    plan = self.plans.get(arn)
                    if plan and not plan.stopped:
                        self._apply(task, plan, now)

    def scrub(self) -> None:
        """Forget every task and target, keep the infrastructure: a clean slate between tests."""
        with self._lock:
            for cluster_tasks in _backends("ecs", "tasks"):
                cluster_tasks.clear()
            for groups in _backends("elbv2", "target_groups"):
                for group in groups.values():
                    group.targets.clear()
                    group.deregistered_targets.clear()
                    group.terminated_targets.clear()
            self.clear()

    def _apply(self, task: Any, plan: TaskPlan, now: float) -> None:
        elapsed = now - plan.created
        if plan.dies_after is not None and elapsed >= plan.dies_after:
            plan.stopped = True
            task.last_status = task.desired_status = "STOPPED"
            task.stopped_reason = plan.reason
            task.stop_code = "EssentialContainerExited"
            task.stopped_at = self.wall(plan.created + plan.dies_after)
            for container in task.containers:
                container.last_status = "STOPPED"
                container.exitCode = plan.exit_code
            return
        if elapsed >= plan.running_after:
            status = "RUNNING"
            task.started_at = self.wall(plan.created + plan.running_after)
        elif elapsed >= 0.6 * plan.running_after:
            status = "ACTIVATING"
        elif elapsed >= 0.25 * plan.running_after:
            status = "PENDING"
        else:
            status = "PROVISIONING"
        task.last_status = status
        for container in task.containers:
            container.last_status = "RUNNING" if status == "RUNNING" else "PENDING"
            container.exitCode = None
        if task.attachments:
            visible = status != "PROVISIONING" and not plan.hide_ip
            task.attachments[0]["status"] = "ATTACHED" if visible else "PRECREATED"
            task.attachments[0]["details"] = [
                d for d in plan.details if visible or d["name"] != "privateIPv4Address"
            ]

    def _health(self, group_arn: str, status: Any) -> None:
        """Rewrite a registered target's health: initial, then healthy only if a task runs there."""
        registered = self.registered_at.get((group_arn, status.instance_id))
        if registered is not None and self.clock() - registered < self.health_seconds:
            status.status = "initial"
            status.reason = "Elb.RegistrationInProgress"
            status.description = "Target registration is in progress"
            return
        running_ips = {
            p.ip
            for arn, p in self.plans.items()
            if not p.stopped and self.clock() - p.created >= p.running_after
        }
        if status.instance_id not in running_ips:
            status.status = "unhealthy"
            status.reason = "Target.FailedHealthChecks"
            status.description = "Health checks failed"


def _backends(service: str, attribute: str) -> list[Any]:
    """`attribute` of every account's and region's backend of a moto service."""
    from moto.backends import get_backend

    found: list[Any] = []
    for accounts in get_backend(service).values():  # type: ignore[call-overload]
        for backend in accounts.values():
            value = getattr(backend, attribute)
            found.extend(value.values() if attribute == "tasks" else [value])
    return found
