"""A realistic Fargate task lifecycle and ALB health timing on top of moto's backends.

moto starts tasks as RUNNING and marks targets healthy at once. Here, a task walks
PROVISIONING -> PENDING -> ACTIVATING -> RUNNING over `start_seconds` on a clock, its ENI's IP
appears at PENDING, and it can be told to die during start-up. StopTask sets desiredStatus
STOPPED at once; the task keeps its lastStatus for `stop_seconds` (its container's SIGTERM
grace), then walks DEACTIVATING -> STOPPING -> DEPROVISIONING -> STOPPED. A new task can stay
unseen by DescribeTasks and ListTasks for a while (eventual consistency). Registered targets
are health-checked as ALB does (`alb_health`): first `health_seconds` (the registration delay)
after RegisterTargets, then every HealthCheckIntervalSeconds of the group; a check passes while a
RUNNING task owns the IP. A deregistered target is `draining` for the group's deregistration
delay. Everything is patched onto moto's classes while installed.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

from start_engines.clock import Clock, SystemClock
from start_engines.local.alb_health import HealthChecks

DIED_REASON = "Essential container in task exited"
NEVER = float("inf")
STOP_STEP_SECONDS = 0.5  # how long each of DEACTIVATING, STOPPING, DEPROVISIONING lasts


@dataclass
class TaskPlan:
    created: float
    running_after: float
    stop_seconds: float
    dies_after: float | None = None
    exit_code: int = 1
    reason: str = DIED_REASON
    hide_ip: bool = False
    invisible_for: float = 0.0
    ip: str | None = None
    stop_at: float | None = None  # clock reading of the first StopTask
    stop_from: str = ""  # its lastStatus then
    stopped: bool = False  # reached STOPPED: the model no longer moves it
    details: list[dict[str, str]] = field(default_factory=list)
    version: int = 0  # ECS's task version: one more at each change of status
    shown: tuple[str, str] = ("", "")  # the statuses that version describes


@dataclass(frozen=True)
class NextTask:
    running_after: float | None = None
    dies_after: float | None = None
    exit_code: int = 1
    reason: str = DIED_REASON
    hide_ip: bool = False
    stop_seconds: float | None = None
    invisible_for: float = 0.0
    ip: str | None = None  # the private IP the subnet hands out (an old task's, say)


class Lifecycle:
    """`health_seconds` is ALB's registration delay: from RegisterTargets to a target's first
    health check (later checks follow the group's HealthCheckIntervalSeconds)."""

    def __init__(
        self,
        clock: Clock | None = None,
        start_seconds: float = 3.0,
        health_seconds: float = 10.0,
        stop_seconds: float = 2.0,
    ) -> None:
        self.time = clock or SystemClock()
        self.clock = self.time.now
        self.start_seconds = start_seconds
        self.stop_seconds = stop_seconds
        self.plans: dict[str, TaskPlan] = {}
        self.registered_at: dict[tuple[str, str], float] = {}
        self.deregistered_at: dict[tuple[str, str], float] = {}
        # how long a deregistered target stays `draining`; None: the group's deregistration delay
        self.drain_seconds: float | None = None
        self.health = HealthChecks(health_seconds, self.serving_at)
        self._next: dict[str | None, deque[NextTask]] = {}
        self._lock = threading.RLock()
        self._saved: list[tuple[type, str, Any]] = []
        self.start_seconds_for: Callable[[str], float] | None = None
        # Every call that changes something, by name: tests assert "nothing was started".
        self.mutations: list[tuple[str, str]] = []
        # Told the ARN of each task whose lastStatus the model changed (see Emulator).
        self.on_change: Callable[[str], None] | None = None
        # DescribeTasks calls, one entry per call: (clock reading, cluster, task count).
        self.describe_calls: list[tuple[float, str, int]] = []
        self.list_calls: list[float] = []  # ListTasks calls, by clock reading
        self.api_calls: list[tuple[float, str]] = []  # ECS and ELB calls: (clock, action)

    @property
    def health_seconds(self) -> float:
        """The registration delay: RegisterTargets to the target's first health check."""
        return self.health.registration_delay

    @health_seconds.setter
    def health_seconds(self, seconds: float) -> None:
        self.health.registration_delay = seconds

    # --- what tests and benchmarks steer ---------------------------------------------------

    def plan_next(self, cluster: str | None = None, **plan: Any) -> None:
        """Shape the next task RunTask starts (in `cluster`, or in any cluster)."""
        with self._lock:
            self._next.setdefault(cluster, deque()).append(NextTask(**plan))

    def kill(self, task_arn: str, reason: str = DIED_REASON, exit_code: int = 137) -> None:
        """A task dies outside start-engines (OOM, a crash, a person in the console).
        A task already stopping just finishes its stop."""
        with self._lock:
            plan = self.plans[task_arn]
            plan.dies_after = self.clock() - plan.created
            plan.reason, plan.exit_code = reason, exit_code

    def clear(self) -> None:
        with self._lock:
            self.plans.clear()
            self.registered_at.clear()
            self.deregistered_at.clear()
            self.health.clear()
            self.drain_seconds = None
            self._next.clear()
            self.mutations.clear()
            self.describe_calls.clear()
            self.list_calls.clear()
            self.api_calls.clear()

    def running_task_at(self, ip: str) -> str | None:
        """The ARN of a task RUNNING now at `ip` (the container a target there reaches)."""
        with self._lock:
            now = self.clock()
            for arn, plan in self.plans.items():
                if plan.ip == ip and status_at(plan, now) == "RUNNING":
                    return arn
            return None

    def serving_at(self, ip: str, at: float) -> bool:
        """A task was RUNNING at `ip` at clock reading `at` (<= now): its app answered."""
        with self._lock:
            plans = [p for p in self.plans.values() if p.ip == ip]
            # a task stopped since is judged as it was before StopTask
            before = [
                replace(p, stop_at=None) if p.stop_at is not None and at < p.stop_at else p
                for p in plans
            ]
            return any(status_at(p, at) == "RUNNING" for p in before)

    def is_running(self, task_arn: str) -> bool:
        with self._lock:
            plan = self.plans.get(task_arn)
            return plan is not None and status_at(plan, self.clock()) == "RUNNING"

    def wall(self, at: float) -> datetime:
        """The wall time of clock reading `at`."""
        return self.time.wall() - timedelta(seconds=self.clock() - at)

    # --- installing onto moto --------------------------------------------------------------

    def install(self) -> None:
        from moto.ecs.models import EC2ContainerServiceBackend as Ecs
        from moto.ecs.responses import EC2ContainerServiceResponse as EcsResponse
        from moto.elbv2.models import ELBv2Backend as Elb
        from moto.elbv2.models import FakeTargetGroup as Group
        from moto.moto_api import state_manager

        # moto walks RUNNING -> STOPPED one step per DescribeTasks; the lifecycle is ours here.
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**12})
        hooks: list[tuple[type, str, Callable[..., Any]]] = [
            (Ecs, "run_task", self._on_run_task),
            (Ecs, "describe_tasks", self._on_describe_tasks),
            (Ecs, "list_tasks", self._on_list_tasks),
            (Ecs, "stop_task", self._on_stop_task),
            (EcsResponse, "describe_tasks", _with_missing_failures),
            (Group, "register", self._on_register),
            (Group, "deregister", self._on_deregister),
            (Group, "health_for", self._on_health_for),
            (Elb, "modify_target_group", self._on_modify_target_group),
            (Elb, "describe_target_health", self._on_describe_target_health),
        ]
        for cls, name, hook in hooks:
            original = getattr(cls, name)
            self._saved.append((cls, name, original))
            setattr(cls, name, _hooked(original, hook))

    def _on_run_task(
        self, original: Any, backend: Any, cluster_str: str, *args: Any, **kwargs: Any
    ) -> Any:
        self.mutations.append(("RunTask", cluster_str))
        self.api_calls.append((self.clock(), "ecs:RunTask"))
        tasks = original(backend, cluster_str, *args, **kwargs)
        self._track(tasks, cluster_str)
        return tasks

    def _on_describe_tasks(
        self, original: Any, backend: Any, cluster_str: str, tasks: list[str]
    ) -> Any:
        self.describe_calls.append((self.clock(), cluster_str, len(tasks)))
        self.api_calls.append((self.clock(), "ecs:DescribeTasks"))
        self.tick()
        return [t for t in original(backend, cluster_str, tasks) if self._visible(t.task_arn)]

    def _on_list_tasks(self, original: Any, *args: Any, **kwargs: Any) -> Any:
        self.list_calls.append(self.clock())
        self.api_calls.append((self.clock(), "ecs:ListTasks"))
        self.tick()
        return [t for t in original(*args, **kwargs) if self._visible(t.task_arn)]

    def _on_stop_task(
        self, original: Any, backend: Any, cluster_str: str, task_str: str, reason: str
    ) -> Any:
        self.tick()
        self.mutations.append(("StopTask", task_str))
        self.api_calls.append((self.clock(), "ecs:StopTask"))
        with self._lock:
            task = _find_task(backend, cluster_str, task_str)
            plan = self.plans.get(task.task_arn) if task is not None else None
            if task is None or plan is None:
                return original(backend, cluster_str, task_str, reason)
            if plan.stop_at is None and not plan.stopped:  # a second StopTask changes nothing
                self._begin_stop(task, plan, reason)
            return task

    def _on_register(self, original: Any, group: Any, targets: list[dict[str, Any]]) -> None:
        self.mutations.append(("RegisterTargets", group.arn))
        self.api_calls.append((self.clock(), "elbv2:RegisterTargets"))
        new = [t["Id"] for t in targets if t["Id"] not in group.targets]
        original(group, targets)
        with self._lock:
            for target_id in new:  # registering a registered target changes nothing
                self.registered_at[(group.arn, target_id)] = self.clock()
                self.health.register(group.arn, target_id, self.clock())

    def _on_deregister(self, original: Any, group: Any, targets: list[dict[str, Any]]) -> None:
        self.mutations.append(("DeregisterTargets", group.arn))
        self.api_calls.append((self.clock(), "elbv2:DeregisterTargets"))
        original(group, targets)
        with self._lock:
            for target in targets:
                self.deregistered_at[(group.arn, target["Id"])] = self.clock()
                self.health.forget(group.arn, target["Id"])

    def _on_health_for(
        self, original: Any, group: Any, target: dict[str, Any], ec2_backend: Any
    ) -> Any:
        status = original(group, target, ec2_backend)
        if target["Id"] not in group.targets and self._draining(group, target["Id"]):
            status.status = "draining"
            status.reason = "Target.DeregistrationInProgress"
            status.description = "Target deregistration is in progress"
        elif status.status == "healthy":
            self.tick()
            if not _attached(group.arn):
                status.status = "unused"
                status.reason = "Target.NotInUse"
                status.description = (
                    "Target group is not configured to receive traffic from the load balancer"
                )
            elif self._outside_served_zones(group, target["Id"], ec2_backend):
                status.status = "unused"
                status.reason = "Target.NotInUse"
                status.description = (
                    "Target is in an Availability Zone that is not enabled for the load balancer"
                )
            else:
                self._health(group, status)
        return status

    def _on_modify_target_group(
        self, original: Any, backend: Any, arn: str, *args: Any, **kwargs: Any
    ) -> Any:
        """Checks due before the change ran with the old settings: work them out first."""
        group = backend.target_groups.get(arn)
        with self._lock:
            for target_id in list(group.targets) if group is not None else []:
                self.health.catch_up(group, target_id, self.clock())
        return original(backend, arn, *args, **kwargs)

    def _outside_served_zones(self, group: Any, ip: str, ec2_backend: Any) -> bool:
        """A task's IP in a subnet whose Availability Zone none of the group's load balancers
        serves: ALB sends it nothing and calls it `unused` (Target.NotInUse)."""
        subnet_id = next(
            (
                d["value"]
                for p in self.plans.values()
                if p.ip == ip and not p.stopped
                for d in p.details
                if d["name"] == "subnetId"
            ),
            None,
        )
        if subnet_id is None or not group.load_balancer_arns:
            return False
        zone = ec2_backend.get_subnet(subnet_id).availability_zone
        served = {
            subnet.availability_zone
            for balancers in _backends("elbv2", "load_balancers")
            for arn in group.load_balancer_arns
            if arn in balancers
            for subnet in balancers[arn].subnets
        }
        return zone not in served

    def _on_describe_target_health(
        self, original: Any, backend: Any, target_group_arn: str, targets: list[dict[str, Any]]
    ) -> Any:
        self.api_calls.append((self.clock(), "elbv2:DescribeTargetHealth"))
        group = backend.target_groups.get(target_group_arn)
        if not targets and group is not None:
            # AWS lists draining targets too, until their deregistration delay ends
            targets = list(group.targets.values()) + [
                dict(group.deregistered_targets[target_id])
                for (arn, target_id) in list(self.deregistered_at)
                if arn == target_group_arn
                and target_id not in group.targets
                and target_id in group.deregistered_targets
                and self._draining(group, target_id)
            ]
        return original(backend, target_group_arn, targets)

    def _draining(self, group: Any, target_id: str) -> bool:
        at = self.deregistered_at.get((group.arn, target_id))
        if at is None or group.target_type == "lambda":  # a function never drains
            return False
        delay = self.drain_seconds
        if delay is None:
            delay = float(group.attributes.get("deregistration_delay.timeout_seconds", 300))
        return self.clock() - at < delay

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
                    stop_seconds=(
                        self.stop_seconds if shape.stop_seconds is None else shape.stop_seconds
                    ),
                    invisible_for=shape.invisible_for,
                    details=[
                        {**d, "value": shape.ip}
                        if shape.ip and d["name"] == "privateIPv4Address"
                        else d
                        for d in details
                    ],
                )
                plan.ip = next(
                    (d["value"] for d in plan.details if d["name"] == "privateIPv4Address"), None
                )
                task.created_at = self.wall(now)
                self.plans[task.task_arn] = plan
                self._apply(task, plan, now)

    def _visible(self, task_arn: str) -> bool:
        plan = self.plans.get(task_arn)
        return plan is None or self.clock() - plan.created >= plan.invisible_for

    def _begin_stop(self, task: Any, plan: TaskPlan, reason: str) -> None:
        now = self.clock()
        plan.stop_from = status_at(plan, now)
        plan.stop_at = now
        task.desired_status = "STOPPED"
        task.stopped_reason = reason
        task.stop_code = "UserInitiated"
        task.stopping_at = self.wall(now)
        self._apply(task, plan, now)

    def tick(self) -> None:
        changed: list[str] = []
        with self._lock:
            now = self.clock()
            for cluster_tasks in _backends("ecs", "tasks"):
                for arn, task in cluster_tasks.items():
                    plan = self.plans.get(arn)
                    if plan and not plan.stopped:
                        before = task.last_status
                        self._apply(task, plan, now)
                        if task.last_status != before:
                            changed.append(arn)
        if self.on_change is not None:  # ECS would emit a Task State Change for each
            for arn in changed:
                self.on_change(arn)

    def scrub(self) -> None:
        """Forget every task, target and lease, keep the infrastructure: a clean slate."""
        with self._lock:
            for tables in _backends("dynamodb", "tables"):
                for table in tables.values():
                    table.items.clear()
            for cluster_tasks in _backends("ecs", "tasks"):
                cluster_tasks.clear()
            for groups in _backends("elbv2", "target_groups"):
                for group in groups.values():
                    if group.target_type == "lambda":  # the function's place is infrastructure
                        continue
                    group.targets.clear()
                    group.deregistered_targets.clear()
                    group.terminated_targets.clear()
            self.clear()

    def _apply(self, task: Any, plan: TaskPlan, now: float) -> None:
        self._move(task, plan, now)
        shown = (task.last_status, task.desired_status)
        if shown != plan.shown:  # as ECS does: a new version when a status changes
            plan.shown = shown
            plan.version += 1
        task.version = plan.version

    def _move(self, task: Any, plan: TaskPlan, now: float) -> None:
        status = status_at(plan, now)
        if plan.stop_at is not None:
            self._apply_stop(task, plan, status, plan.stop_at)
            return
        if status == "STOPPED":  # an essential container exited on its own
            plan.stopped = True
            task.last_status = task.desired_status = "STOPPED"
            task.stopped_reason = plan.reason
            task.stop_code = "EssentialContainerExited"
            task.stopped_at = self.wall(plan.created + (plan.dies_after or 0.0))
            for container in task.containers:
                container.last_status = "STOPPED"
                container.exitCode = plan.exit_code
            return
        if status == "RUNNING":
            task.started_at = self.wall(plan.created + plan.running_after)
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

    def _apply_stop(self, task: Any, plan: TaskPlan, status: str, stop_at: float) -> None:
        """A stopping task: its containers run until the grace ends, then exit (0 on SIGTERM)."""
        task.last_status = status
        if status == plan.stop_from:
            return
        for container in task.containers:
            container.last_status = "STOPPED"
            container.exitCode = 0 if plan.stop_from == "RUNNING" else None
        if task.attachments and status in ("DEPROVISIONING", "STOPPED"):
            task.attachments[0]["status"] = "DETACHING" if status == "DEPROVISIONING" else "DELETED"
        if status == "STOPPED":
            plan.stopped = True
            task.stopped_at = self.wall(stop_at + sum(s for _, s in stop_phases(plan)))

    def _health(self, group: Any, status: Any) -> None:
        """Rewrite a registered target's health with the health-check model's verdict."""
        if not group.health_check_enabled:
            status.status = "unavailable"
            status.reason = "Target.HealthCheckDisabled"
            status.description = "Health checks are disabled"
            return
        verdict = self.health.verdict(group, status.instance_id, self.clock())
        status.status, status.reason, status.description = (
            verdict.state,
            verdict.reason,
            verdict.description,
        )


