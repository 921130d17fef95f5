"""The use cases, one module each, over a shared Context. `Engines.dispatch` is the one way in,
and it imports only the use case a command needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from start_engines.config import load_settings
from start_engines.engines.context import Context
from start_engines.engines.outcome import Outcome

if TYPE_CHECKING:
    from start_engines.aws import Clients
    from start_engines.clock import Clock, Deadline
    from start_engines.config import Environ, Settings
    from start_engines.engines.check import Problem
    from start_engines.events import Command

__all__ = ["Context", "Engines", "Outcome"]


class Engines:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @classmethod
    def build(cls, clients: Clients, clock: Clock, environ: Environ | None = None) -> Engines:
        """Engines wired to AWS through `clients`, configured from the environment."""
        from start_engines.cloudwatch_handler import CloudWatchHandler
        from start_engines.ecs_handler import ECSHandler
        from start_engines.event_publisher import EventPublisher
        from start_engines.lease import Lease
        from start_engines.listener_handler import ListenerHandler
        from start_engines.network_handler import NetworkHandler
        from start_engines.target_group_handler import TargetGroupHandler

        settings = load_settings(environ)
        return cls(
            Context(
                ECSHandler(clients.ecs, lambda: clients.ec2),
                TargetGroupHandler(clients.elbv2),
                settings,
                clock,
                lease=Lease(clients.dynamodb, settings.lease_table)
                if settings.lease_table
                else None,
                publisher=EventPublisher(clients.events, settings.event_bus)
                if settings.event_bus
                else None,
                environ=environ,
                network=NetworkHandler(clients.ec2),
                cloudwatch=CloudWatchHandler(clients.cloudwatch),
                listeners=ListenerHandler(clients.elbv2),
            )
        )

    def dispatch(self, command: Command, deadline: Deadline) -> Outcome:
        """Run any command; every front door (Lambda, CLI) comes through here. It branches on
        `kind`, so only this command's class and use case are ever imported."""
        if command.kind == "start":
            from start_engines.engines.start import start

            return start(self.ctx, command, deadline)
        if command.kind == "stop":
            from start_engines.engines.stop import stop

            return stop(self.ctx, command, deadline)
        if command.kind == "status":
            from start_engines.engines.status import status

            return status(self.ctx, command)
        if command.kind == "sync":
            from start_engines.engines.sync import sync

            return sync(self.ctx, command)
        if command.kind == "reap":
            from start_engines.engines.reap import reap_idle

            return reap_idle(self.ctx, command, deadline)
        if command.kind == "wake":
            from start_engines.engines.wake import wake

            return wake(self.ctx, command, deadline)
        from start_engines.engines.reconcile import on_task_state_change

        return on_task_state_change(self.ctx, command, deadline)

    def check(self) -> list[Problem]:
        """Everything a start would trip over, for every engine, before any task runs."""
        from start_engines.engines.check import check

        return check(self.ctx)
