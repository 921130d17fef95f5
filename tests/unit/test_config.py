from __future__ import annotations

import json

import pytest

from start_engines.config import (
    SERVICE_MAPPINGS,
    engine_names,
    get_service_config,
    load_settings,
)
from start_engines.errors import ConfigError, UnknownEngine

TG = "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/{}/0123456789abcdef"
BASE = {"SUBNETS": "subnet-a, subnet-b", "SECURITY_GROUPS": "sg-1"}


def env_for(*engines: str, **extra: str) -> dict[str, str]:
    env = dict(BASE)
    for name in engines:
        env[f"{name.upper()}_TARGET_GROUP_ARN"] = TG.format(name)
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("name", "cluster", "task_definition", "port"),
    [
        ("auth", "auth-cluster", "auth-api-task", 8080),
        ("pdf", "pdf-cluster", "pdf-creator-task", 9080),
        ("fa", "fa-cluster", "fa-engine-task", 2531),
        ("users", "users-cluster", "users-task", 8080),
        ("batch", "batch-cluster", "batch-task", 8080),
    ],
)
def test_defaults_are_the_diagrams(
    name: str, cluster: str, task_definition: str, port: int
) -> None:
    engine = get_service_config(name, env_for(name))
    assert (engine.cluster, engine.task_definition, engine.port) == (cluster, task_definition, port)
    assert engine.subnets == ("subnet-a", "subnet-b")
    assert engine.security_groups == ("sg-1",)
    assert engine.assign_public_ip == "DISABLED"
    assert engine.target_group_arns == (TG.format(name),)


def test_five_engines() -> None:
    assert sorted(SERVICE_MAPPINGS) == ["auth", "batch", "fa", "pdf", "users"]
    assert engine_names(BASE) == ("auth", "batch", "fa", "pdf", "users")


def test_name_is_case_insensitive() -> None:
    assert get_service_config("  AuTh ", env_for("auth")).name == "auth"


def test_per_engine_variables_override_defaults() -> None:
    env = env_for(
        "pdf",
        PDF_CLUSTER="shared",
        PDF_TASK_DEF="pdf:7",
        PDF_PORT="9999",
        PDF_SUBNETS="subnet-z",
        PDF_SECURITY_GROUPS="sg-8,sg-9",
        PDF_TARGET_GROUP_ARN=f"{TG.format('alb')},{TG.format('nlb')}",
        ASSIGN_PUBLIC_IP="enabled",
    )
    engine = get_service_config("pdf", env)
    assert engine.cluster == "shared"
    assert engine.task_definition == "pdf:7"
    assert engine.port == 9999
    assert engine.subnets == ("subnet-z",)
    assert engine.security_groups == ("sg-8", "sg-9")
    assert engine.target_group_arns == (TG.format("alb"), TG.format("nlb"))
    assert engine.target_group_arn == TG.format("alb")
    assert engine.assign_public_ip == "ENABLED"


def test_engines_config_json_sits_between_defaults_and_variables() -> None:
    env = env_for(
        "auth",
        ENGINES_CONFIG=json.dumps(
            {
                "auth": {"cluster": "from-json", "port": 8443, "containerName": "api"},
                "reports": {
                    "cluster": "reports-cluster",
                    "taskDefinition": "reports-task",
                    "port": 7000,
                    "targetGroupArns": [TG.format("reports")],
                },
            }
        ),
        AUTH_PORT="8081",
    )
    auth = get_service_config("auth", env)
    assert (auth.cluster, auth.port, auth.container_name) == ("from-json", 8081, "api")
    reports = get_service_config("reports", env)
    assert reports.target_group_arns == (TG.format("reports"),)
    assert "reports" in engine_names(env)


def test_unknown_engine_lists_the_valid_names() -> None:
    with pytest.raises(UnknownEngine) as info:
        get_service_config("payroll", env_for("auth"))
    assert "auth, batch, fa, pdf, users" in info.value.message
    assert info.value.status_code == 400
    assert info.value.field == "service"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SUBNETS": "s", "SECURITY_GROUPS": "g"}, "AUTH_TARGET_GROUP_ARN"),
        ({"SECURITY_GROUPS": "g", "AUTH_TARGET_GROUP_ARN": "tg"}, "AUTH_SUBNETS"),
        ({"SUBNETS": "s", "AUTH_TARGET_GROUP_ARN": "tg"}, "AUTH_SECURITY_GROUPS"),
        ({**env_for("auth"), "AUTH_PORT": "http"}, "AUTH_PORT"),
        ({**env_for("auth"), "AUTH_PORT": "70000"}, "AUTH_PORT"),
        ({**env_for("auth"), "ASSIGN_PUBLIC_IP": "maybe"}, "ASSIGN_PUBLIC_IP"),
        ({**env_for("auth"), "ENGINES_CONFIG": "{not json"}, "ENGINES_CONFIG"),
        (
            {**env_for("auth"), "ENGINES_CONFIG": '{"auth": {"image": "x"}}'},
            "ENGINES_CONFIG.auth.image",
        ),
        ({**env_for("auth"), "AUTH_ALLOW_INCLUDE_FOREIGN": "yes"}, "AUTH_ALLOW_INCLUDE_FOREIGN"),
        (
            {**env_for("auth"), "ENGINES_CONFIG": '{"auth": {"allowIncludeForeign": 1}}'},
            "ENGINES_CONFIG.auth.allowIncludeForeign",
        ),
    ],
)
def test_config_errors_name_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_service_config("auth", env)
    assert info.value.field == field
    assert field.split(".", maxsplit=1)[0] in info.value.message