def status_at(plan: TaskPlan, now: float) -> str:
    """The lastStatus the model gives a task at clock reading `now`."""
    if plan.stop_at is not None:
        since = now - plan.stop_at
        for status, seconds in stop_phases(plan):
            if since < seconds:
                return status
            since -= seconds
        return "STOPPED"
    elapsed = now - plan.created
    if plan.dies_after is not None and elapsed >= plan.dies_after:
        return "STOPPED"
    if elapsed >= plan.running_after:
        return "RUNNING"
    if elapsed >= 0.6 * plan.running_after:
        return "ACTIVATING"
    if elapsed >= 0.25 * plan.running_after:
        return "PENDING"
    return "PROVISIONING"


def stop_phases(plan: TaskPlan) -> list[tuple[str, float]]:
    """The lastStatus a stopping task shows after StopTask, each for how long, before STOPPED."""
    if plan.stop_from == "PROVISIONING":  # no container to signal: only the ENI to release
        return [("DEPROVISIONING", STOP_STEP_SECONDS)]
    steps = ("DEACTIVATING", "STOPPING", "DEPROVISIONING")
    return [(plan.stop_from, plan.stop_seconds), *((s, STOP_STEP_SECONDS) for s in steps)]


def _attached(group_arn: str) -> bool:
    """A listener's rule or default action forwards to the group, at any weight: ALB
    health-checks only the targets of groups a listener uses."""
    for balancers in _backends("elbv2", "load_balancers"):
        for balancer in balancers.values():
            for listener in balancer.listeners.values():
                actions = list(listener.default_actions)
                for rule in listener.rules.values():
                    actions += list(rule.actions)
                for action in actions:
                    data = getattr(action, "data", action)
                    groups = [
                        g.get("TargetGroupArn")
                        for g in (data.get("ForwardConfig") or {}).get("TargetGroups") or ()
                    ]
                    if group_arn in (data.get("TargetGroupArn"), *groups):
                        return True
    return False


