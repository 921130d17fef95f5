"""Pre-flight check: everything a start would trip over, for every engine, before any task runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from start_engines.config import env_prefix
from start_engines.engines.outcome import target_group_name
from start_engines.engines.routing import MISMATCH, routing_state
from start_engines.errors import ConfigError, StartEnginesError

if TYPE_CHECKING:
    from start_engines.config import EngineConfig
    from start_engines.engines.context import Context
    from start_engines.target_group_handler import TargetGroupInfo


@dataclass(frozen=True)
class Problem:
    """A pre-flight finding: what is wrong with an engine and how to fix it."""

    service: str
    severity: str  # error or warning
    problem: str
    fix: str


def check(ctx: Context) -> list[Problem]:
    """Everything a start would trip over, for every engine, before any task runs."""
    found: list[Problem] = []
    selected = ctx.select(None)
    for engine in selected:
        if isinstance(engine, ConfigError):
            problem, _, _ = engine.message.partition(": set ")
            found.append(Problem(str(engine.service), "warning", problem, _fix(engine)))
            continue
        try:
            found += check_engine(ctx, engine)
        except StartEnginesError as exc:
            found.append(
                Problem(
                    engine.name,
                    "error",
                    exc.message,
                    "check the credentials and region, then the resource",
                )
            )
    if selected and all(isinstance(engine, ConfigError) for engine in selected):
        found.append(
            Problem("*", "error", NOTHING_CONFIGURED, "configure at least one engine (README)")
        )
    return found


NOTHING_CONFIGURED = "no engine is configured: a start of any engine would fail"

# What to put in a variable the configuration lacks, by its suffix.
VALUES = {
    "TARGET_GROUP_ARN": "the engine's target group ARN(s), comma-separated (infra/alb.yaml outputs them)",
    "SUBNETS": "the tasks' subnet IDs, comma-separated",
    "SECURITY_GROUPS": "the tasks' security group IDs, comma-separated",
}


def _fix(error: ConfigError) -> str:
    """What to do about an engine the configuration leaves incomplete or invalid."""
    if not error.field:
        return "fix the configuration, or ignore an engine you do not run"
    value = next((v for suffix, v in VALUES.items() if error.field.endswith(suffix)), None)
    what = f"to {value}" if value else "to a valid value (see Configuration in the README)"
    return f"set {error.field} {what}, or ignore an engine you do not run"


def check_engine(ctx: Context, engine: EngineConfig) -> list[Problem]:
    found: list[Problem] = []
    prefix = env_prefix(engine.name)

    def problem(text: str, fix: str, severity: str = "error") -> None:
        found.append(Problem(engine.name, severity, text, fix))

    if not ctx.ecs.cluster_exists(engine.cluster):
        problem(f"cluster {engine.cluster} does not exist", f"create it or set {prefix}_CLUSTER")
    for text, fix in _wake(ctx, engine):
        problem(text, fix)
    for arn in engine.target_group_arns:
        group = ctx.targets.describe_target_group(arn)
        if group is None:
            problem(
                f"target group {arn} does not exist",
                f"create it (infra/alb.yaml) or fix {prefix}_TARGET_GROUP_ARN",
            )
            continue
        if group.target_type != "ip":
            problem(
                f"target group {target_group_name(arn)} has target type {group.target_type}; "
                "Fargate tasks (awsvpc) register by IP",
                "recreate it with TargetType ip",
            )
        for text, fix in _placement(ctx, engine, group):
            problem(text, fix)
        if not group.load_balancer_arns:
            problem(
                f"target group {target_group_name(arn)} is attached to no listener, so no traffic reaches it",
                "add a listener rule that forwards to it (infra/alb.yaml adds /api/<engine>/*)",
            )
    try:
        definition = ctx.ecs.task_definition(engine)
    except StartEnginesError as exc:
        problem(exc.message, f"register it or fix {prefix}_TASK_DEF")
    else:
        if "FARGATE" not in definition.compatibilities:
            problem(
                f"task definition {engine.task_definition} is not FARGATE-compatible "
                f"(requiresCompatibilities {list(definition.compatibilities)})",
                "add FARGATE to requiresCompatibilities",
            )
        if definition.network_mode != "awsvpc":
            problem(
                f"task definition {engine.task_definition} uses network mode {definition.network_mode}",
                "use networkMode awsvpc (Fargate requires it)",
            )
        if engine.port not in definition.container_ports:
            problem(
                f"port {engine.port} is no containerPort of {engine.task_definition} "
                f"(it has {list(definition.container_ports)})",
                f"set {prefix}_PORT to the container's port",
            )
    if ctx.network is not None:
        for subnet in ctx.network.missing_subnets(engine.subnets):
            problem(f"subnet {subnet} does not exist", f"fix {prefix}_SUBNETS or SUBNETS")
        for group_id in ctx.network.missing_security_groups(engine.security_groups):
            problem(
                f"security group {group_id} does not exist",
                f"fix {prefix}_SECURITY_GROUPS or SECURITY_GROUPS",
            )
    return found


def _placement(ctx: Context, engine: EngineConfig, group: TargetGroupInfo) -> list[tuple[str, str]]:
    """The tasks' subnets must be in the target group's VPC and in Availability Zones its
    load balancer serves: a target elsewhere stays `unused` (Target.NotInUse) for ever."""
    if ctx.network is None:
        return []
    prefix = env_prefix(engine.name)
    places = ctx.network.subnet_places(engine.subnets)
    found: list[tuple[str, str]] = []
    name = target_group_name(group.arn)
    for subnet, (_zone, vpc) in sorted(places.items()):
        if group.vpc_id and vpc != group.vpc_id:
            found.append(
                (
                    f"subnet {subnet} is in {vpc}, target group {name} in {group.vpc_id}",
                    f"use subnets of {group.vpc_id} in {prefix}_SUBNETS or SUBNETS",
                )
            )
    served = ctx.targets.served_zones(group.load_balancer_arns)
    outside = sorted({zone for zone, _ in places.values()} - served) if served else []
    if outside:
        found.append(
            (
                f"the load balancer of {name} serves {', '.join(sorted(served))}, not "
                f"{', '.join(outside)} where {prefix}_SUBNETS puts tasks; their targets stay unused",
                f"enable {', '.join(outside)} on the load balancer, or use subnets in "
                f"{', '.join(sorted(served))}",
            )
        )
    return found


def _wake(ctx: Context, engine: EngineConfig) -> list[tuple[str, str]]:
    """What wake on request needs: the wake group, the lease, and a rule that exists."""
    if engine.listener_rule_arn is None:
        return []
    found: list[tuple[str, str]] = []
    if ctx.settings.wake_target_group is None:
        found.append(
            (
                "wakes on requests but WAKE_TARGET_GROUP_ARN is not set",
                "set it to the Lambda target group (infra/alb.yaml output WakeTargetGroupArn)",
            )
        )
    if ctx.lease is None:
        found.append(
            (
                "wakes on requests but LEASE_TABLE is not set: requests would each start a task",
                "set LEASE_TABLE (the template creates it)",
            )
        )
    try:
        state = routing_state(ctx, engine)
    except ConfigError as exc:
        return [*found, (exc.message, f"fix {env_prefix(engine.name)}_LISTENER_RULE_ARN")]
    if state == MISMATCH:
        found.append(
            (
                "its listener rule forwards neither to the engine nor to the wake target group",
                "point the rule at one of them; start-engines switches only between the two",
            )
        )
    return found
