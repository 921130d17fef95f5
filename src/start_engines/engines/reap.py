"""Reap: stop engines that had no traffic for their idleMinutes (after minUptimeMinutes), and
tasks past maxLifetimeHours. Traffic comes from CloudWatch in one GetMetricData call for
every engine. No datapoint at all because a target group is attached to no load balancer
keeps the engine: never stop on missing data."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from start_engines import checkpoints
from start_engines.engines.outcome import Outcome, target_group_name
from start_engines.engines.stop import claim as stop_claim
from start_engines.engines.stop import drain, finish
from start_engines.errors import ConfigError, StartEnginesError

if TYPE_CHECKING:
    from datetime import datetime

    from start_engines.clock import Deadline
    from start_engines.cloudwatch_handler import TrafficQuery
    from start_engines.config import EngineConfig
    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.context import Context
    from start_engines.events import ReapRequest

logger = logging.getLogger(__name__)


def reap_idle(ctx: Context, request: ReapRequest, deadline: Deadline) -> Outcome:
    """Stop engines that had no traffic for their idleMinutes (after minUptimeMinutes), and
    tasks past maxLifetimeHours. Traffic comes from CloudWatch in one GetMetricData call
    for every engine. No datapoint at all because a target group is attached to no load
    balancer keeps the engine: never stop on missing data."""
    now = ctx.clock.wall()
    decisions: list[dict[str, Any]] = []
    candidates: list[tuple[EngineConfig, list[TaskInfo]]] = []
    for engine in ctx.select(request.services):
        if isinstance(engine, ConfigError):
            continue
        try:
            tasks = ctx.ecs.find_tasks(engine)
        except StartEnginesError as exc:  # one broken engine does not stop the others' reap
            decisions.append({"service": engine.name, "action": "failed", **_error_fields(exc)})
            continue
        if tasks:
            candidates.append((engine, tasks))
    too_old = {
        engine.name: [
            t
            for t in tasks
            if engine.max_lifetime_hours is not None
            and _lifetime(t, now) >= engine.max_lifetime_hours * 3600
        ]
        for engine, tasks in candidates
    }
    traffic = traffic_by_engine(ctx, candidates, now)
    for engine, tasks in candidates:
        for task in too_old[engine.name]:
            reason = "max lifetime"
            decisions.append(reap(ctx, engine, [task], reason, now, request, deadline))
        rest = [t for t in tasks if t not in too_old[engine.name]]
        if rest:
            decisions.append(
                idle_decision(ctx, engine, rest, traffic.get(engine.name), now, request, deadline)
            )
    stopped = sum(len(d.get("taskIds", [])) for d in decisions if d["action"] == "stopped")
    return Outcome(200, {"results": decisions, "dryRun": request.dry_run, "tasksStopped": stopped})


def idle_decision(
    ctx: Context,
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
    whole = int(age_minutes)  # 4.6 min is "4 min ago": never "5 min ago, under 5"
    if age_minutes < engine.min_uptime_minutes:
        return keep(
            f"started {whole} min ago, under minUptimeMinutes {engine.min_uptime_minutes:g}"
        )
    delay = ctx.settings.metrics_delay
    if age_minutes < engine.idle_minutes + delay:
        return keep(
            f"started {whole} min ago, under idleMinutes {engine.idle_minutes:g}"
            + (f" + {delay:g} min of metrics delay" if delay else "")
        )
    if isinstance(requests, str) or requests is None:
        logger.warning("keeping %s: %s", engine.name, requests or "no traffic metrics")
        return keep(f"no traffic metrics: {requests or 'unavailable'}")
    if requests > 0:
        return keep(
            f"busy: {requests:g} requests in the last {engine.idle_minutes:g} min",
            requests=requests,
        )
    return reap(ctx, engine, tasks, f"idle for {engine.idle_minutes:g} min", now, request, deadline)


def reap(
    ctx: Context,
    engine: EngineConfig,
    tasks: list[TaskInfo],
    reason: str,
    decided_at: datetime,
    request: ReapRequest,
    deadline: Deadline,
) -> dict[str, Any]:
    """Stop exactly the tasks decided on, minus any that a start reused or a stop claimed
    since: looked at again under the engine's claim, so no start reuses them meanwhile."""
    decision: dict[str, Any] = {"service": engine.name, "reason": reason}
    if request.dry_run:
        return {**decision, "action": "would-stop", "taskIds": [t.id for t in tasks]}
    owner = str(uuid.uuid4())
    try:
        if ctx.lease is not None:
            holder = ctx.lease.acquire(
                engine.name, owner, ctx.clock.wall(), ctx.settings.lease_ttl, state="stopping"
            )
            if holder is not None:
                return {
                    **decision,
                    "action": "kept",
                    "reason": f"the engine is claimed ({holder.state}): a start or stop is under way",
                    "taskIds": [t.id for t in tasks],
                }
        try:
            now = ctx.ecs.describe(engine.cluster, [t.arn for t in tasks])
            chosen = [
                t
                for t in now.values()
                if t.is_live
                and not t.stopping
                and t.owned_by(engine)
                and not (t.last_start and t.last_start >= decided_at)  # reused since
            ]
            claimed = stop_claim(ctx, engine, chosen, reason) if chosen else None
        finally:
            if ctx.lease is not None:
                ctx.lease.release(engine.name, owner)
    except StartEnginesError as exc:
        return {**decision, "action": "failed", **_error_fields(exc)}
    spared = [t.id for t in tasks if t.arn not in {c.arn for c in chosen}]
    if claimed is None:
        return {
            **decision,
            "action": "kept",
            "reason": "started again since the decision",
            "taskIds": spared,
        }
    drain(ctx, [claimed], deadline)
    status, result = finish(ctx, claimed)
    if status >= 400:
        return {**decision, "action": "failed", **_error_fields_of(result)}
    logger.info("reaped %s (%s): %s", engine.name, reason, result.get("taskIds"))
    found: dict[str, Any] = {**decision, "action": "stopped", "taskIds": result.get("taskIds", [])}
    if spared:
        found["taskIdsKept"] = spared
    return found


