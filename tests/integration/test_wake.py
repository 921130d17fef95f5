"""Wake on request, through lambda_handler with ALB's own events: the strategies, the rule's
switches on every path that starts or stops an engine, and hostile requests."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from start_engines import checkpoints
from start_engines.engines.wake import forget_rules
from start_engines.local import Emulator, ManualClock
from tests.conftest import HEALTH_SECONDS, START_SECONDS, start_event
from tests.integration.helpers import (
    finish_stop,
    mutations,
    reap_event,
    state_change_event,
    stop_event,
    sync_event,
    targets,
)
from tests.integration.wake_helpers import forward, json_body, request, routing

if TYPE_CHECKING:
    from collections.abc import Callable

    Invoke = Callable[..., dict[str, Any]]

MINUTE = 60.0


def healthy_after_start(clock: ManualClock) -> None:
    clock.advance(START_SECONDS + HEALTH_SECONDS + 1)


def wake_and_serve(aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock) -> str:
    """Wake pdf with one request, let its task run and be registered; returns its task ARN."""
    assert invoke(request(aws))["statusCode"] == 503
    arn = aws.clients().ecs.list_tasks(cluster="pdf-cluster")["taskArns"][0]
    clock.advance(START_SECONDS + 0.1)
    deliver(state_change_event(aws, "pdf-cluster", arn))  # registers, then waits for healthy
    return arn


def test_the_first_request_answers_the_page_and_starts_one_task(
    pdf_sleeps: Emulator, invoke: Invoke
) -> None:
    answer = invoke(request(pdf_sleeps))
    assert answer["statusCode"] == 503
    assert answer["statusDescription"] == "503 Service Unavailable"
    headers = answer["headers"]
    assert headers["Retry-After"] == "5"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Start-Engines-Wake"] == "starting"
    body = json_body(answer)
    assert {k: body[k] for k in ("engine", "state", "retryAfterSeconds")} == {
        "engine": "pdf",
        "state": "starting",
        "retryAfterSeconds": 5,
    }
    assert json_body(answer)["taskStatus"] == "PROVISIONING"
    assert len(mutations(pdf_sleeps, "RunTask")) == 1
    again = invoke(request(pdf_sleeps))
    assert json_body(again)["state"] == "starting"
    assert len(mutations(pdf_sleeps, "RunTask")) == 1


def test_twenty_concurrent_requests_start_one_task(pdf_sleeps: Emulator, invoke: Invoke) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: invoke(request(pdf_sleeps)), range(20)))
    assert {a["statusCode"] for a in answers} == {503}
    assert {json_body(a)["state"] for a in answers} == {"starting"}
    assert len(mutations(pdf_sleeps, "RunTask")) == 1


def test_a_browser_gets_a_page_that_reloads_itself_and_escapes_the_request(
    pdf_sleeps: Emulator, invoke: Invoke
) -> None:
    hostile = "/api/pdf/<script>alert(1)</script>"
    answer = invoke(
        request(pdf_sleeps, hostile, headers={"accept": "text/html,*/*", "x-evil": "<b>x</b>"})
    )
    assert answer["statusCode"] == 503
    assert answer["headers"]["Content-Type"].startswith("text/html")
    assert answer["headers"]["Refresh"] == "5"
    page = answer["body"]
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "<h1>pdf</h1>" in page and "starting" in page and "PROVISIONING" in page
    assert "<script>" not in page and "<b>" not in page


def test_once_healthy_a_request_switches_the_rule_and_is_sent_back_once(
    pdf_sleeps: Emulator, invoke: Invoke, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    invoke(request(pdf_sleeps))
    clock.advance(START_SECONDS + 0.1)
    invoke(sync_event(services=["pdf"]))  # registers the RUNNING task; the rule stays asleep
    assert routing(pdf_sleeps) == "asleep"
    healthy_after_start(clock)
    capsys.readouterr()
    answer = invoke(request(pdf_sleeps, query={"page": "2"}))
    assert answer["statusCode"] == 307, answer
    assert answer["headers"]["Location"] == "/api/pdf/report?page=2"
    assert answer["headers"]["X-Start-Engines-Wake"] == "ready"
    assert "start-engines-wake=1" in answer["headers"]["Set-Cookie"]
    assert routing(pdf_sleeps) == "awake"
    latency = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "WakeLatency" in line
    ]
    assert latency and latency[0]["WakeLatency"][0] >= START_SECONDS + HEALTH_SECONDS
    # the 307 came back before the switch reached this ALB node: no second 307, no loop
    looped = invoke(request(pdf_sleeps, headers={"cookie": "a=b; start-engines-wake=1"}))
    assert looped["statusCode"] == 503
    assert json_body(looped)["state"] == "ready"


def test_the_task_state_entry_point_switches_the_rule_without_any_client(
    pdf_sleeps: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    wake_and_serve(pdf_sleeps, invoke, deliver, clock)
    assert routing(pdf_sleeps) == "awake"
    status = invoke({"action": "status", "service": "pdf"})["body"]["results"][0]
    assert status["routing"] == "awake"


def test_status_says_asleep(pdf_sleeps: Emulator, invoke: Invoke) -> None:
    body = invoke({"action": "status", "service": "pdf"})["body"]["results"][0]
    assert body["routing"] == "asleep"
    assert "routing" not in invoke({"action": "status", "service": "auth"})["body"]["results"][0]


def test_a_stop_puts_the_rule_back_before_deregistering_and_the_next_request_wakes_it(
    pdf_sleeps: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    wake_and_serve(pdf_sleeps, invoke, deliver, clock)
    seen: list[tuple[str, int]] = []

    def look(_: dict[str, Any]) -> None:
        seen.append((routing(pdf_sleeps), len(targets(pdf_sleeps, "pdf"))))

    with checkpoints.at("stop.claimed", look):
        assert invoke(stop_event("pdf"))["statusCode"] == 200
    assert seen == [("asleep", 1)]  # asleep while its target was still there
    assert routing(pdf_sleeps) == "asleep"
    finish_stop(pdf_sleeps, clock)
    before = len(mutations(pdf_sleeps, "RunTask"))
    assert json_body(invoke(request(pdf_sleeps)))["state"] == "starting"
    assert len(mutations(pdf_sleeps, "RunTask")) == before + 1


def test_the_reaper_puts_an_idle_engine_to_sleep(
    pdf_sleeps: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PDF_IDLE_MINUTES", "30")
    monkeypatch.setenv("PDF_MIN_UPTIME_MINUTES", "10")
    wake_and_serve(pdf_sleeps, invoke, deliver, clock)
    clock.advance(45 * MINUTE)
    provisioned = pdf_sleeps.provisioned
    assert provisioned is not None
    dimensions = [
        {"Name": "TargetGroup", "Value": provisioned.target_groups["pdf"].split(":", 5)[-1]},
        {
            "Name": "LoadBalancer",
            "Value": provisioned.load_balancer_arn.split(":loadbalancer/")[-1],
        },
    ]
    pdf_sleeps.clients().cloudwatch.put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[
            {
                "MetricName": "RequestCount",
                "Dimensions": dimensions,  # type: ignore[typeddict-item]
                "Timestamp": clock.wall() - timedelta(minutes=20),
                "Value": 0,
                "Unit": "Count",
            }
        ],
    )
    result = invoke(reap_event(services=["pdf"]))["body"]["results"][0]
    assert result["action"] == "stopped", result
    assert routing(pdf_sleeps) == "asleep"


def test_the_last_task_dying_puts_the_engine_to_sleep(
    pdf_sleeps: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    arn = wake_and_serve(pdf_sleeps, invoke, deliver, clock)
    pdf_sleeps.lifecycle.kill(arn)
    deliver(state_change_event(pdf_sleeps, "pdf-cluster", arn))
    assert routing(pdf_sleeps) == "asleep"
    assert targets(pdf_sleeps, "pdf") == [] or all(
        state == "draining" for _, _, state in targets(pdf_sleeps, "pdf")
    )


def test_sync_puts_an_engine_with_no_healthy_target_to_sleep_and_wakes_a_healthy_one(
    pdf_sleeps: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    wake_and_serve(pdf_sleeps, invoke, deliver, clock)
    forward(pdf_sleeps, "pdf", pdf_sleeps.provisioned.wake_target_group)  # type: ignore[union-attr]
    result = invoke(sync_event(services=["pdf"]))["body"]["results"][0]
    assert result["routing"] == "awake"
    pdf_sleeps.clients().elbv2.deregister_targets(
        TargetGroupArn=pdf_sleeps.provisioned.target_groups["pdf"],  # type: ignore[union-attr]
        Targets=[{"Id": t[0], "Port": t[1]} for t in targets(pdf_sleeps, "pdf")],
    )
    pdf_sleeps.lifecycle.scrub()  # no task, no target: nothing healthy
    result = invoke(sync_event(services=["pdf"]))["body"]["results"][0]
    assert result["routing"] == "asleep"
    assert routing(pdf_sleeps) == "asleep"


def test_a_stop_while_a_request_switches_the_rule_leaves_it_asleep(
    pdf_sleeps: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    invoke(request(pdf_sleeps))
    clock.advance(START_SECONDS + 0.1)
    invoke(sync_event(services=["pdf"]))
    healthy_after_start(clock)
    with checkpoints.at("route.awake", lambda _: invoke(stop_event("pdf"))) as passes:
        answer = invoke(request(pdf_sleeps))
    assert passes
    assert answer["statusCode"] == 503  # not sent back to a rule that has no target
    assert routing(pdf_sleeps) == "asleep"


def test_a_request_switching_between_a_stops_two_looks_is_undone(
    pdf_sleeps: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    wake_and_serve(pdf_sleeps, invoke, deliver, clock)
    answers: list[dict[str, Any]] = []
    # the stop switched to the wake group; a request that still saw the target healthy
    # switches back before the targets go: the stop's second look puts it to sleep again
    with checkpoints.at("stop.claimed", lambda _: answers.append(invoke(request(pdf_sleeps)))):
        invoke(stop_event("pdf"))
    assert answers and answers[0]["statusCode"] == 307
    assert routing(pdf_sleeps) == "asleep"


def test_block_holds_a_get_until_healthy_and_sends_it_back(
    pdf_sleeps: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: Any
) -> None:
    monkeypatch.setenv("PDF_WAKE_STRATEGY", "block")
    monkeypatch.setenv("PDF_WAKE_BLOCK_SECONDS", "30")
    delivered: list[str] = []

    def ecs_events(_: dict[str, Any]) -> None:
        """While the request is held, ECS's RUNNING event reaches the task-state entry point."""
        arn = pdf_sleeps.clients().ecs.list_tasks(cluster="pdf-cluster")["taskArns"][0]
        event = state_change_event(pdf_sleeps, "pdf-cluster", arn)
        if event["detail"]["lastStatus"] == "RUNNING" and not delivered:
            delivered.append(arn)
            deliver(event)

    began = clock.now()
    with checkpoints.at("wake.hold", ecs_events, times=100):
        answer = invoke(request(pdf_sleeps))
    assert answer["statusCode"] == 307, answer
    assert routing(pdf_sleeps) == "awake"
    assert clock.now() - began <= 30
    assert len(mutations(pdf_sleeps, "RunTask")) == 1


