"""Wake on request: the ALB sent a request for a sleeping engine to us.

The request's path and host pick the engine, as the ALB's rules do. A healthy engine gets its
rule switched and the request is sent back (307, GET and HEAD only). Otherwise the first
request starts the engine through the start use case (so the lease makes 20 requests one
RunTask) and every request is answered with the engine's state: `page` at once, `block`
after waiting up to wakeBlockSeconds for it to become healthy. Nothing of a request is ever
forwarded or replayed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from start_engines import checkpoints
from start_engines.config import env_prefix
from start_engines.engines.outcome import Outcome
from start_engines.engines.routing import put_to_sleep, wake_target_group, wake_up
from start_engines.engines.serving import settle_handed_off
from start_engines.engines.start import start
from start_engines.errors import ConfigError, StartEnginesError
from start_engines.events import StartRequest
from start_engines.listener_handler import listener_of
from start_engines.rules import Rule, first_match

if TYPE_CHECKING:
    from start_engines.alb_request import WakeRequest
    from start_engines.clock import Deadline
    from start_engines.config import EngineConfig
    from start_engines.ecs_handler import TaskInfo
    from start_engines.engines.context import Context
    from start_engines.rules import HttpRequest

logger = logging.getLogger(__name__)

RETRY_AFTER = 5  # seconds: the page's refresh, and Retry-After on every 503
REQUESTER = "wake-on-request"
# Listener ARN -> its rules, for the life of the container; read again on a miss.
_RULES: dict[str, list[Rule]] = {}
# Engine -> (clock, task status, created) of its starting task: a flood of refreshes costs
# at most one ECS read per container every SEEN_SECONDS (ECS's read quota is the account's).
_SEEN: dict[str, tuple[float, str | None, Any]] = {}
SEEN_SECONDS = 2.0

# Every state a wake answer can carry (X-Start-Engines-Wake), and its status code.
STARTING, READY, FAILED, BUSY = "starting", "ready", "failed", "busy"
NOT_WAKEABLE, NO_ROUTE, HEALTH_CHECK = "not-wakeable", "no-route", "health-check"


def wake(ctx: Context, request: WakeRequest, deadline: Deadline, *, fresh: bool = False) -> Outcome:
    if request.health_check:  # the wake target group's own checks, if someone turned them on
        return Outcome(200, {"state": HEALTH_CHECK, "message": "start-engines wake target"})
    engine, wakeable = find_engine(ctx, request.http, fresh=fresh)
    if engine is None:
        return _answer(404, None, NO_ROUTE, "no engine is served at this path")
    if not wakeable:
        message = f"engine '{engine.name}' does not wake on requests; it is not running"
        return _answer(503, engine, NOT_WAKEABLE, message)
    wake_target_group(ctx, engine)  # a ConfigError before anything starts
    if ctx.lease is None:
        raise ConfigError(
            f"engine '{engine.name}' wakes on requests, which needs LEASE_TABLE: without it "
            "concurrent requests would each start a task",
            service=engine.name,
            field="LEASE_TABLE",
        )
    if wake_up(ctx, engine):
        return _ready(engine, request)
    outcome = _look_or_start(ctx, engine, request, deadline, fresh)
    if (
        outcome.body.get("state") == STARTING
        and engine.wake_strategy == "block"
        and request.replayable
    ):
        return _block(ctx, engine, request, deadline.within(engine.wake_block_seconds), outcome)
    return outcome


def find_engine(
    ctx: Context, http: HttpRequest, *, fresh: bool = False
) -> tuple[EngineConfig | None, bool]:
    """The engine whose rule the ALB matched for this request, and whether it wakes. The rules
    are read once per container (or now, if `fresh`), and again when nothing matches. No match
    while an engine's configuration is broken raises that engine's ConfigError: it may be the
    one asked for."""
    selected = ctx.select(None)
    broken = [e for e in selected if isinstance(e, ConfigError) and e.service]
    engines = [e for e in selected if not isinstance(e, ConfigError)]
    shared = shared_rules(engines)
    broken += [_shared(e) for e in engines if e.listener_rule_arn in shared]
    by_rule = {
        e.listener_rule_arn: e
        for e in engines
        if e.listener_rule_arn and e.listener_rule_arn not in shared
    }
    by_group = {arn: e for e in engines for arn in e.target_group_arns}
    on_listener: dict[str, list[EngineConfig]] = {}
    for engine in by_rule.values():
        on_listener.setdefault(listener_of(str(engine.listener_rule_arn)), []).append(engine)
    unreadable: dict[str, StartEnginesError] = {}
    for again in (True,) if fresh else (False, True):
        matched: list[Rule | None] = []
        for listener in sorted(on_listener):
            try:
                matched.append(_match(ctx, listener, http, again))
            except StartEnginesError as exc:  # one broken listener does not stop the others
                unreadable[listener] = exc
        for rule in matched:
            if rule is not None and rule.arn in by_rule:
                return by_rule[rule.arn], True
        for rule in matched:
            owner = next(
                (by_group[g] for g in (rule.forward_to if rule else ()) if g in by_group), None
            )
            if owner is not None:
                return owner, False
    for listener, error in unreadable.items():
        broken += [_unreadable(e, error) for e in on_listener[listener]]
    if broken:  # it may be this engine's rule: say what is wrong rather than "no route"
        raise broken[0]
    return None, False


def shared_rules(engines: list[EngineConfig]) -> set[str]:
    """Rule ARNs that more than one engine names: a copy-paste slip that would send one
    engine's traffic to another. Such engines do not wake until it is fixed."""
    seen: dict[str, int] = {}
    for engine in engines:
        if engine.listener_rule_arn:
            seen[engine.listener_rule_arn] = seen.get(engine.listener_rule_arn, 0) + 1
    return {arn for arn, count in seen.items() if count > 1}


