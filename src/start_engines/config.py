"""Engine configuration: the seed's defaults, the seed's environment contract, ENGINES_CONFIG.

Precedence, lowest first: SERVICE_MAPPINGS defaults, the ENGINES_CONFIG JSON object,
then the per-engine variables (`<SVC>_CLUSTER`, ...). This is the only module that reads
the environment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from start_engines.errors import ConfigError, UnknownEngine

Environ = Mapping[str, str]

SERVICE_MAPPINGS: dict[str, dict[str, Any]] = {
    "auth": {"cluster": "auth-cluster", "taskDefinition": "auth-api-task", "port": 8080},
    "pdf": {"cluster": "pdf-cluster", "taskDefinition": "pdf-creator-task", "port": 9080},
    "fa": {"cluster": "fa-cluster", "taskDefinition": "fa-engine-task", "port": 2531},
    "users": {"cluster": "users-cluster", "taskDefinition": "users-task", "port": 8080},
    "batch": {"cluster": "batch-cluster", "taskDefinition": "batch-task", "port": 8080},
}

# ENGINES_CONFIG keys and the per-engine variable suffix that overrides each.
ENGINE_KEYS: dict[str, str] = {
    "cluster": "CLUSTER",
    "taskDefinition": "TASK_DEF",
    "targetGroupArns": "TARGET_GROUP_ARN",
    "port": "PORT",
    "subnets": "SUBNETS",
    "securityGroups": "SECURITY_GROUPS",
    "containerName": "CONTAINER_NAME",
    "maxTasks": "MAX_TASKS",
    "allowedOverrides": "ALLOWED_OVERRIDES",
    "idleMinutes": "IDLE_MINUTES",
    "minUptimeMinutes": "MIN_UPTIME_MINUTES",
    "maxLifetimeHours": "MAX_LIFETIME_HOURS",
    "allowIncludeForeign": "ALLOW_INCLUDE_FOREIGN",
    "listenerRuleArn": "LISTENER_RULE_ARN",
    "wakeStrategy": "WAKE_STRATEGY",
    "wakeBlockSeconds": "WAKE_BLOCK_SECONDS",
    "registerAt": "REGISTER_AT",
}
LIST_KEYS = frozenset({"targetGroupArns", "subnets", "securityGroups"})
# What a start event may ask to override, if the engine's allowedOverrides names it.
OVERRIDES = (
    "cluster",
    "taskDefinition",
    "targetGroupArns",
    "subnets",
    "securityGroups",
    "command",
    "environment",
    "taskRoleArn",
    "executionRoleArn",
    "cpu",
    "memory",
)
# Asked for by callers of the original system, but RunTask cannot override it.
NEVER_OVERRIDABLE = {"image": "RunTask has no image override; register a task definition revision"}
ASSIGN_PUBLIC_IP_VALUES = ("ENABLED", "DISABLED")
MAX_NAME_IN_MESSAGE = 64
DEFAULT_MAX_TASKS = 2
DEFAULT_IDLE_MINUTES = 30.0  # engines exist to run only while used; null turns it off
DEFAULT_MIN_UPTIME_MINUTES = 10.0
OFF = ("", "off", "none", "null")
RUN_TASK_MAX_COUNT = 10
WAKE_STRATEGIES = ("page", "block")
REGISTER_AT = ("ip", "running")  # when a task goes into its target groups
DEFAULT_WAKE_BLOCK_SECONDS = 20.0
MAX_WAKE_BLOCK_SECONDS = 900.0  # Lambda's own limit
# Patterns, not compiled here: re compiles (and caches) one on first use, and only
# wakeable engines' settings need them.
RULE_ARN = r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:listener-rule/app/[^/\s]+/[0-9a-f]+/[0-9a-f]+/[0-9a-f]+$"
TARGET_GROUP_ARN = r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+$"


@dataclass(frozen=True)
class EngineConfig:
    """One engine, its settings resolved."""

    name: str
    cluster: str
    task_definition: str
    target_group_arns: tuple[str, ...]
    port: int
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: str = "DISABLED"
    container_name: str | None = None
    max_tasks: int = DEFAULT_MAX_TASKS
    allowed_overrides: frozenset[str] = frozenset()
    idle_minutes: float | None = DEFAULT_IDLE_MINUTES  # None: never stopped for idleness
    min_uptime_minutes: float = DEFAULT_MIN_UPTIME_MINUTES
    max_lifetime_hours: float | None = None  # None: no hard limit
    allow_include_foreign: bool = False  # may a stop also stop tasks start-engines did not start
    listener_rule_arn: str | None = None  # set: the engine wakes on its first request
    wake_strategy: str = "page"
    wake_block_seconds: float = DEFAULT_WAKE_BLOCK_SECONDS
    register_at: str = "ip"  # `ip`: as soon as the ENI's IP is known; `running`: at RUNNING

    @property
    def wakeable(self) -> bool:
        return self.listener_rule_arn is not None

    @property
    def family(self) -> str:
        """The task definition family, whether configured as family, family:rev or an ARN."""
        return self.task_definition.rsplit("/", 1)[-1].split(":", 1)[0]

    @property
    def target_group_arn(self) -> str:
        """The first (primary) target group, the seed's single `targetGroupArn`."""
        return self.target_group_arns[0]