def test_block_gives_the_page_when_the_engine_is_not_healthy_in_time(
    pdf_sleeps: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: Any
) -> None:
    monkeypatch.setenv("PDF_WAKE_STRATEGY", "block")
    monkeypatch.setenv("PDF_WAKE_BLOCK_SECONDS", "3")
    began = clock.now()
    answer = invoke(request(pdf_sleeps))
    assert answer["statusCode"] == 503
    assert json_body(answer)["state"] == "starting"
    assert 3 <= clock.now() - began < 6


def test_block_never_holds_a_post(
    pdf_sleeps: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: Any
) -> None:
    monkeypatch.setenv("PDF_WAKE_STRATEGY", "block")
    began = clock.now()
    answer = invoke(request(pdf_sleeps, method="POST", body='{"order": 1}'))
    assert answer["statusCode"] == 503
    assert clock.now() == began  # answered at once, nothing held
    assert len(mutations(pdf_sleeps, "RunTask")) == 1


def test_a_failed_start_shows_on_the_page_and_its_cooldown_holds_off_a_storm(
    pdf_sleeps: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    pdf_sleeps.lifecycle.plan_next("pdf-cluster", dies_after=1.0)
    invoke(request(pdf_sleeps))
    arn = pdf_sleeps.clients().ecs.list_tasks(cluster="pdf-cluster")["taskArns"][0]
    clock.advance(2.0)
    deliver(state_change_event(pdf_sleeps, "pdf-cluster", arn))
    answers = [invoke(request(pdf_sleeps, headers={"accept": "text/html"})) for _ in range(10)]
    assert len(mutations(pdf_sleeps, "RunTask")) == 1
    assert {a["headers"]["X-Start-Engines-Wake"] for a in answers} == {"failed"}
    assert "TaskStopped" in answers[0]["body"] and "Next try in" in answers[0]["body"]
    clock.advance(11.0)  # past the cooldown: the next request tries again, once
    assert json_body(invoke(request(pdf_sleeps)))["state"] == "starting"
    assert len(mutations(pdf_sleeps, "RunTask")) == 2


def test_health_checks_unknown_paths_and_sleeping_engines_that_do_not_wake(
    pdf_sleeps: Emulator, invoke: Invoke
) -> None:
    checker = invoke(request(pdf_sleeps, headers={"user-agent": "ELB-HealthChecker/2.0"}))
    assert checker["statusCode"] == 200
    unknown = invoke(request(pdf_sleeps, "/nothing/here"))
    assert unknown["statusCode"] == 404
    assert unknown["headers"]["X-Start-Engines-Wake"] == "no-route"
    other = invoke(request(pdf_sleeps, "/api/auth/login"))  # auth does not wake
    assert other["statusCode"] == 503
    assert json_body(other)["state"] == "not-wakeable"
    assert mutations(pdf_sleeps, "RunTask") == []


@pytest.mark.parametrize(
    "event_change",
    [
        {"body": "x" * (1024 * 1024 + 1)},
        {"body": base64.b64encode(b"\x00\xff" * 600_000).decode(), "isBase64Encoded": True},
        {"path": "/api/pdf/" + "a" * 9000},
        {"headers": {"host": 5}},
        {"headers": ["not", "an", "object"]},
        {"httpMethod": "GET /x"},
        {"path": None},
        {"requestContext": {"elb": "no"}, "path": "relative"},
    ],
)
def test_hostile_requests_never_crash_and_never_start(
    pdf_sleeps: Emulator, invoke: Invoke, event_change: dict[str, Any]
) -> None:
    answer = invoke({**request(pdf_sleeps), **event_change})
    assert answer["statusCode"] in (400, 413)
    assert answer["headers"]["X-Start-Engines-Wake"] == "bad-request"
    assert mutations(pdf_sleeps, "RunTask") == []


def test_a_binary_post_body_is_never_read_and_the_engine_wakes(
    pdf_sleeps: Emulator, invoke: Invoke
) -> None:
    body = base64.b64encode(bytes(range(256))).decode()
    answer = invoke(request(pdf_sleeps, method="POST", body=body, base64_body=True))
    assert answer["statusCode"] == 503
    assert len(mutations(pdf_sleeps, "RunTask")) == 1


def test_multi_value_headers_are_answered_in_kind(pdf_sleeps: Emulator, invoke: Invoke) -> None:
    answer = invoke(request(pdf_sleeps, multi=True))
    assert "headers" not in answer
    assert answer["multiValueHeaders"]["Retry-After"] == ["5"]
    assert answer["multiValueHeaders"]["X-Start-Engines-Wake"] == ["starting"]


def test_a_head_request_gets_no_body(pdf_sleeps: Emulator, invoke: Invoke) -> None:
    answer = invoke(request(pdf_sleeps, method="HEAD"))
    assert answer["statusCode"] == 503 and answer["body"] == ""


def test_a_start_event_for_a_sleeping_engine_still_works(
    pdf_sleeps: Emulator, invoke: Invoke
) -> None:
    answer = invoke(start_event("pdf"))
    assert answer["statusCode"] == 200


def test_a_sleeping_rule_without_the_engines_group_is_repaired_before_the_start(
    pdf_sleeps: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    """ALB health-checks only targets of groups a listener uses: a sleeping rule that
    forwards to the wake group alone would leave the new task `unused` forever."""
    provisioned = pdf_sleeps.provisioned
    assert provisioned is not None
    forward(pdf_sleeps, "pdf", provisioned.wake_target_group, attached=False)
    invoke(request(pdf_sleeps))
    rule = pdf_sleeps.clients().elbv2.describe_rules(RuleArns=[provisioned.rules["pdf"]])
    groups = rule["Rules"][0]["Actions"][0]["ForwardConfig"]["TargetGroups"]
    assert {g["TargetGroupArn"]: g["Weight"] for g in groups} == {
        provisioned.wake_target_group: 1,
        provisioned.target_groups["pdf"]: 0,
    }
    arn = pdf_sleeps.clients().ecs.list_tasks(cluster="pdf-cluster")["taskArns"][0]
    clock.advance(START_SECONDS + 0.1)
    deliver(state_change_event(pdf_sleeps, "pdf-cluster", arn))
    assert routing(pdf_sleeps) == "awake"


def test_a_group_no_listener_uses_leaves_its_targets_unused(
    pdf_sleeps: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    provisioned = pdf_sleeps.provisioned
    assert provisioned is not None
    invoke(request(pdf_sleeps))
    clock.advance(START_SECONDS + 0.1)
    invoke(sync_event(services=["pdf"]))
    forward(pdf_sleeps, "pdf", provisioned.wake_target_group, attached=False)
    healthy_after_start(clock)
    assert [state for _, _, state in targets(pdf_sleeps, "pdf")] == ["unused"]


@pytest.mark.parametrize("path", ["//evil.example/api/pdf/x", "/\\evil.example/api/pdf/x"])
def test_the_307_never_leaves_the_host(
    pdf_sleeps: Emulator,
    invoke: Invoke,
    clock: ManualClock,
    path: str,
) -> None:
    """A rule broad enough to match `//host/...` must not make our 307 an open redirect."""
    provisioned = pdf_sleeps.provisioned
    assert provisioned is not None
    pdf_sleeps.clients().elbv2.modify_rule(
        RuleArn=provisioned.rules["pdf"],
        Conditions=[{"Field": "path-pattern", "Values": ["*/api/pdf/*"]}],
    )
    try:
        forget_rules()
        invoke(request(pdf_sleeps))
        clock.advance(START_SECONDS + 0.1)
        invoke(sync_event(services=["pdf"]))
        healthy_after_start(clock)
        answer = invoke(request(pdf_sleeps, path))
    finally:
        pdf_sleeps.clients().elbv2.modify_rule(
            RuleArn=provisioned.rules["pdf"],
            Conditions=[{"Field": "path-pattern", "Values": ["/api/pdf/*"]}],
        )
    assert answer["statusCode"] == 307
    assert answer["headers"]["Location"] == "/evil.example/api/pdf/x"
    assert "Path=/evil.example/api/pdf/x;" in answer["headers"]["Set-Cookie"]


@pytest.mark.parametrize(
    "event_change",
    [
        {"path": "/api/pdf/x\r\nSet-Cookie: a=b"},
        {"queryStringParameters": {"q": "a\nb"}},
    ],
)
def test_control_characters_never_reach_a_header(
    pdf_sleeps: Emulator, invoke: Invoke, event_change: dict[str, Any]
) -> None:
    answer = invoke({**request(pdf_sleeps), **event_change})
    assert answer["statusCode"] == 400
    assert mutations(pdf_sleeps, "RunTask") == []


def test_a_broken_wake_setting_names_the_engine_and_the_field_and_starts_nothing(
    pdf_sleeps: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDF_WAKE_STRATEGY", "proxy")
    answer = invoke(request(pdf_sleeps))
    assert answer["statusCode"] == 500
    body = json_body(answer)
    assert (body["errorType"], body["field"]) == ("ConfigError", "PDF_WAKE_STRATEGY")
    assert body["engine"] == "pdf"
    assert mutations(pdf_sleeps, "RunTask") == []


def test_a_wakeable_engine_without_a_lease_table_starts_nothing(
    pdf_sleeps: Emulator, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEASE_TABLE")
    body = json_body(invoke(request(pdf_sleeps)))
    assert (body["errorType"], body["field"]) == ("ConfigError", "LEASE_TABLE")
    assert mutations(pdf_sleeps, "RunTask") == []
