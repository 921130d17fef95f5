"""Use cases. The only module that uses both handlers; it never sees botocore."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from start_engines.config import get_service_config
from start_engines.errors import InternalError, StartEnginesError

if TYPE_CHECKING:
    from start_engines.clock import Clock, Deadline
    from start_engines.config import EngineConfig, Environ, Settings
    from start_engines.ecs_handler import ECSHandler, TaskInfo
    from start_engines.events import StartRequest
    from start_engines.target_group_handler import TargetGroupHandler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartResult:
    service: str
    task_arn: str
    private_ip: str
    port: int
    container_name: str
    target_group_arns: tuple[str, ...]
    health: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    def to_body(self) -> dict[str, Any]:
        primary = self.target_group_arns[0]
        body: dict[str, Any] = {
            "message": f"Engine '{self.service}' started at {self.private_ip}:{self.port}",
            "service": self.service,
            "taskArn": self.task_arn,
            "taskId": self.task_id,
            "privateIp": self.private_ip,
            "port": self.port,
            "containerName": self.container_name,
            "targetGroupArn": primary,
            "healthStatus": self.health[primary],
            "timings": self.timings,
        }
        if len(self.target_group_arns) > 1:
            body["targetGroupArns"] = list(self.target_group_arns)
            body["healthStatuses"] = dict(self.health)
        return body


class Engines:
    def __init__(
        self,
        ecs: ECSHandler,
        targets: TargetGroupHandler,
        settings: Settings,
        clock: Clock,
        environ: Environ | None = None,
    ) -> None:
        self.ecs = ecs
        self.targets = targets
        self.settings = settings
        self.clock = clock
        self.environ = environ

    def engine(self, name: str) -> EngineConfig:
        return get_service_config(name, self.environ)

    def start(self, request: StartRequest, deadline: Deadline) -> StartResult:
        """The seed's flow: RunTask, wait for RUNNING, read the IP, register, maybe wait healthy.

        Any failure after RunTask stops the task and removes its targets; the raised error
        says so (`cleanedUp`).
        """
        engine = self.engine(request.services[0])
        container = self.ecs.container_name(engine)
        began = self.clock.now()
        task = self.ecs.start_task(engine, client_token=request.event_id)
        _progress(
            engine,
            "RunTask",
            f"RunTask accepted: task {task.id} is {task.last_status}",
            0.0,
            taskId=task.id,
            lastStatus=task.last_status,
        )
        try:
            return self._finish_start(engine, task, container, request, deadline, began)
        except StartEnginesError as exc:
            self._clean_up(engine, task, exc)
            raise
        except Exception as exc:
            logger.exception("unexpected error while starting %s", engine.name)
            error = InternalError(f"unexpected error: {exc!r}", service=engine.name)
            self._clean_up(engine, task, error)
            raise error from exc

    def _finish_start(
        self,
        engine: EngineConfig,
        task: TaskInfo,
        container: str,
        request: StartRequest,
        deadline: Deadline,
        began: float,
    ) -> StartResult:
        timings: dict[str, float] = {}

        last_status = [task.last_status]

        def on_update(info: TaskInfo) -> None:
            if info.last_status == last_status[0]:
                return
            last_status[0] = info.last_status
            elapsed = self.clock.now() - began
            _progress(
                engine,
                "status",
                f"task {info.id} is {info.last_status}",
                elapsed,
                taskId=info.id,
                lastStatus=info.last_status,
            )

        running = self.ecs.wait_for_running(
            engine.cluster,
            task.arn,
            deadline.within(self.settings.start_timeout),
            interval=self.settings.poll_interval,
            service=engine.name,
            on_update=on_update,
        )
        timings["running"] = round(self.clock.now() - began, 3)
        ip = self.ecs.extract_ip(running, engine.name)
        _progress(engine, "ip", f"task {task.id} has IP {ip}", timings["running"], privateIp=ip)

        self.targets.register_target(engine.target_group_arns, ip, engine.port, engine.name)
        timings["registered"] = round(self.clock.now() - began, 3)
        _progress(
            engine,
            "registered",
            f"{ip}:{engine.port} registered in {len(engine.target_group_arns)} target group(s)",
            timings["registered"],
        )

        if request.wait_for_healthy:
            health = self.targets.wait_for_healthy(
                engine.target_group_arns,
                ip,
                engine.port,
                deadline.within(self.settings.health_timeout),
                interval=self.settings.health_poll_interval,
                service=engine.name,
            )
            timings["healthy"] = round(self.clock.now() - began, 3)
        else:
            health = self.targets.health_of(engine.target_group_arns, ip, engine.port, engine.name)
        summary = ", ".join(f"{target_group_name(arn)} {state}" for arn, state in health.items())
        _progress(
            engine,
            "health",
            f"target health: {summary}",
            self.clock.now() - began,
            healthStatus=health,
        )
        return StartResult(
            service=engine.name,
            task_arn=task.arn,
            private_ip=ip,
            port=engine.port,
            container_name=container,
            target_group_arns=engine.target_group_arns,
            health=health,
            timings=timings,
        )

    def _clean_up(self, engine: EngineConfig, task: TaskInfo, error: StartEnginesError) -> None:
        """Stop the task and remove its targets after a failed start; record it on the error."""
        report: dict[str, Any] = {"taskId": task.id, "taskArn": task.arn}
        try:
            seen = self.ecs.describe(engine.cluster, [task.arn]).get(task.arn)
            ip = (seen.private_ip if seen else None) or task.private_ip
            removed: list[str] = []
            if ip:
                removed = self.targets.deregister_target(
                    engine.target_group_arns, ip, engine.port, engine.name
                )
            self.ecs.stop_task(
                engine.cluster, task.arn, f"start-engines: start failed ({error.error_type})"
            )
            report.update(cleanedUp=True, targetsRemoved=removed)
            logger.warning(
                "start of %s failed (%s); task %s stopped and targets removed",
                engine.name,
                error.error_type,
                task.id,
            )
        except StartEnginesError as cleanup_error:
            report.update(cleanedUp=False, cleanupError=cleanup_error.message)
            logger.error(
                "start of %s failed and cleanup of task %s failed too: %s",
                engine.name,
                task.id,
                cleanup_error.message,
            )
        error.details.update(report)


def _progress(engine: EngineConfig, step: str, text: str, elapsed: float, **data: Any) -> None:
    logger.info(
        "%s: %s",
        engine.name,
        text,
        extra={
            "progress": {"service": engine.name, "step": step, "elapsed": round(elapsed, 3), **data}
        },
    )


def target_group_name(arn: str) -> str:
    """`auth-tg` from arn:...:targetgroup/auth-tg/0123abcd."""
    return arn.split(":targetgroup/", 1)[-1].split("/", 1)[0]