def test_settings_defaults_and_errors() -> None:
    settings = load_settings({})
    assert settings.start_timeout == 300.0
    assert settings.poll_interval < 5.0
    assert load_settings({"START_TIMEOUT_SECONDS": "60"}).start_timeout == 60.0
    with pytest.raises(ConfigError) as info:
        load_settings({"POLL_INTERVAL_SECONDS": "nan"})
    assert info.value.field == "POLL_INTERVAL_SECONDS"


def test_scale_to_zero_settings() -> None:
    engine = get_service_config("auth", env_for("auth"))
    assert (engine.idle_minutes, engine.min_uptime_minutes, engine.max_lifetime_hours) == (
        30.0,
        10.0,
        None,
    )
    tuned = get_service_config(
        "auth",
        env_for(
            "auth",
            AUTH_IDLE_MINUTES="off",
            AUTH_MIN_UPTIME_MINUTES="3",
            AUTH_MAX_LIFETIME_HOURS="8",
        ),
    )
    assert (tuned.idle_minutes, tuned.min_uptime_minutes, tuned.max_lifetime_hours) == (
        None,
        3.0,
        8.0,
    )
    from_json = get_service_config(
        "pdf",
        env_for(
            "pdf", ENGINES_CONFIG=json.dumps({"pdf": {"idleMinutes": None, "maxLifetimeHours": 12}})
        ),
    )
    assert (from_json.idle_minutes, from_json.max_lifetime_hours) == (None, 12.0)
    with pytest.raises(ConfigError) as info:
        get_service_config("auth", env_for("auth", AUTH_IDLE_MINUTES="-5"))
    assert info.value.field == "AUTH_IDLE_MINUTES"
    with pytest.raises(ConfigError) as info:
        get_service_config("auth", env_for("auth", AUTH_MIN_UPTIME_MINUTES="off"))
    assert info.value.field == "AUTH_MIN_UPTIME_MINUTES"


def test_include_foreign_is_off_unless_allowed() -> None:
    assert get_service_config("auth", env_for("auth")).allow_include_foreign is False
    allowed = env_for("auth", AUTH_ALLOW_INCLUDE_FOREIGN="true")
    assert get_service_config("auth", allowed).allow_include_foreign is True
    config = env_for("pdf", ENGINES_CONFIG='{"pdf": {"allowIncludeForeign": true}}')
    assert get_service_config("pdf", config).allow_include_foreign is True


RULE = (
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:listener-rule/app/engines/"
    "0123456789abcdef/0123456789abcdef/0123456789abcdef"
)


def test_wake_is_off_until_a_listener_rule_is_set() -> None:
    engine = get_service_config("pdf", env_for("pdf"))
    assert not engine.wakeable
    assert (engine.wake_strategy, engine.wake_block_seconds) == ("page", 20.0)
    woken = get_service_config(
        "pdf",
        env_for(
            "pdf",
            PDF_LISTENER_RULE_ARN=RULE,
            PDF_WAKE_STRATEGY="Block",
            PDF_WAKE_BLOCK_SECONDS="12.5",
        ),
    )
    assert (woken.listener_rule_arn, woken.wake_strategy, woken.wake_block_seconds) == (
        RULE,
        "block",
        12.5,
    )
    via_json = get_service_config(
        "pdf",
        env_for("pdf", ENGINES_CONFIG=json.dumps({"pdf": {"listenerRuleArn": RULE}})),
    )
    assert via_json.wakeable


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PDF_LISTENER_RULE_ARN", TG.format("pdf")),
        ("PDF_LISTENER_RULE_ARN", RULE + "/extra"),
        ("PDF_WAKE_STRATEGY", "proxy"),
        ("PDF_WAKE_BLOCK_SECONDS", "0"),
        ("PDF_WAKE_BLOCK_SECONDS", "901"),
        ("PDF_WAKE_BLOCK_SECONDS", "nan"),
    ],
)
def test_bad_wake_settings_name_the_engine_and_the_field(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        get_service_config("pdf", env_for("pdf", **{variable: value}))
    assert raised.value.service == "pdf"
    assert raised.value.field == variable


def test_the_wake_target_group_must_be_a_target_group_arn() -> None:
    assert load_settings({}).wake_target_group is None
    assert load_settings({"WAKE_TARGET_GROUP_ARN": TG.format("wake")}).wake_target_group
    with pytest.raises(ConfigError) as raised:
        load_settings({"WAKE_TARGET_GROUP_ARN": RULE})
    assert raised.value.field == "WAKE_TARGET_GROUP_ARN"
