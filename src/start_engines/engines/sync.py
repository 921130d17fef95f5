"""Sync: make each target group match the live tasks of ours. Remove targets whose IP
belongs to no live task of ours (stale), register RUNNING tasks that are missing."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from start_engines.ecs_handler import parse_time
from start_engines.engines.outcome import Outcome, combine, not_configured, target_group_name
from start_engines.engines.routing import settle
from start_engines.engines.serving import ready_to_register, register_checked
from start_engines.errors import ConfigError, StartEnginesError

if TYPE_CHECKING:
    from start_engines.config import EngineConfig
    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.context import Context
    from start_engines.events import SyncRequest

logger = logging.getLogger(__name__)

# Longer than any stop waits between its claim and StopTask (drain timeout, deadline margin).
ABANDONED_AFTER = 15 * 60.0


def sync(ctx: Context, request: SyncRequest) -> Outcome:
    results: list[tuple[int, dict[str, Any]]] = []
    for engine in ctx.select(request.services):
        if isinstance(engine, ConfigError):
            results.append(not_configured(engine, request.services is None))
            continue
        try:
            results.append((200, sync_engine(ctx, engine)))
        except StartEnginesError as exc:
            results.append((exc.status_code, {**exc.to_body(), "service": engine.name}))
    outcome = combine(results)
    outcome.body["changes"] = sum(
        len(b.get("registered", [])) + len(b.get("deregistered", [])) for _, b in results
    )
    return outcome


def sync_engine(ctx: Context, engine: EngineConfig) -> dict[str, Any]:
    """Register the engine's RUNNING tasks where they are missing. Remove only targets that
    belong to a task of the engine that is gone or being stopped: a target group can be shared
    with an ECS service, whose targets are reported as `foreign` and left alone."""
    tasks = ctx.ecs.find_tasks(engine, include_stopping=True)
    finished = _finish_abandoned_stops(ctx, engine, tasks)
    serving = [t for t in tasks if not t.stopping]
    live_ips = {t.private_ip for t in serving if t.private_ip}
    # RUNNING, or starting with its IP known (registerAt ip): each belongs behind the groups
    running = {
        ctx.ecs.extract_ip(t, engine.name): t for t in serving if ready_to_register(t, engine)
    }
    gone_ips = {t.private_ip for t in tasks if t.stopping and t.private_ip}
    gone_ips |= {t.private_ip for t in ctx.ecs.gone_tasks(engine) if t.private_ip}
    gone_ips -= live_ips | set(running)  # an IP handed on to a live task of ours stays
    registered: list[dict[str, Any]] = []
    deregistered: list[dict[str, Any]] = []
    foreign: list[dict[str, Any]] = []
    for arn in engine.target_group_arns:
        current = ctx.targets.get_target_health(arn, engine.name)
        for target in current:
            if target.ip in live_ips or target.ip in running or target.state == "draining":
                continue
            change: dict[str, Any] = {
                "ip": target.ip,
                "port": target.port,
                "targetGroupArn": arn,
                "state": target.state,
            }
            if target.ip in gone_ips:
                ctx.targets.deregister_target([arn], target.ip, target.port, engine.name)
                deregistered.append(change)
            else:
                foreign.append(change)
        # a draining target serves no new requests: register it again (ALB allows that)
        present = {t.ip for t in current if t.port == engine.port and t.state != "draining"}
        for ip in sorted(set(running) - present):
            if not register_checked(ctx, engine, running[ip], ip, [arn]).being_stopped:
                registered.append({"ip": ip, "port": engine.port, "targetGroupArn": arn})
    done: tuple[tuple[str, list[dict[str, Any]]], ...] = (
        ("removed stale", deregistered),
        ("registered missing", registered),
    )
    for kind, changes in done:
        for done_change in changes:
            logger.info(
                "sync %s: %s target %s:%s in %s",
                engine.name,
                kind,
                done_change["ip"],
                done_change["port"],
                target_group_name(done_change["targetGroupArn"]),
            )
    result: dict[str, Any] = {
        "service": engine.name,
        "status": "changed" if registered or deregistered or finished else "in-sync",
        "registered": registered,
        "deregistered": deregistered,
    }
    if foreign:
        result["foreign"] = foreign  # no task of this engine: left alone
    if engine.wakeable:
        result["routing"] = settle(ctx, engine)
    if finished:
        result["stopsFinished"] = finished
    return result


def _finish_abandoned_stops(ctx: Context, engine: EngineConfig, tasks: list[TaskInfo]) -> list[str]:
    """A task claimed for a stop long ago and still running: the stop's invocation died
    between its claim and StopTask. Nothing else would ever stop it, so sync does."""
    now = ctx.clock.wall()
    finished: list[str] = []
    for task in tasks:
        claimed_at, _, reason = (task.stopping or "").partition(" ")
        since = parse_time(claimed_at)
        if since is None or (now - since).total_seconds() < ABANDONED_AFTER:
            continue
        logger.warning("sync %s: finishing the abandoned stop of task %s", engine.name, task.id)
        ctx.ecs.stop_task(
            task.cluster or engine.cluster, task.arn, reason or "stopped by start-engines"
        )
        finished.append(task.id)
    return finished