def _error_fields(exc: StartEnginesError) -> dict[str, Any]:
    return {"error": exc.message, "errorType": exc.error_type}


def _error_fields_of(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "error": body.get("error"),
        "errorType": body.get("errorType", "Error"),
        "tasksNotStopped": body.get("tasksNotStopped", []),
    }


def traffic_by_engine(
    ctx: Context, candidates: list[tuple[EngineConfig, list[TaskInfo]]], now: datetime
) -> dict[str, float | str]:
    """Requests (ALB) or flows (NLB) per engine over its idle window; a string says why
    there is no figure. One GetMetricData call serves every engine."""
    from datetime import timedelta

    queries: list[TrafficQuery] = []
    owner: dict[str, str] = {}
    missing: dict[str, str] = {}
    windows = [e.idle_minutes for e, _ in candidates if e.idle_minutes is not None]
    if not windows or ctx.cloudwatch is None:
        return {}
    for engine, _ in candidates:
        if engine.idle_minutes is None:
            continue
        for arn in engine.target_group_arns:
            group = ctx.targets.describe_target_group(arn)
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
    checkpoints.reached("reap.metrics", services=[e.name for e, _ in candidates])
    end = now - timedelta(minutes=ctx.settings.metrics_delay)  # the newest minutes are incomplete
    try:
        series = (
            ctx.cloudwatch.series(queries, end - timedelta(minutes=max(windows)), end)
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
        since = end - timedelta(minutes=idle_minutes[engine_name])  # each engine its own window
        totals[engine_name] = float(totals.get(engine_name, 0.0)) + sum(
            v for at, v in points if since <= at < end
        )
    totals.update(missing)
    return totals


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


def _lifetime(task: TaskInfo, now: datetime) -> float:
    """Seconds since the task itself started: a start that reuses it does not renew it."""
    began = task.started_at or task.created_at
    return (now - began).total_seconds() if began else 0.0


def _age(task: TaskInfo, now: datetime) -> float:
    """Seconds since the engine last started on this task."""
    began = task.began
    return (now - began).total_seconds() if began else 0.0