def _find_task(backend: Any, cluster_str: str, task_str: str) -> Any:
    """The task StopTask names (an ARN or an ID), as moto's own stop_task finds it."""
    cluster = backend._get_cluster(cluster_str)
    task_id = task_str.rsplit("/", 1)[-1]
    tasks = backend.tasks.get(cluster.name, {})
    return next((task for arn, task in tasks.items() if arn.endswith(task_id)), None)


def _with_missing_failures(original: Any, response: Any) -> Any:
    """DescribeTasks names each asked-for task it did not return under `failures`, as AWS
    does (moto's response always has none)."""
    result = original(response)
    found = [task.task_arn for task in result.result["tasks"]]
    cluster = response._get_param("cluster", "default").rsplit("/", 1)[-1]
    prefix = f"arn:aws:ecs:{response.region}:{response.current_account}:task/{cluster}/"
    result.result["failures"] = [
        {"arn": asked if asked.startswith("arn:") else prefix + asked, "reason": "MISSING"}
        for asked in response._get_param("tasks", [])
        if not any(arn == asked or arn.endswith("/" + asked) for arn in found)
    ]
    return result


def _backends(service: str, attribute: str) -> list[Any]:
    """`attribute` of every account's and region's backend of a moto service."""
    from moto.backends import get_backend

    found: list[Any] = []
    for accounts in get_backend(service).values():  # type: ignore[call-overload]
        for backend in accounts.values():
            value = getattr(backend, attribute)
            found.extend(value.values() if attribute == "tasks" else [value])
    return found


def _hooked(original: Any, hook: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return hook(original, *args, **kwargs)

    return wrapper
