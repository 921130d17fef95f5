"""What every use case shares: the handlers, settings, clock, lease and publisher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from start_engines.config import engine_names, get_service_config
from start_engines.errors import ConfigError, StartEnginesError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from start_engines.clock import Clock
    from start_engines.cloudwatch_handler import CloudWatchHandler
    from start_engines.config import EngineConfig, Environ, Settings
    from start_engines.ecs_handler import ECSHandler, TaskInfo
    from start_engines.event_publisher import EventPublisher
    from start_engines.lease import Lease
    from start_engines.listener_handler import ListenerHandler
    from start_engines.network_handler import NetworkHandler
    from start_engines.target_group_handler import TargetGroupHandler


@dataclass(frozen=True)
class Context:
    """What every use case works with: AWS handlers, settings, clock."""

    ecs: ECSHandler
    targets: TargetGroupHandler
    settings: Settings
    clock: Clock
    lease: Lease | None = None
    publisher: EventPublisher | None = None
    environ: Environ | None = None
    network: NetworkHandler | None = None
    cloudwatch: CloudWatchHandler | None = None
    listeners: ListenerHandler | None = None

    def engine(self, name: str) -> EngineConfig:
        return get_service_config(name, self.environ)

    def select(self, names: Sequence[str] | None) -> list[EngineConfig | ConfigError]:
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

    def engine_clusters(self) -> set[str]:
        """The cluster names of every engine that is configured well enough to have one."""
        clusters: set[str] = set()
        for engine in self.select(None):
            if not isinstance(engine, ConfigError):
                clusters.add(engine.cluster.rsplit("/", 1)[-1])
        return clusters

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        if self.publisher is not None:
            self.publisher.publish(detail_type, detail)

    def engine_of(
        self, task: TaskInfo | None, cluster: str, task_definition_arn: str
    ) -> EngineConfig | None:
        """The engine a task belongs to (TaskInfo.owned_by). A task ECS no longer knows is
        matched by the event's cluster and family."""
        if task is not None:
            try:
                engine = self.engine(task.engine) if task.engine else None
            except StartEnginesError:
                return None
            return engine if engine is not None and task.owned_by(engine) else None
        family = task_definition_arn.rsplit("/", 1)[-1].split(":", 1)[0]
        for name in engine_names(self.environ):
            try:
                engine = self.engine(name)
            except StartEnginesError:
                continue
            if engine.cluster.rsplit("/", 1)[-1] == cluster and engine.family == family:
                return engine
        return None