@dataclass(frozen=True)
class Settings:
    """Process-wide knobs. Times are seconds."""

    start_timeout: float = 300.0
    health_timeout: float = 120.0
    poll_interval: float = 0.7
    describe_rate: float = 5.0  # DescribeTasks per second per invocation, across clusters
    health_poll_interval: float = 2.0
    deadline_margin: float = 10.0
    drain_timeout: float = 60.0
    lease_table: str | None = None
    lease_cooldown: float = 10.0
    lease_ttl: float = 10.0  # a holder's heartbeat: a dead holder blocks others this long
    metrics_delay: float = 3.0  # minutes: load balancer metrics this recent may be incomplete
    event_bus: str | None = "default"  # None: no outgoing events
    wake_target_group: str | None = None  # the Lambda target group of sleeping engines


def env_prefix(engine: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", engine.upper())


def describe_name(value: object) -> str:
    """A caller-supplied name, made safe and short enough to put in a message."""
    text = repr(value)
    if len(text) > MAX_NAME_IN_MESSAGE:
        text = text[: MAX_NAME_IN_MESSAGE - 3] + "..."
    return text


def split_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _environ(environ: Environ | None) -> Environ:
    return os.environ if environ is None else environ


def _engines_config(environ: Environ) -> dict[str, dict[str, Any]]:
    raw = environ.get("ENGINES_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"ENGINES_CONFIG is not valid JSON: {exc}", field="ENGINES_CONFIG"
        ) from exc
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise ConfigError(
            "ENGINES_CONFIG must be a JSON object of engine name -> object", field="ENGINES_CONFIG"
        )
    result: dict[str, dict[str, Any]] = {}
    for name, entry in parsed.items():
        key = str(name).strip().lower()
        unknown = sorted(set(entry) - set(ENGINE_KEYS))
        if unknown:
            raise ConfigError(
                f"ENGINES_CONFIG.{key} has unknown keys {unknown}; known: {sorted(ENGINE_KEYS)}",
                service=key,
                field=f"ENGINES_CONFIG.{key}.{unknown[0]}",
            )
        result[key] = entry
    return result


def engine_names(environ: Environ | None = None) -> tuple[str, ...]:
    """Every configured engine: the seed's five plus any ENGINES_CONFIG adds."""
    env = _environ(environ)
    return tuple(sorted(set(SERVICE_MAPPINGS) | set(_engines_config(env))))


def _as_list(value: Any, field: str, service: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return split_list(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise ConfigError(f"{field} must be a list of strings", service=service, field=field)


def _as_port(value: Any, field: str, service: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise ConfigError(
            f"{field} must be a port number 1-65535, got {describe_name(value)}",
            service=service,
            field=field,
        )
    return port


def _as_count(value: Any, field: str, service: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = -1
    if isinstance(value, bool) or not 1 <= count <= RUN_TASK_MAX_COUNT:
        raise ConfigError(
            f"{field} must be a whole number 1-{RUN_TASK_MAX_COUNT}, got {describe_name(value)}",
            service=service,
            field=field,
        )
    return count


def _as_minutes(value: Any, field: str, service: str, *, optional: bool) -> float | None:
    """A non-negative duration; with `optional`, null/"off" means no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in OFF):
        if optional:
            return None
        raise ConfigError(f"{field} must be a number", service=service, field=field)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0 <= number < 10**6:
        raise ConfigError(
            f"{field} must be a non-negative number, got {describe_name(value)}",
            service=service,
            field=field,
        )
    return number


def _as_flag(value: Any, field: str, service: str) -> bool:
    """true/false, as JSON or as the text of a variable."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("true", "false"):
        return text == "true"
    raise ConfigError(
        f"{field} must be true or false, got {describe_name(value)}", service=service, field=field
    )


def _as_overrides(value: Any, field: str, service: str) -> frozenset[str]:
    names = set(_as_list(value, field, service))
    for name in sorted(names):
        if name in NEVER_OVERRIDABLE:
            raise ConfigError(
                f"{field}: {name} cannot be allowed: {NEVER_OVERRIDABLE[name]}",
                service=service,
                field=field,
            )
        if name not in OVERRIDES:
            raise ConfigError(
                f"{field}: unknown override {describe_name(name)}; known: {list(OVERRIDES)}",
                service=service,
                field=field,
            )
    return frozenset(names)


def get_service_config(name: str, environ: Environ | None = None) -> EngineConfig:
    """The engine's configuration. The name is case-insensitive."""
    env = _environ(environ)
    key = name.strip().lower() if isinstance(name, str) else ""
    file_config = _engines_config(env)
    known = sorted(set(SERVICE_MAPPINGS) | set(file_config))
    if key not in known:
        raise UnknownEngine(
            f"Unknown engine {describe_name(name)}. Valid engines: {', '.join(known)}",
            field="service",
            details={"validEngines": known},
        )

    prefix = env_prefix(key)
    merged: dict[str, Any] = {**SERVICE_MAPPINGS.get(key, {}), **file_config.get(key, {})}
    sources: dict[str, str] = {k: f"ENGINES_CONFIG.{key}.{k}" for k in file_config.get(key, {})}
    for config_key, suffix in ENGINE_KEYS.items():
        var = f"{prefix}_{suffix}"
        if env.get(var, "").strip():
            merged[config_key] = env[var].strip()
            sources[config_key] = var
    for config_key, var in (("subnets", "SUBNETS"), ("securityGroups", "SECURITY_GROUPS")):
        if config_key not in merged and env.get(var, "").strip():
            merged[config_key] = env[var]
            sources[config_key] = var

    def source(config_key: str) -> str:
        return sources.get(config_key, f"{prefix}_{ENGINE_KEYS[config_key]}")

    def required_list(config_key: str, what: str, hint: str) -> tuple[str, ...]:
        values = _as_list(merged.get(config_key, ""), source(config_key), key)
        if not values:
            raise ConfigError(
                f"engine '{key}' has no {what}: set {hint}", service=key, field=source(config_key)
            )
        return values

    for config_key in ("cluster", "taskDefinition"):
        if not isinstance(merged.get(config_key), str) or not merged[config_key].strip():
            raise ConfigError(
                f"engine '{key}' has no {config_key}: set {source(config_key)}",
                service=key,
                field=source(config_key),
            )

    assign = env.get("ASSIGN_PUBLIC_IP", "DISABLED").strip().upper() or "DISABLED"
    if assign not in ASSIGN_PUBLIC_IP_VALUES:
        raise ConfigError(
            f"ASSIGN_PUBLIC_IP must be ENABLED or DISABLED, got {describe_name(assign)}",
            field="ASSIGN_PUBLIC_IP",
        )
    container = merged.get("containerName")
    return EngineConfig(
        name=key,
        cluster=merged["cluster"].strip(),
        task_definition=merged["taskDefinition"].strip(),
        target_group_arns=required_list(
            "targetGroupArns", "target group", f"{prefix}_TARGET_GROUP_ARN"
        ),
        port=_as_port(merged.get("port"), source("port"), key),
        subnets=required_list("subnets", "subnets", f"{prefix}_SUBNETS or SUBNETS"),
        security_groups=required_list(
            "securityGroups", "security groups", f"{prefix}_SECURITY_GROUPS or SECURITY_GROUPS"
        ),
        assign_public_ip=assign,
        container_name=container.strip()
        if isinstance(container, str) and container.strip()
        else None,
        max_tasks=_as_count(merged.get("maxTasks", DEFAULT_MAX_TASKS), source("maxTasks"), key),
        allowed_overrides=_as_overrides(
            merged.get("allowedOverrides", ""), source("allowedOverrides"), key
        ),
        idle_minutes=_as_minutes(
            merged.get("idleMinutes", DEFAULT_IDLE_MINUTES),
            source("idleMinutes"),
            key,
            optional=True,
        ),
        min_uptime_minutes=_as_minutes(
            merged.get("minUptimeMinutes", DEFAULT_MIN_UPTIME_MINUTES),
            source("minUptimeMinutes"),
            key,
            optional=False,
        )
        or 0.0,
        max_lifetime_hours=_as_minutes(
            merged.get("maxLifetimeHours"), source("maxLifetimeHours"), key, optional=True
        ),
        allow_include_foreign=_as_flag(
            merged.get("allowIncludeForeign", False), source("allowIncludeForeign"), key
        ),
        listener_rule_arn=_as_arn(
            merged.get("listenerRuleArn"),
            RULE_ARN,
            "a listener rule ARN",
            source("listenerRuleArn"),
            key,
        ),
        wake_strategy=_as_choice(
            merged.get("wakeStrategy", "page"), WAKE_STRATEGIES, source("wakeStrategy"), key
        ),
        register_at=_as_choice(
            merged.get("registerAt", "ip"), REGISTER_AT, source("registerAt"), key
        ),
        wake_block_seconds=_as_seconds(
            merged.get("wakeBlockSeconds", DEFAULT_WAKE_BLOCK_SECONDS),
            source("wakeBlockSeconds"),
            key,
        ),
    )


def _as_arn(value: Any, pattern: str, what: str, field: str, service: str | None) -> str | None:
    """An optional ARN of one kind; empty means unset."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or not re.match(pattern, value.strip()):
        raise ConfigError(
            f"{field} must be {what}, got {describe_name(value)}", service=service, field=field
        )
    return value.strip()


def _as_choice(value: Any, choices: tuple[str, ...], field: str, service: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in choices:
        raise ConfigError(
            f"{field} must be one of {list(choices)}, got {describe_name(value)}",
            service=service,
            field=field,
        )
    return text


def _as_seconds(value: Any, field: str, service: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0 < number <= MAX_WAKE_BLOCK_SECONDS:
        raise ConfigError(
            f"{field} must be a number of seconds, more than 0 and at most "
            f"{MAX_WAKE_BLOCK_SECONDS:.0f}, got {describe_name(value)}",
            service=service,
            field=field,
        )
    return number


def _float_setting(env: Environ, var: str, default: float, minimum: float) -> float:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also false for NaN
        raise ConfigError(
            f"{var} must be a number >= {minimum}, got {describe_name(raw)}", field=var
        )
    return value


def load_settings(environ: Environ | None = None) -> Settings:
    env = _environ(environ)
    return Settings(
        start_timeout=_float_setting(env, "START_TIMEOUT_SECONDS", 300.0, 1.0),
        health_timeout=_float_setting(env, "HEALTH_TIMEOUT_SECONDS", 120.0, 1.0),
        poll_interval=_float_setting(env, "POLL_INTERVAL_SECONDS", 0.7, 0.05),
        describe_rate=_float_setting(env, "DESCRIBE_TASKS_PER_SECOND", 5.0, 0.1),
        health_poll_interval=_float_setting(env, "HEALTH_POLL_INTERVAL_SECONDS", 2.0, 0.05),
        deadline_margin=_float_setting(env, "DEADLINE_MARGIN_SECONDS", 10.0, 0.0),
        drain_timeout=_float_setting(env, "DRAIN_TIMEOUT_SECONDS", 60.0, 0.0),
        lease_table=env.get("LEASE_TABLE", "").strip() or None,
        lease_cooldown=_float_setting(env, "LEASE_COOLDOWN_SECONDS", 10.0, 0.0),
        lease_ttl=_float_setting(env, "LEASE_TTL_SECONDS", 10.0, 2.0),
        metrics_delay=_float_setting(env, "METRICS_DELAY_MINUTES", 3.0, 0.0),
        event_bus=_event_bus(env),
        wake_target_group=_as_arn(
            env.get("WAKE_TARGET_GROUP_ARN"),
            TARGET_GROUP_ARN,
            "a target group ARN",
            "WAKE_TARGET_GROUP_ARN",
            None,
        ),
    )


def _event_bus(env: Environ) -> str | None:
    """EVENT_BUS_NAME (default `default`); OUTGOING_EVENTS=off turns publishing off."""
    switch = env.get("OUTGOING_EVENTS", "on").strip().lower()
    if switch not in ("on", "off"):
        raise ConfigError(
            f"OUTGOING_EVENTS must be on or off, got {describe_name(switch)}",
            field="OUTGOING_EVENTS",
        )
    return None if switch == "off" else (env.get("EVENT_BUS_NAME", "").strip() or "default")
