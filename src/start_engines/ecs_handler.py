"""ECSHandler: ECS calls only (run, wait, IP, stop, find ours). ClientError stops here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from start_engines.aws import AWS_ERRORS, has_code, translate
from start_engines.errors import (
    AwsError,
    ConfigError,
    RunTaskConflict,
    RunTaskFailed,
    StartTimeout,
    TaskNotFound,
    TaskStopped,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import TaskTypeDef

    from start_engines.clock import Deadline
    from start_engines.config import EngineConfig

logger = logging.getLogger(__name__)

STARTED_BY = "start-engines"
ENGINE_TAG = "start-engines:engine"
LAST_START_TAG = "start-engines:last-start"  # a start that reused the task resets its idle clock
# Set before a stop deregisters the task: every path then knows, across invocations, that the
# task is going away and must be neither reused nor registered. Value: "<time> <reason>".
STOPPING_TAG = "start-engines:stopping"
LIVE_STATUSES = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING")
STOPPED_STATUSES = ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED")  # past RUNNING
DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks
MAX_REASON = 255
MAX_TAG_VALUE = 256


@dataclass(frozen=True)
class TaskInfo:
    arn: str
    cluster_arn: str
    last_status: str
    desired_status: str
    private_ip: str | None = None
    eni_id: str | None = None
    started_by: str | None = None
    engine: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    stopped_reason: str | None = None
    stop_code: str | None = None
    exit_codes: tuple[tuple[str, int | None], ...] = ()
    task_definition_arn: str = ""
    version: int = 0
    last_start: datetime | None = None
    stopping: str | None = None  # the stopping tag's value: a stop has claimed this task

    @property
    def cluster(self) -> str:
        return self.cluster_arn.rsplit("/", 1)[-1]

    @property
    def being_stopped(self) -> bool:
        """A stop claimed it, ECS was told to stop it, or it is past RUNNING."""
        return bool(self.stopping) or self.desired_status == "STOPPED" or self.is_stopped

    def owned_by(self, engine: EngineConfig) -> bool:
        """Ours and the engine's: startedBy, the engine tag, and the engine's own family and
        cluster. A tag alone can be forged by anyone who may RunTask in some cluster."""
        return (
            self.is_ours
            and self.engine == engine.name
            and self.family == engine.family
            and self.cluster == engine.cluster.rsplit("/", 1)[-1]
        )

    @property
    def began(self) -> datetime | None:
        """When the engine last started on this task: RUNNING, or a later start that reused it."""
        times = [t for t in (self.started_at or self.created_at, self.last_start) if t is not None]
        return max(times) if times else None

    @property
    def family(self) -> str:
        return self.task_definition_arn.rsplit("/", 1)[-1].split(":", 1)[0]

    @property
    def is_live(self) -> bool:
        return self.last_status in LIVE_STATUSES and self.desired_status == "RUNNING"

    @property
    def id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @property
    def is_ours(self) -> bool:
        return self.started_by == STARTED_BY and self.engine is not None

    @property
    def is_stopped(self) -> bool:
        return self.last_status in STOPPED_STATUSES

    @property
    def is_running(self) -> bool:
        return self.last_status == "RUNNING"

    @classmethod
    def from_api(cls, task: TaskTypeDef) -> TaskInfo:
        private_ip = eni_id = None
        for attachment in task.get("attachments", []):
            if attachment.get("type") != "ElasticNetworkInterface":
                continue
            details = {d.get("name"): d.get("value") for d in attachment.get("details", [])}
            private_ip = details.get("privateIPv4Address") or None
            eni_id = details.get("networkInterfaceId") or None
        tags = {t.get("key"): t.get("value") for t in task.get("tags", [])}
        return cls(
            arn=task["taskArn"],
            cluster_arn=task.get("clusterArn", ""),
            last_status=task.get("lastStatus", "UNKNOWN"),
            desired_status=task.get("desiredStatus", "UNKNOWN"),
            private_ip=private_ip,
            eni_id=eni_id,
            started_by=task.get("startedBy"),
            engine=tags.get(ENGINE_TAG),
            created_at=task.get("createdAt"),
            started_at=task.get("startedAt"),
            stopped_reason=task.get("stoppedReason") or None,
            stop_code=task.get("stopCode") or None,
            exit_codes=tuple(
                (c.get("name", "?"), c.get("exitCode")) for c in task.get("containers", [])
            ),
            task_definition_arn=task.get("taskDefinitionArn", ""),
            version=int(task.get("version", 0) or 0),
            last_start=parse_time(tags.get(LAST_START_TAG)),
            stopping=tags.get(STOPPING_TAG) or None,
        )


@dataclass(frozen=True)
class TaskDefinitionInfo:
    arn: str
    network_mode: str
    compatibilities: tuple[str, ...]
    containers: tuple[tuple[str, tuple[int, ...]], ...]  # (name, container ports)

    @property
    def container_ports(self) -> tuple[int, ...]:
        return tuple(port for _, ports in self.containers for port in ports)


class ECSHandler:
    def __init__(self, ecs: ECSClient, ec2: Callable[[], EC2Client]) -> None:
        self._ecs = ecs
        self._ec2 = ec2
        self._definitions: dict[str, TaskDefinitionInfo] = {}

    def task_definition(self, engine: EngineConfig) -> TaskDefinitionInfo:
        """What start-engines needs to know of the engine's task definition (cached)."""
        if engine.task_definition not in self._definitions:
            try:
                definition = self._ecs.describe_task_definition(
                    taskDefinition=engine.task_definition
                )["taskDefinition"]
            except AWS_ERRORS as exc:
                raise translate(
                    exc, f"DescribeTaskDefinition {engine.task_definition}", service=engine.name
                ) from exc
            self._definitions[engine.task_definition] = TaskDefinitionInfo(
                arn=definition.get("taskDefinitionArn", ""),
                network_mode=definition.get("networkMode", "bridge"),
                compatibilities=tuple(definition.get("requiresCompatibilities", [])),
                containers=tuple(
                    (
                        c["name"],
                        tuple(
                            m["containerPort"]
                            for m in c.get("portMappings", [])
                            if "containerPort" in m
                        ),
                    )
                    for c in definition.get("containerDefinitions", [])
                ),
            )
        return self._definitions[engine.task_definition]

    def container_name(self, engine: EngineConfig) -> str:
        """The configured container name, else the container whose portMappings hold the port."""
        if engine.container_name:
            return engine.container_name
        for name, ports in self.task_definition(engine).containers:
            if engine.port in ports:
                return name
        raise ConfigError(
            f"engine '{engine.name}': no container of task definition {engine.task_definition} maps port {engine.port}",
            service=engine.name,
            field="port",
        )

    def cluster_exists(self, cluster: str) -> bool:
        try:
            found = self._ecs.describe_clusters(clusters=[cluster]).get("clusters", [])
        except AWS_ERRORS as exc:
            raise translate(exc, f"DescribeClusters {cluster}") from exc
        return any(c.get("status") == "ACTIVE" for c in found)

    def start_task(
        self,
        engine: EngineConfig,
        *,
        client_token: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        count: int = 1,
    ) -> list[TaskInfo]:
        """RunTask `count` tasks of the engine, tagged as ours. RunTaskFailed if none is placed."""
        kwargs: dict[str, Any] = {
            "cluster": engine.cluster,
            "taskDefinition": engine.task_definition,
            "launchType": "FARGATE",
            "count": count,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(engine.subnets),
                    "securityGroups": list(engine.security_groups),
                    "assignPublicIp": engine.assign_public_ip,
                }
            },
            "startedBy": STARTED_BY,
            "tags": [{"key": ENGINE_TAG, "value": engine.name}],
            "propagateTags": "TASK_DEFINITION",
            "enableECSManagedTags": True,
        }
        if client_token:
            kwargs["clientToken"] = client_token[:64]
        if overrides:
            kwargs["overrides"] = dict(overrides)
        try:
            response = self._ecs.run_task(**kwargs)
        except AWS_ERRORS as exc:
            raise translate(
                exc, "RunTask", service=engine.name, codes={"ConflictException": RunTaskConflict}
            ) from exc
        failures = response.get("failures", [])
        tasks = response.get("tasks", [])
        if not tasks:
            reasons = [
                {
                    "reason": f.get("reason", "unknown"),
                    "detail": f.get("detail", ""),
                    "arn": f.get("arn", ""),
                }
                for f in failures
            ]
            text = "; ".join(
                r["reason"] + (f" ({r['detail']})" if r["detail"] else "") for r in reasons
            )
            raise RunTaskFailed(
                f"RunTask for '{engine.name}' placed no task: {text or 'no task returned'}",
                service=engine.name,
                details={"failures": reasons},
            )
        started = [TaskInfo.from_api(task) for task in tasks]
        logger.info(
            "RunTask %s started %s in %s", engine.name, [t.id for t in started], engine.cluster
        )
        if failures:
            logger.warning(
                "RunTask %s placed %d of %d: %s", engine.name, len(started), count, failures
            )
        return started

    def describe(self, cluster: str, task_arns: Sequence[str]) -> dict[str, TaskInfo]:
        """The tasks ECS still knows, by ARN. One call per 100 tasks."""
        found: dict[str, TaskInfo] = {}
        for start in range(0, len(task_arns), DESCRIBE_BATCH):
            batch = list(task_arns[start : start + DESCRIBE_BATCH])
            try:
                response = self._ecs.describe_tasks(cluster=cluster, tasks=batch, include=["TAGS"])
            except AWS_ERRORS as exc:
                raise translate(exc, "DescribeTasks") from exc
            for task in response.get("tasks", []):
                info = TaskInfo.from_api(task)
                found[info.arn] = info
        return found

    def wait_for_running(
        self,
        cluster: str,
        task_arn: str,
        deadline: Deadline,
        *,
        interval: float,
        service: str | None = None,
    ) -> TaskInfo:
        """Poll one task until RUNNING (returned), stopped (TaskStopped) or the deadline
        (StartTimeout). Starts share a budgeted loop in engines.py; this serves one task."""
        info: TaskInfo | None = None
        while True:
            info = self.describe(cluster, [task_arn]).get(task_arn)
            if info is None or info.is_running or info.is_stopped or deadline.expired():
                return running_or_raise(info, task_arn, service)
            deadline.sleep(interval)

    def extract_ip(self, task: TaskInfo, service: str | None = None) -> str:
        """The ENI attachment's privateIPv4Address; DescribeNetworkInterfaces when it is missing."""
        if task.private_ip:
            return task.private_ip
        if not task.eni_id:
            raise AwsError(
                f"task {task.id} has no network interface attachment",
                service=service,
                details={"taskId": task.id},
            )
        try:
            response = self._ec2().describe_network_interfaces(NetworkInterfaceIds=[task.eni_id])
        except AWS_ERRORS as exc:
            raise translate(exc, "DescribeNetworkInterfaces", service=service) from exc
        for interface in response.get("NetworkInterfaces", []):
            if interface.get("PrivateIpAddress"):
                return interface["PrivateIpAddress"]
        raise AwsError(
            f"network interface {task.eni_id} of task {task.id} has no private IP",
            service=service,
            details={"taskId": task.id},
        )

    def stop_task(self, cluster: str, task_arn: str, reason: str) -> bool:
        """Stop a task. True if this call stopped it, False if it was already stopped or gone."""
        try:
            self._ecs.stop_task(cluster=cluster, task=task_arn, reason=reason[:MAX_REASON])
        except AWS_ERRORS as exc:
            if has_code(exc, "InvalidParameterException", message_contains="not found"):
                return False
            raise translate(exc, "StopTask") from exc
        logger.info("StopTask %s (%s)", task_arn, reason)
        return True

    def find_tasks(
        self,
        engine: EngineConfig,
        *,
        include_foreign: bool = False,
        include_stopping: bool = False,
    ) -> list[TaskInfo]:
        """The engine's live tasks that it owns (see TaskInfo.owned_by), plus, with
        include_foreign, any task of the engine's family in its cluster that is not ours. A
        task a stop has claimed is left out unless include_stopping."""
        arns = self.list_tasks(engine.cluster, started_by=None if include_foreign else STARTED_BY)
        tasks = self.describe(engine.cluster, arns).values() if arns else []
        return [
            t
            for t in tasks
            if t.is_live
            and (include_stopping or not t.stopping)
            and (
                t.owned_by(engine)
                or (include_foreign and not t.is_ours and t.family == engine.family)
            )
        ]

    def gone_tasks(self, engine: EngineConfig) -> list[TaskInfo]:
        """The engine's own tasks that ECS was told to stop or that stopped (ECS shows a
        stopped task for about an hour)."""
        arns = self.list_tasks(engine.cluster, desired_status="STOPPED")
        tasks = self.describe(engine.cluster, arns).values() if arns else []
        return [t for t in tasks if t.owned_by(engine)]

    def mark_started(self, task: TaskInfo, at: datetime) -> None:
        """Tag a reused task with the time of this start: the idle clock starts again."""
        self._tag(task, LAST_START_TAG, at.isoformat())

    def mark_stopping(self, task: TaskInfo, reason: str, at: datetime) -> None:
        """Claim the task for a stop, before its targets are removed."""
        self._tag(task, STOPPING_TAG, f"{at.isoformat()} {reason}"[:MAX_TAG_VALUE])

    def unmark_stopping(self, task: TaskInfo) -> None:
        """Give the task back after a stop could not stop it."""
        try:
            self._ecs.untag_resource(resourceArn=task.arn, tagKeys=[STOPPING_TAG])
        except AWS_ERRORS as exc:
            raise translate(exc, f"UntagResource {task.id}") from exc

    def _tag(self, task: TaskInfo, key: str, value: str) -> None:
        try:
            self._ecs.tag_resource(resourceArn=task.arn, tags=[{"key": key, "value": value}])
        except AWS_ERRORS as exc:
            raise translate(exc, f"TagResource {task.id}") from exc

    def list_tasks(
        self,
        cluster: str,
        *,
        started_by: str | None = STARTED_BY,
        desired_status: str = "RUNNING",
    ) -> list[str]:
        """Task ARNs in a cluster by desired status (ours only, unless started_by is None)."""
        arns: list[str] = []
        kwargs: dict[str, Any] = {"cluster": cluster, "desiredStatus": desired_status}
        if started_by:
            kwargs["startedBy"] = started_by
        try:
            for page in self._ecs.get_paginator("list_tasks").paginate(**kwargs):
                arns.extend(page.get("taskArns", []))
        except AWS_ERRORS as exc:
            raise translate(exc, "ListTasks") from exc
        return arns


def running_or_raise(info: TaskInfo | None, task_arn: str, service: str | None) -> TaskInfo:
    """A task that reached RUNNING, else the error that says why it did not."""
    task_id = task_arn.rsplit("/", 1)[-1]
    if info is None:
        raise TaskNotFound(
            f"ECS does not know task {task_id}", service=service, details={"taskId": task_id}
        )
    if info.is_stopped:
        exit_codes = {name: code for name, code in info.exit_codes}
        raise TaskStopped(
            f"task {task_id} stopped during start: {info.stopped_reason or 'no reason given'}"
            f"; exit codes {', '.join(f'{n}={c}' for n, c in exit_codes.items()) or 'none'}",
            service=service,
            details={
                "taskId": task_id,
                "stoppedReason": info.stopped_reason,
                "stopCode": info.stop_code,
                "exitCodes": exit_codes,
            },
        )
    if not info.is_running:
        raise StartTimeout(
            f"task {task_id} did not reach RUNNING in time (last status {info.last_status})",
            service=service,
            details={"taskId": task_id, "lastStatus": info.last_status},
        )
    return info


def parse_time(value: str | None) -> datetime | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