def _shared(engine: EngineConfig) -> ConfigError:
    return ConfigError(
        f"engine '{engine.name}': another engine names the same listener rule; each engine "
        "needs its own",
        service=engine.name,
        field=f"{env_prefix(engine.name)}_LISTENER_RULE_ARN",
    )


def _unreadable(engine: EngineConfig, exc: StartEnginesError) -> ConfigError:
    return ConfigError(
        f"engine '{engine.name}': the listener of its rule cannot be read: {exc.message}",
        service=engine.name,
        field=f"{env_prefix(engine.name)}_LISTENER_RULE_ARN",
    )


def forget_rules() -> None:
    """Drop the container's copies of the listener rules and task states (tests)."""
    _RULES.clear()
    _SEEN.clear()


def _match(ctx: Context, listener: str, http: HttpRequest, fresh: bool) -> Rule | None:
    if fresh or listener not in _RULES:
        assert ctx.listeners is not None
        _RULES[listener] = ctx.listeners.rules_of(listener)
    return first_match(_RULES[listener], http)


def _look_or_start(
    ctx: Context,
    engine: EngineConfig,
    request: WakeRequest,
    deadline: Deadline,
    fresh: bool,
    *,
    settled: bool = False,
) -> Outcome:
    """The state of a start in flight, or a new start when there is none. A start that failed
    lately holds further starts off until its cooldown ends (no storm from refreshes)."""
    assert ctx.lease is not None
    holder = ctx.lease.holder(engine.name)
    now = ctx.clock.wall().timestamp()
    if holder is not None and holder.expires_at > now:
        if holder.state == "failed":
            retry = max(1, round(holder.expires_at - now))
            details = {
                "error": holder.error or "the start failed",
                "errorType": holder.error_type or "StartFailed",
                "retryInSeconds": retry,
            }
            return _answer(503, engine, FAILED, f"the start of '{engine.name}' failed", details)
        if holder.state != "starting" or holder.preempted:
            return _answer(503, engine, BUSY, f"'{engine.name}' is being stopped; retry shortly")
    seen = _SEEN.get(engine.name)
    if seen is not None and ctx.clock.now() - seen[0] < SEEN_SECONDS:
        return _starting(ctx, engine, seen[1], seen[2])
    in_flight = holder is not None and holder.expires_at > now
    if in_flight and holder is not None:  # a start in flight: its task
        found = ctx.ecs.describe(engine.cluster, holder.task_arns) if holder.task_arns else {}
        live = [t for t in found.values() if t.is_live and not t.stopping]
        if found and not live and holder.handed_off and not settled:
            return _gone(ctx, engine, request, deadline, list(found.values()))
    else:  # started before (not healthy yet), or to be started now
        live = [t for t in ctx.ecs.find_tasks(engine) if not t.stopping]
    if live:
        task = sorted(live, key=lambda t: not t.is_running)[0]
        _SEEN[engine.name] = (ctx.clock.now(), task.last_status, task.created_at)
        return _starting(ctx, engine, task.last_status, task.created_at)
    if in_flight:
        return _starting(ctx, engine, None, None)  # RunTask is under way
    if not fresh:  # a start is worth one fresh read: never start what the ALB did not route
        again, wakes = find_engine(ctx, request.http, fresh=True)
        if again is None or not wakes or again.name != engine.name:
            return wake(ctx, request, deadline, fresh=True)
    put_to_sleep(ctx, engine, unless_healthy=True)  # its groups attached: health-checked
    command = StartRequest(
        services=(engine.name,), asynchronous=True, wait_budget=0.0, requester=REQUESTER
    )
    started = start(ctx, command, deadline)
    body = started.body
    if started.status_code in (200, 202):
        if started.status_code == 202 and not body.get("reused"):
            ctx.lease.remember_wake(engine.name, ctx.clock.wall())
        created = body.get("createdAt")
        return _starting(ctx, engine, body.get("lastStatus"), created)
    details = {
        "error": body.get("error", "the start failed"),
        "errorType": body.get("errorType", "Failed"),
    }
    if "retryAfterSeconds" in body:
        details["retryInSeconds"] = body["retryAfterSeconds"]
    state = BUSY if body.get("errorType") in ("EngineBusy", "StoppedDuringStart") else FAILED
    return _answer(503, engine, state, f"the start of '{engine.name}' failed", details)


