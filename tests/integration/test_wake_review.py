"""Wake on request against a reviewer's attacks: shared or unreadable rules, broken settings,
a task that died unseen, and a stale copy of the rules. Each was a defect once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from start_engines.engines.wake import forget_rules
from start_engines.errors import ConfigError
from start_engines.local import Emulator, ManualClock
from start_engines.rules import forward_targets
from tests.conftest import start_event
from tests.integration.helpers import mutations, state_change_event
from tests.integration.wake_helpers import forward, json_body, request

if TYPE_CHECKING:
    from collections.abc import Callable

    Invoke = Callable[..., dict[str, Any]]


def test_two_engines_naming_one_rule_never_send_one_engines_traffic_to_the_other(
    pdf_sleeps: Emulator, invoke: Invoke, deliver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy-paste slip (fa given pdf's rule) must not let fa's RUNNING event point pdf's
    rule, /api/pdf/*, at fa's target group: a rule two engines name is refused."""
    provisioned = pdf_sleeps.provisioned
    assert provisioned is not None
    monkeypatch.setenv("FA_LISTENER_RULE_ARN", provisioned.rules["pdf"])
    forget_rules()
    with pytest.raises(ConfigError) as refused:
        invoke({"action": "status", "service": "fa"})
    assert refused.value.field == "FA_LISTENER_RULE_ARN"
    status = refused.value.message
    started = invoke(start_event("fa"))
    if started["statusCode"] == 200:
        arn = pdf_sleeps.clients().ecs.list_tasks(cluster="fa-cluster")["taskArns"][0]
        deliver(state_change_event(pdf_sleeps, "fa-cluster", arn))  # registered; wake_up(fa)
    rule = pdf_sleeps.clients().elbv2.describe_rules(RuleArns=[provisioned.rules["pdf"]])
    pdf_rule_sends_to = forward_targets(rule["Rules"][0]["Actions"])
    # expected: a ConfigError (one rule, two engines) and pdf's rule never forwards to fa
    assert provisioned.target_groups["fa"] not in pdf_rule_sends_to, (status, started)


def test_one_engines_rule_on_a_missing_listener_leaves_the_others_waking(
    pdf_sleeps: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fa's listenerRuleArn is well formed but its listener does not exist: every wake
    request, pdf's too, answers 500 AwsError ListenerNotFound."""
    provisioned = pdf_sleeps.provisioned
    assert provisioned is not None
    head = provisioned.rules["pdf"].rsplit("/", 3)[0]
    monkeypatch.setenv("FA_LISTENER_RULE_ARN", f"{head}/{'f' * 16}/{'f' * 16}/{'f' * 16}")
    forget_rules()
    answer = invoke(request(pdf_sleeps))
    body = json_body(answer)
    assert body.get("errorType") != "AwsError", body
    assert answer["statusCode"] == 503 and body["state"] == "starting", body
    assert len(mutations(pdf_sleeps, "RunTask")) == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PDF_WAKE_STRATEGY", "sometimes"),
        ("PDF_WAKE_BLOCK_SECONDS", "-1"),
        ("PDF_LISTENER_RULE_ARN", "not-an-arn"),
    ],
)
def test_a_bad_wake_setting_is_answered_with_its_config_error(
    pdf_sleeps: Emulator,
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
) -> None:
    """The ALB sent the request through pdf's rule; the answer says no engine is served there
    (404 no-route) and the configuration error is nowhere in it."""
    monkeypatch.setenv(variable, value)
    forget_rules()
    answer = invoke(request(pdf_sleeps))
    body = json_body(answer)
    assert mutations(pdf_sleeps, "RunTask") == []
    assert body.get("errorType") == "ConfigError", (answer["statusCode"], body)


def test_a_woken_task_that_died_unseen_is_never_reported_starting(
    pdf_sleeps: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    """The task dies before it runs; until its STOPPED event reaches the task-state entry
    point (late, throttled, lost) every request says `starting` with taskStatus STOPPED and
    starts nothing, for up to START_TIMEOUT_SECONDS (the handed-off claim's life)."""
    pdf_sleeps.lifecycle.plan_next("pdf-cluster", dies_after=1.0)
    invoke(request(pdf_sleeps))
    clock.advance(250.0)  # long dead; the claim (300 s) still stands
    body = json_body(invoke(request(pdf_sleeps)))
    assert not (body["state"] == "starting" and body.get("taskStatus") == "STOPPED"), body


def test_a_stale_rule_cache_never_starts_an_engine_the_alb_did_not_route_to(
    pdf_sleeps: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rules are cached per container and read again only on a miss: after the rules
    change, a request the ALB routed through fa's rule starts pdf, for the container's life."""
    provisioned = pdf_sleeps.provisioned
    assert provisioned is not None
    elbv2 = pdf_sleeps.clients().elbv2
    monkeypatch.setenv("FA_LISTENER_RULE_ARN", provisioned.rules["fa"])
    forward(pdf_sleeps, "fa", provisioned.wake_target_group)
    forget_rules()
    assert invoke(request(pdf_sleeps, "/nothing/here"))["statusCode"] == 404  # rules cached
    try:
        elbv2.modify_rule(
            RuleArn=provisioned.rules["pdf"],
            Conditions=[{"Field": "path-pattern", "Values": ["/api/pdf/v2/*"]}],
        )
        elbv2.modify_rule(
            RuleArn=provisioned.rules["fa"],
            Conditions=[{"Field": "path-pattern", "Values": ["/api/pdf/*"]}],
        )
        # the ALB now routes /api/pdf/report through fa's rule (pdf's no longer matches)
        body = json_body(invoke(request(pdf_sleeps, "/api/pdf/report")))
    finally:
        for engine in ("pdf", "fa"):
            elbv2.modify_rule(
                RuleArn=provisioned.rules[engine],
                Conditions=[{"Field": "path-pattern", "Values": [f"/api/{engine}/*"]}],
            )
        forward(pdf_sleeps, "fa", provisioned.target_groups["fa"])
        forget_rules()
    assert mutations(pdf_sleeps, "RunTask") == [("RunTask", "fa-cluster")], body
    assert body["engine"] == "fa", body
