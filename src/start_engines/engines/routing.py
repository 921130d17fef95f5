"""Where a wakeable engine's listener rule sends its traffic: to the engine's target groups
(`awake`) or to the wake target group, our function (`asleep`). Anything else is `mismatch`,
someone else's choice (a maintenance page, say), and is left alone. Asleep, the rule keeps the
engine's groups at weight 0: ALB health-checks only targets of groups a listener uses, so a
group with no rule at all would leave a starting task `unused`, never `healthy`.

Two orders keep the rule true to the targets whatever runs at the same time (I10):
- waking: healthy in every group, switch to the engine, then look at its health again; if a
  stop took the targets out in between, switch back;
- sleeping: switch to the wake group before the targets go, and again after they went
  (unless the engine is healthy), so a wake that switched in between is undone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from start_engines import checkpoints, telemetry
from start_engines.config import env_prefix
from start_engines.errors import ConfigError, StartEnginesError

if TYPE_CHECKING:
    from start_engines.clock import Deadline
    from start_engines.config import EngineConfig
    from start_engines.engines.context import Context
    from start_engines.listener_handler import ListenerHandler
    from start_engines.rules import Rule

logger = logging.getLogger(__name__)

ASLEEP, AWAKE, MISMATCH = "asleep", "awake", "mismatch"


def routing_state(ctx: Context, engine: EngineConfig) -> str | None:
    """asleep, awake or mismatch; None for an engine that does not wake on requests."""
    if engine.listener_rule_arn is None:
        return None
    return _state(ctx, engine, _rule(ctx, engine))


def healthy(ctx: Context, engine: EngineConfig) -> bool:
    """At least one healthy target in every target group of the engine."""
    return all(
        any(t.state == "healthy" for t in ctx.targets.get_target_health(arn, engine.name))
        for arn in engine.target_group_arns
    )


def wake_up(ctx: Context, engine: EngineConfig) -> bool:
    """Switch the rule to the engine if it is healthy in every group. True if the engine now
    serves its own traffic (switched here or before)."""
    if engine.listener_rule_arn is None or not healthy(ctx, engine):
        return False
    listeners = _listeners(ctx)
    rule = _rule(ctx, engine)
    state = _state(ctx, engine, rule)
    if state == AWAKE:
        return True
    if state == MISMATCH:
        logger.warning(
            "rule of %s forwards elsewhere (%s); left alone", engine.name, rule.forward_to
        )
        return False
    listeners.forward(rule, engine.target_group_arns, engine.name)
    checkpoints.reached("route.awake", service=engine.name)
    if not healthy(ctx, engine):  # a stop took the targets out meanwhile
        put_to_sleep(ctx, engine)
        return False
    _record_latency(ctx, engine)
    return True


def put_to_sleep(ctx: Context, engine: EngineConfig, *, unless_healthy: bool = False) -> bool:
    """Switch the rule to the wake target group, before the engine's targets go (and attach
    the engine's groups at weight 0 to a sleeping rule that lacks them). With `unless_healthy`,
    only when the engine has no healthy target left in some group. True if the rule changed."""
    if engine.listener_rule_arn is None:
        return False
    if unless_healthy and healthy(ctx, engine):
        return False
    wake_group = wake_target_group(ctx, engine)
    listeners = _listeners(ctx)
    rule = _rule(ctx, engine)
    state = _state(ctx, engine, rule)
    attached = set(engine.target_group_arns) <= set(rule.attached)
    if state == MISMATCH or (state == ASLEEP and attached):
        return False
    # the engine's groups stay on at weight 0: attached, so their targets are health-checked
    listeners.forward(rule, [wake_group], engine.name, standby=engine.target_group_arns)
    logger.info("%s is asleep: its rule forwards to the wake target group", engine.name)
    return True


def asleep(ctx: Context, engine: EngineConfig, *, unless_healthy: bool = False) -> None:
    """put_to_sleep for paths whose own work matters more (a stop, a sync): a rule that
    cannot be switched is logged and the work goes on."""
    try:
        put_to_sleep(ctx, engine, unless_healthy=unless_healthy)
    except StartEnginesError as exc:
        logger.error("could not put %s to sleep: %s", engine.name, exc.message)


def settle(ctx: Context, engine: EngineConfig) -> str | None:
    """Make the rule match the engine's health (sync): awake when healthy, else asleep."""
    if engine.listener_rule_arn is None:
        return None
    try:
        if not wake_up(ctx, engine):
            put_to_sleep(ctx, engine, unless_healthy=True)
        return routing_state(ctx, engine)
    except StartEnginesError as exc:
        logger.error("could not settle the rule of %s: %s", engine.name, exc.message)
        return None


def await_wake(ctx: Context, engine: EngineConfig, deadline: Deadline) -> bool:
    """Wait (bounded) for a sleeping engine to become healthy, then switch its rule: so
    nothing depends on a client coming back."""
    try:
        if routing_state(ctx, engine) != ASLEEP:
            return False
        until = deadline.within(ctx.settings.health_timeout)
        while not wake_up(ctx, engine):
            if until.expired():
                return False
            until.sleep(ctx.settings.health_poll_interval)
    except StartEnginesError as exc:  # the registration is done; the rule waits for sync
        logger.error("could not wake the rule of %s: %s", engine.name, exc.message)
        return False
    return True


def wake_target_group(ctx: Context, engine: EngineConfig) -> str:
    group = ctx.settings.wake_target_group
    if group is None:
        raise ConfigError(
            f"engine '{engine.name}' wakes on requests (listenerRuleArn) but "
            "WAKE_TARGET_GROUP_ARN is not set",
            service=engine.name,
            field="WAKE_TARGET_GROUP_ARN",
        )
    return group


def _state(ctx: Context, engine: EngineConfig, rule: Rule) -> str:
    """Where the rule sends traffic; a group of neither the engine nor the wake group, even at
    weight 0, makes it someone else's rule (`mismatch`)."""
    forward, own = set(rule.forward_to), set(engine.target_group_arns)
    wake = ctx.settings.wake_target_group
    if not set(rule.attached) <= own | {wake}:
        return MISMATCH
    if forward == own:
        return AWAKE
    if wake and forward == {wake}:
        return ASLEEP
    return MISMATCH


def _rule(ctx: Context, engine: EngineConfig) -> Rule:
    """The engine's rule, only its own: a rule two engines name is refused."""
    arn = str(engine.listener_rule_arn)
    for other in ctx.select(None):
        if isinstance(other, ConfigError) or other.name == engine.name:
            continue
        if other.listener_rule_arn == arn:
            raise ConfigError(
                f"engines '{engine.name}' and '{other.name}' name the same listener rule; "
                "each engine needs its own",
                service=engine.name,
                field=f"{env_prefix(engine.name)}_LISTENER_RULE_ARN",
            )
    return _listeners(ctx).rule(arn, engine.name)


def _record_latency(ctx: Context, engine: EngineConfig) -> None:
    """First request to rule switched, when a request woke the engine."""
    if ctx.lease is None:
        return
    woken_at = ctx.lease.take_wake(engine.name)
    if woken_at is not None:
        telemetry.wake_latency(engine.name, ctx.clock.wall().timestamp() - woken_at)


def _listeners(ctx: Context) -> ListenerHandler:
    if ctx.listeners is None:
        raise ConfigError("no ELB client for listener rules", field="listenerRuleArn")
    return ctx.listeners
