"""Sync: make each target group match the live tasks of ours. Remove targets whose IP
belongs to no live task of ours (stale), register RUNNING tasks that are missing."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from start_engines.engines.outcome import Outcome, combine, not_configured, target_group_name
from start_engines.engines.serving import register_checked
from start_engines.errors import ConfigError, StartEnginesError

if TYPE_CHECKING:
    from start_engines.config import EngineConfig
    from start_engines.engines.context import Context
    from start_engines.events import SyncRequest

logger = logging.getLogger(__name__)


def sync(ctx: Context, request: SyncRequest) -> Outcome:
    results: list[tuple[int, dict[str, Any]]] = []
    for engine in ctx.select(request.services):
        if isinstance(engine, ConfigError):
            results.append(not_configured(engine, request.services is None))
            continue
        try:
            results.append((200, sync_engine(ctx, engine)))
        except StartEnginesError as exc:
            results.append((exc.status_code, exc.to_body()))
    outcome = combine(results)
    outcome.body["changes"] = sum(
        len(b.get("registered", [])) + len(b.get("deregistered", [])) for _, b in results
    )
    return outcome


def sync_engine(ctx: Context, engine: EngineConfig) -> dict[str, Any]:
    tasks = ctx.ecs.find_tasks(engine)  # owned, live, and not claimed by a stop
    live_ips = {t.private_ip for t in tasks if t.private_ip}
    running = {ctx.ecs.extract_ip(t, engine.name): t for t in tasks if t.is_running}
    running_ips = set(running)
    registered: list[dict[str, Any]] = []
    deregistered: list[dict[str, Any]] = []
    for arn in engine.target_group_arns:
        current = ctx.targets.get_target_health(arn, engine.name)
        for target in current:
            if target.ip not in live_ips | running_ips and target.state != "draining":
                ctx.targets.deregister_target([arn], target.ip, target.port, engine.name)
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
            if not register_checked(ctx, engine, running[ip], ip, [arn]).being_stopped:
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
