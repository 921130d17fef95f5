"""Scale to zero: reap_idle reads traffic from the emulator's CloudWatch and stops idle engines."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from moto.cloudwatch.models import CloudWatchBackend

from start_engines.local import Emulator, ManualClock
from tests.conftest import start_event
from tests.integration.helpers import (
    EventCapture,
    create_target_group,
    finish_stop,
    live_tasks,
    targets,
    task,
)

Invoke = Any
MINUTE = 60.0


def reap(invoke: Invoke, **options: Any) -> dict[str, dict[str, Any]]:
    response = invoke(
        {"source": "start-engines.schedule", "detail-type": "Reap Idle Engines", "detail": options}
    )
    assert response["statusCode"] == 200, response
    return {r["service"]: r for r in response["body"]["results"]}


def requests(
    aws: Emulator,
    clock: ManualClock,
    engine: str,
    count: float,
    minutes_ago: float,
    *,
    namespace: str = "AWS/ApplicationELB",
    metric: str = "RequestCount",
    target_group: str | None = None,
    load_balancer: str | None = None,
) -> None:
    assert aws.provisioned is not None
    group = (target_group or aws.provisioned.target_groups[engine]).split(":", 5)[-1]
    balancer = (load_balancer or aws.provisioned.load_balancer_arn).split(":loadbalancer/", 1)[-1]
    aws.clients().cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "TargetGroup", "Value": group},
                    {"Name": "LoadBalancer", "Value": balancer},
                ],
                "Timestamp": clock.wall() - timedelta(minutes=minutes_ago),
                "Value": count,
                "Unit": "Count",
            }
        ],
    )


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for engine in ("AUTH", "PDF", "FA", "USERS", "BATCH"):
        monkeypatch.setenv(f"{engine}_IDLE_MINUTES", "30")
        monkeypatch.setenv(f"{engine}_MIN_UPTIME_MINUTES", "10")


def test_busy_engine_is_kept(aws: Emulator, invoke: Invoke, clock: ManualClock) -> None:
    invoke(start_event("auth"))
    clock.advance(40 * MINUTE)
    requests(aws, clock, "auth", 12, minutes_ago=5)
    requests(aws, clock, "auth", 99, minutes_ago=45)  # outside the 30-minute window
    result = reap(invoke)["auth"]
    assert result["action"] == "kept"
    assert result["reason"] == "busy: 12 requests in the last 30 min"
    assert len(live_tasks(aws, "auth-cluster")) == 1


def test_idle_engine_is_stopped_and_its_targets_are_gone(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    capture = EventCapture(aws)
    started = invoke(start_event("pdf"))["body"]
    clock.advance(40 * MINUTE)
    requests(aws, clock, "pdf", 7, minutes_ago=35)  # traffic, but before the idle window
    result = reap(invoke)["pdf"]
    assert result == {
        "service": "pdf",
        "action": "stopped",
        "reason": "idle for 30 min",
        "taskIds": [started["taskId"]],
    }
    assert targets(aws, "pdf") == []
    stopping = task(aws, "pdf-cluster", started["taskArn"])
    assert (stopping["desiredStatus"], stopping["stoppedReason"]) == ("STOPPED", "idle for 30 min")
    finish_stop(aws, clock)
    stopped = task(aws, "pdf-cluster", started["taskArn"])
    assert (stopped["lastStatus"], stopped["stoppedReason"]) == ("STOPPED", "idle for 30 min")
    events = [e for e in capture.received() if e["detail-type"] == "Engine Stopped"]
    assert events[0]["detail"]["reason"] == "idle for 30 min"


def test_young_engine_is_kept(aws: Emulator, invoke: Invoke, clock: ManualClock) -> None:
    invoke(start_event("fa"))
    clock.advance(5 * MINUTE)
    assert reap(invoke)["fa"]["reason"] == "started 5 min ago, under minUptimeMinutes 10"
    clock.advance(15 * MINUTE)  # past the minimum uptime, not yet idle for a whole window
    assert (
        reap(invoke)["fa"]["reason"]
        == "started 20 min ago, under idleMinutes 30 + 3 min of metrics delay"
    )
    assert len(live_tasks(aws, "fa-cluster")) == 1


def test_a_start_resets_the_idle_clock(aws: Emulator, invoke: Invoke, clock: ManualClock) -> None:
    first = invoke(start_event("users"))["body"]
    clock.advance(35 * MINUTE)
    again = invoke({**start_event("users"), "id": "later"})["body"]
    assert again["reused"] is True and again["taskId"] == first["taskId"]
    clock.advance(2 * MINUTE)
    result = reap(invoke)["users"]
    assert result["action"] == "kept"
    assert result["reason"] == "started 2 min ago, under minUptimeMinutes 10"


def test_maximum_lifetime_is_enforced(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_MAX_LIFETIME_HOURS", "1")
    started = invoke(start_event("batch"))["body"]
    clock.advance(61 * MINUTE)
    requests(aws, clock, "batch", 500, minutes_ago=1)  # busy, and stopped all the same
    result = reap(invoke)["batch"]
    assert (result["action"], result["reason"]) == ("stopped", "max lifetime")
    assert task(aws, "batch-cluster", started["taskArn"])["stoppedReason"] == "max lifetime"
    assert targets(aws, "batch") == []


def test_missing_metrics_keep_the_engine(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    unattached = create_target_group(aws, "nowhere-tg")
    monkeypatch.setenv("AUTH_TARGET_GROUP_ARN", unattached)
    invoke(start_event("auth"))
    clock.advance(40 * MINUTE)
    result = reap(invoke)["auth"]
    assert result["action"] == "kept"
    assert (
        result["reason"]
        == "no traffic metrics: target group nowhere-tg is attached to no load balancer"
    )
    assert len(live_tasks(aws, "auth-cluster")) == 1


def test_dry_run_changes_nothing(aws: Emulator, invoke: Invoke, clock: ManualClock) -> None:
    started = invoke(start_event("pdf"))["body"]
    clock.advance(40 * MINUTE)
    aws.lifecycle.mutations.clear()
    result = reap(invoke, dryRun=True)["pdf"]
    assert (result["action"], result["reason"], result["taskIds"]) == (
        "would-stop",
        "idle for 30 min",
        [started["taskId"]],
    )
    assert aws.lifecycle.mutations == []
    assert live_tasks(aws, "pdf-cluster") == [started["taskArn"]]


def test_one_get_metric_data_call_for_every_engine(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = CloudWatchBackend.get_metric_data

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CloudWatchBackend, "get_metric_data", counted)
    for i, engine in enumerate(("auth", "pdf", "fa")):
        invoke({**start_event(engine), "id": f"e{i}"})
    clock.advance(40 * MINUTE)
    requests(aws, clock, "fa", 3, minutes_ago=5)
    results = reap(invoke, dryRun=True)
    assert {s: r["action"] for s, r in results.items()} == {
        "auth": "would-stop",
        "pdf": "would-stop",
        "fa": "kept",
    }
    assert len(calls) == 1


def test_network_load_balancer_flows_count_as_traffic(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert aws.provisioned is not None
    elbv2 = aws.clients().elbv2
    nlb = elbv2.create_load_balancer(
        Name="engines-nlb", Subnets=list(aws.provisioned.subnets), Type="network"
    )["LoadBalancers"][0]["LoadBalancerArn"]
    group = create_target_group(aws, "users-nlb-tg", protocol="TCP")
    elbv2.create_listener(
        LoadBalancerArn=nlb,
        Protocol="TCP",
        Port=8080,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
    )
    monkeypatch.setenv("USERS_TARGET_GROUP_ARN", group)
    invoke(start_event("users"))
    clock.advance(40 * MINUTE)
    requests(
        aws,
        clock,
        "users",
        2,
        minutes_ago=6,
        namespace="AWS/NetworkELB",
        metric="ActiveFlowCount",
        target_group=group,
        load_balancer=nlb,
    )
    result = reap(invoke)["users"]
    assert result["reason"] == "busy: 2 requests in the last 30 min"


def test_one_broken_engine_does_not_stop_the_others_reap(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert aws.provisioned is not None
    ghost = {
        "cluster": "no-such-cluster",
        "taskDefinition": "ghost-task",
        "port": 8080,
        "targetGroupArns": [aws.provisioned.target_groups["auth"]],
    }
    monkeypatch.setenv("ENGINES_CONFIG", json.dumps({"ghost": ghost}))
    started = invoke(start_event("pdf"))["body"]
    clock.advance(40 * MINUTE)
    results = reap(invoke)
    assert results["ghost"]["action"] == "failed"
    assert results["ghost"]["errorType"] == "AwsError"
    assert (results["pdf"]["action"], results["pdf"]["taskIds"]) == ("stopped", [started["taskId"]])


def test_the_idle_window_ends_where_the_metrics_are_complete(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    """The window is [now - delay - idleMinutes, now - delay): ALB metrics of the last few
    minutes may not be published yet, so they prove nothing either way."""
    started = invoke(start_event("pdf"))["body"]
    clock.advance(32 * MINUTE)
    kept = reap(invoke, dryRun=True)["pdf"]  # older than idleMinutes, not older than 30 + 3
    assert kept["reason"] == "started 32 min ago, under idleMinutes 30 + 3 min of metrics delay"
    clock.advance(8 * MINUTE)
    requests(aws, clock, "pdf", 4, minutes_ago=34)  # before the window
    requests(aws, clock, "pdf", 9, minutes_ago=1)  # an incomplete minute: not counted
    assert reap(invoke, dryRun=True)["pdf"]["action"] == "would-stop"
    requests(aws, clock, "pdf", 2, minutes_ago=4)  # inside the window
    busy = reap(invoke)["pdf"]
    assert busy["reason"] == "busy: 2 requests in the last 30 min"
    assert live_tasks(aws, "pdf-cluster") == [started["taskArn"]]