def _gone(
    ctx: Context,
    engine: EngineConfig,
    request: WakeRequest,
    deadline: Deadline,
    tasks: list[TaskInfo],
) -> Outcome:
    """A handed-off start whose tasks are all gone, and no STOPPED event has settled its claim
    yet (late, or lost): settle it here as reconcile would, then answer for what is left."""
    settle_handed_off(ctx, engine, tasks[0])
    _SEEN.pop(engine.name, None)
    return _look_or_start(ctx, engine, request, deadline, fresh=True, settled=True)


def _block(
    ctx: Context,
    engine: EngineConfig,
    request: WakeRequest,
    until: Deadline,
    waiting: Outcome,
) -> Outcome:
    """Hold the request until the engine is healthy or `until` passes; health checks only, so
    many held requests cost the ECS quota nothing."""
    while not until.expired():
        until.sleep(ctx.settings.health_poll_interval)
        checkpoints.reached("wake.hold", service=engine.name)
        if wake_up(ctx, engine):
            return _ready(engine, request)
        assert ctx.lease is not None
        holder = ctx.lease.holder(engine.name)
        if holder is not None and holder.state == "failed":
            return _look_or_start(ctx, engine, request, until, fresh=True)
    return waiting


def _starting(ctx: Context, engine: EngineConfig, task_status: Any, created: Any) -> Outcome:
    details: dict[str, Any] = {}
    if isinstance(task_status, str):
        details["taskStatus"] = task_status
    when = _epoch(created)
    if when is not None:
        details["elapsedSeconds"] = max(0, round(ctx.clock.wall().timestamp() - when))
    message = (
        f"'{engine.name}' is running; waiting for the load balancer's health checks"
        if task_status == "RUNNING"
        else f"'{engine.name}' is starting"
    )
    return _answer(503, engine, STARTING, message, details)


def _ready(engine: EngineConfig, request: WakeRequest) -> Outcome:
    """Healthy and switched: send a GET or HEAD back to the same URL, once (a second 307 in a
    row, before the switch has reached every ALB node, would be a loop)."""
    if request.replayable and not request.redirected:
        query = "&".join(f"{k}={v}" for k, v in request.http.query)
        # one leading slash: `//host` or `/\host` would send the browser to another host
        path = "/" + request.http.path.lstrip("/\\")
        location = path + (f"?{query}" if query else "")
        return _answer(307, engine, READY, f"'{engine.name}' is ready", {"location": location})
    return _answer(503, engine, READY, f"'{engine.name}' is ready; retry the request")


def _answer(
    status: int,
    engine: EngineConfig | None,
    state: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> Outcome:
    body: dict[str, Any] = {
        "engine": engine.name if engine else None,
        "state": state,
        "retryAfterSeconds": RETRY_AFTER,
        "message": message,
        **(details or {}),
    }
    return Outcome(status, body)


def _epoch(value: Any) -> float | None:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None
