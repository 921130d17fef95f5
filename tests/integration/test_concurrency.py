"""One owner per engine: each overlapping pair of operations, interleaved at a named point of
the first one (start_engines.checkpoints), with no sleeps and no luck. Every test ends with
invariant I4 (helpers.settle_and_check_owners)."""

from __future__ import annotations

from typing import Any

import pytest

from start_engines import checkpoints
from start_engines.local import Emulator, ManualClock
from tests.conftest import start_event
from tests.integration.helpers import (
    EventCapture,
    lease,
    live_tasks,
    mutations,
    past_draining,
    reap_event,
    settle_and_check_owners,
    state_change_event,
    stop_event,
    targets,
    task,
)

Invoke = Any
MINUTE = 60.0


@pytest.fixture(params=["lease", "no-lease"])
def lease_mode(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, aws: Emulator
) -> str:
    """The invariants that hold without LEASE_TABLE are tested both ways."""
    if request.param == "no-lease":
        monkeypatch.delenv("LEASE_TABLE")
    mode: str = request.param
    return mode


@pytest.fixture
def idle(monkeypatch: pytest.MonkeyPatch) -> None:
    for engine in ("AUTH", "PDF"):
        monkeypatch.setenv(f"{engine}_IDLE_MINUTES", "30")
        monkeypatch.setenv(f"{engine}_MIN_UPTIME_MINUTES", "10")


# --- I1: a start never answers 200 with a task a stop has claimed ---------------------------


def test_start_during_a_stops_drain_gets_a_fresh_task(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, lease_mode: str
) -> None:
    aws.lifecycle.drain_seconds = 15.0
    old = invoke(start_event("auth"))["body"]
    answers: list[dict[str, Any]] = []
    with checkpoints.at(
        "stop.drain", lambda _: answers.append(invoke({**start_event("auth"), "id": "during"}))
    ) as passes:
        stopped = invoke(stop_event("auth", waitForDraining=True))
    assert passes, "the stop never waited for draining"
    assert stopped["statusCode"] == 200
    assert stopped["body"]["results"][0]["taskIds"] == [old["taskId"]]
    fresh = answers[0]
    assert fresh["statusCode"] == 200
    assert fresh["body"]["reused"] is False
    assert fresh["body"]["taskId"] != old["taskId"]
    assert live_tasks(aws, "auth-cluster") == [fresh["body"]["taskArn"]]
    settle_and_check_owners(aws, deliver, clock)
    assert targets(aws, "auth")[0][0] == fresh["body"]["privateIp"]


# --- I2: a reap stops exactly the tasks it decided on -----------------------------------------


def test_a_start_reusing_the_task_while_the_reaper_reads_metrics_keeps_it(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, idle: None, lease_mode: str
) -> None:
    old = invoke(start_event("auth"))["body"]
    clock.advance(40 * MINUTE)
    answers: list[dict[str, Any]] = []
    with checkpoints.at(
        "reap.metrics", lambda _: answers.append(invoke({**start_event("auth"), "id": "reuse"}))
    ):
        reaped = invoke(reap_event())
    assert answers[0]["statusCode"] == 200
    assert answers[0]["body"]["reused"] is True
    decision = {r["service"]: r for r in reaped["body"]["results"]}["auth"]
    assert decision["action"] == "kept"
    assert decision["reason"] == "started again since the decision"
    assert live_tasks(aws, "auth-cluster") == [old["taskArn"]]
    assert not mutations(aws, "StopTask")
    settle_and_check_owners(aws, deliver, clock)


def test_a_task_forced_while_the_reaper_reads_metrics_is_not_reaped(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, idle: None
) -> None:
    old = invoke(start_event("pdf"))["body"]
    clock.advance(40 * MINUTE)
    answers: list[dict[str, Any]] = []
    with checkpoints.at(
        "reap.metrics",
        lambda _: answers.append(invoke({**start_event("pdf", force=True), "id": "force"})),
    ):
        reaped = invoke(reap_event())
    forced = answers[0]["body"]
    assert answers[0]["statusCode"] == 200
    decision = {r["service"]: r for r in reaped["body"]["results"]}["pdf"]
    assert (decision["action"], decision["taskIds"]) == ("stopped", [old["taskId"]])
    assert live_tasks(aws, "pdf-cluster") == [forced["taskArn"]]
    settle_and_check_owners(aws, deliver, clock)
    assert [t[0] for t in targets(aws, "pdf")] == [forced["privateIp"]]


def test_the_reaper_leaves_an_engine_alone_while_a_start_holds_it(
    aws: Emulator, invoke: Invoke, clock: ManualClock, idle: None
) -> None:
    invoke(start_event("auth"))
    clock.advance(40 * MINUTE)
    lease(aws).acquire("auth", "a-start", clock.wall(), 10.0)
    decision = {r["service"]: r for r in invoke(reap_event())["body"]["results"]}["auth"]
    assert decision["action"] == "kept"
    assert "claimed (starting)" in decision["reason"]
    assert not mutations(aws, "StopTask")


# --- I3: nothing registers a task that is being stopped ---------------------------------------


def test_a_late_running_event_during_a_drain_registers_nothing(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, lease_mode: str
) -> None:
    aws.lifecycle.drain_seconds = 15.0
    capture = EventCapture(aws)
    old = invoke(start_event("users"))["body"]
    capture.received()
    late = state_change_event(aws, "users-cluster", old["taskArn"])  # RUNNING, as first sent
    answers: list[dict[str, Any]] = []
    with checkpoints.at("stop.drain", lambda _: answers.append(deliver(late))):
        invoke(stop_event("users", waitForDraining=True))
    assert answers[0]["body"]["action"] == "none"
    assert answers[0]["body"]["reason"] == "a stop has claimed the task"
    assert not [e for e in capture.received() if e["detail-type"] == "Engine Ready"]
    settle_and_check_owners(aws, deliver, clock)
    assert targets(aws, "users") == []


def test_sync_during_a_stop_does_not_register_the_stopping_task(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, lease_mode: str
) -> None:
    old = invoke(start_event("fa"))["body"]
    sync = {"source": "custom.app", "detail-type": "Sync Target Groups", "detail": {}}
    answers: list[dict[str, Any]] = []
    # the stop has tagged and deregistered; sync runs before StopTask lands
    with checkpoints.at("stop.drain", lambda _: answers.append(invoke(sync))):
        invoke(stop_event("fa", waitForDraining=True))
    assert answers[0]["body"]["changes"] == 0
    assert task(aws, "fa-cluster", old["taskArn"])["desiredStatus"] == "STOPPED"
    settle_and_check_owners(aws, deliver, clock)


def test_a_stop_between_sync_reading_and_registering_is_undone_by_syncs_second_look(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, lease_mode: str
) -> None:
    old = invoke(start_event("fa"))["body"]
    aws.clients().elbv2.deregister_targets(
        TargetGroupArn=aws.provisioned.target_groups["fa"] if aws.provisioned else "",
        Targets=[{"Id": old["privateIp"], "Port": 2531}],
    )
    sync = {
        "source": "custom.app",
        "detail-type": "Sync Target Groups",
        "detail": {"service": "fa"},
    }
    with checkpoints.at("register.verify", lambda _: invoke(stop_event("fa"))):
        answer = invoke(sync)
    assert answer["body"]["results"][0]["registered"] == []
    settle_and_check_owners(aws, deliver, clock)
    assert targets(aws, "fa") == []


def test_a_start_does_not_reuse_a_task_whose_desired_status_is_stopped(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, lease_mode: str
) -> None:
    old = invoke(start_event("batch"))["body"]
    aws.clients().ecs.stop_task(cluster="batch-cluster", task=old["taskArn"], reason="console")
    assert task(aws, "batch-cluster", old["taskArn"])["lastStatus"] == "RUNNING"
    fresh = invoke({**start_event("batch"), "id": "after-console-stop"})
    assert fresh["statusCode"] == 200
    assert fresh["body"]["taskId"] != old["taskId"]
    settle_and_check_owners(aws, deliver, clock)


# --- I4 with the STOPPED event of a task whose IP a new task took -----------------------------


def test_stopped_event_of_an_old_task_keeps_the_new_task_with_the_same_ip(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    old = invoke(start_event("auth"))["body"]
    stopped_event_before = state_change_event(aws, "auth-cluster", old["taskArn"])
    invoke(stop_event("auth"))
    clock.advance(60)
    aws.lifecycle.plan_next("auth-cluster", ip=old["privateIp"])  # the subnet hands the IP on
    fresh = invoke({**start_event("auth"), "id": "same-ip"})["body"]
    assert fresh["privateIp"] == old["privateIp"]
    stopped = state_change_event(aws, "auth-cluster", old["taskArn"])
    assert stopped["detail"]["lastStatus"] == "STOPPED"
    answer = deliver(stopped)["body"]
    assert answer["action"] == "none"
    assert answer["reason"] == f"{old['privateIp']} now belongs to another live task"
    assert stopped_event_before["detail"]["lastStatus"] == "RUNNING"
    settle_and_check_owners(aws, deliver, clock)
    assert [t[0] for t in targets(aws, "auth")] == [fresh["privateIp"]]


# --- I5: a stop during a start is reported as what it is ---------------------------------------


@pytest.mark.parametrize("point", ["start.after-run-task", "start.registered"])
def test_a_stop_during_a_start_answers_stopped_during_start(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, lease_mode: str, point: str
) -> None:
    capture = EventCapture(aws)
    stops: list[dict[str, Any]] = []
    with checkpoints.at(point, lambda _: stops.append(invoke(stop_event("pdf")))):
        answer = invoke(start_event("pdf"))
    assert stops[0]["body"]["tasksStopped"] == 1
    assert answer["statusCode"] == 409
    assert answer["body"]["errorType"] == "StoppedDuringStart"
    assert "stopped during this start" in answer["body"]["error"]
    assert not [e for e in capture.received() if e["detail-type"] == "Engine Start Failed"]
    settle_and_check_owners(aws, deliver, clock)
    again = invoke({**start_event("pdf"), "id": "again"})  # no failure cooldown
    assert again["statusCode"] == 200


@pytest.mark.parametrize("services", [["pdf"], ["pdf", "fa"]])
def test_a_stop_as_the_start_settles_its_claim_is_told(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, services: list[str]
) -> None:
    """The last moment a stop can reach a start: its engines are done, the answer not yet
    given. The claim's release is conditional on no stop having flagged it, so the start
    learns of the stop there and answers 409, never 200 with a stopped task (I1)."""
    stops: list[dict[str, Any]] = []

    def stop_pdf(point: dict[str, Any]) -> None:
        if point.get("service") == "pdf":
            stops.append(invoke(stop_event("pdf")))

    with checkpoints.at("start.settle", stop_pdf, times=len(services)) as passes:
        answer = invoke(start_event(None) | {"id": "settling", "detail": {"services": services}})
    assert sorted(p["service"] for p in passes) == sorted(services)
    assert stops[0]["body"]["tasksStopped"] == 1
    results = {r["service"]: r for r in answer["body"].get("results", [answer["body"]])}
    pdf = results.get("pdf", answer["body"])
    assert pdf["errorType"] == "StoppedDuringStart", pdf
    assert pdf["cleanedUp"] is True
    if "fa" in services:
        assert results["fa"]["statusCode"] == 200, results["fa"]
    else:
        assert answer["statusCode"] == 409
    assert lease(aws).holder("pdf") is None  # released: a stop is no failure to cool down from
    settle_and_check_owners(aws, deliver, clock)
    assert live_tasks(aws, "pdf-cluster") == []


def test_a_stop_before_run_task_pre_empts_the_start_through_its_claim(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    stops: list[dict[str, Any]] = []
    with checkpoints.at("start.before-run-task", lambda _: stops.append(invoke(stop_event("fa")))):
        answer = invoke(start_event("fa"))
    assert stops[0]["body"]["tasksStopped"] == 0  # nothing to stop yet
    assert answer["statusCode"] == 409
    assert answer["body"]["errorType"] == "StoppedDuringStart"
    assert answer["body"]["cleanedUp"] is True
    settle_and_check_owners(aws, deliver, clock)
    assert live_tasks(aws, "fa-cluster") == []


# --- I6: a dead holder blocks nobody for long ---------------------------------------------------


def test_a_holder_that_died_before_run_task_blocks_a_start_only_until_its_heartbeat_lapses(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    lease(aws).acquire("users", "dead-holder", clock.wall(), 10.0)  # its last heartbeat
    before = clock.now()
    answer = invoke(start_event("users"))
    assert answer["statusCode"] == 200
    assert answer["body"]["reused"] is False
    waited = answer["body"]["timings"]["running"]
    assert 10.0 <= clock.now() - before <= 10.0 + 2 * 0.7 + 4.0 + 2.0  # lapse, 2 polls, start
    assert waited < 20.0
    assert len(mutations(aws, "RunTask")) == 1
    settle_and_check_owners(aws, deliver, clock)


def test_a_holders_claim_never_outlives_its_lambda_deadline(
    aws: Emulator, invoke: Invoke, clock: ManualClock
) -> None:
    with checkpoints.at("start.after-run-task", lambda _: None):
        invoke(start_event("auth"), timeout=15.0)  # 5 s after the 10 s margin
    holder = lease(aws).holder("auth")
    assert holder is None or holder.expires_at <= clock.wall().timestamp() + 5.0


# --- I7: count and force are honoured while another start holds the engine --------------------


@pytest.mark.parametrize(("option", "tasks"), [({"count": 2}, 2), ({"force": True}, 2)])
def test_count_and_force_wait_for_the_holder_then_decide(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    option: dict[str, Any],
    tasks: int,
) -> None:
    first = invoke(start_event("batch"))["body"]
    claim = lease(aws)
    claim.acquire("batch", "live-holder", clock.wall(), 10.0)
    released = lambda _: claim.release("batch", "live-holder")  # noqa: E731
    with checkpoints.at("start.follow", released, skip=2) as passes:
        answer = invoke({**start_event("batch", **option), "id": "more"})
    assert len(passes) >= 3  # it followed, then decided for itself
    assert answer["statusCode"] == 200
    assert len(live_tasks(aws, "batch-cluster")) == tasks
    assert first["taskArn"] in live_tasks(aws, "batch-cluster")
    settle_and_check_owners(aws, deliver, clock)


# --- I8: a task belongs to an engine only in its own family and cluster ----------------------


def test_an_impostor_with_a_forged_engine_tag_is_foreign_everywhere(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    assert aws.provisioned is not None
    impostor = aws.clients().ecs.run_task(
        cluster="pdf-cluster",
        taskDefinition="pdf-creator-task",  # pdf's family in pdf's cluster, tagged as auth
        launchType="FARGATE",
        startedBy="start-engines",
        tags=[{"key": "start-engines:engine", "value": "auth"}],
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(aws.provisioned.subnets),
                "securityGroups": [aws.provisioned.security_group],
            }
        },
    )["tasks"][0]["taskArn"]
    clock.advance(10)
    reconciled = deliver(state_change_event(aws, "pdf-cluster", impostor))["body"]
    assert reconciled["action"] == "ignored"
    sync = {"source": "custom.app", "detail-type": "Sync Target Groups", "detail": {}}
    assert invoke(sync)["body"]["changes"] == 0
    started = invoke(start_event("auth"))["body"]
    assert started["reused"] is False
    assert started["taskArn"] != impostor
    invoke(stop_event("auth"))
    assert task(aws, "pdf-cluster", impostor)["desiredStatus"] == "RUNNING"
    past_draining(clock)
    assert targets(aws, "auth") == []
    assert targets(aws, "pdf") == []


# --- I9: an asynchronous start keeps the engine's claim until its task is registered --------


def test_a_handed_off_start_keeps_the_claim_until_the_running_event(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    first = invoke({"action": "start", "service": "auth", "async": True})
    assert first["statusCode"] == 202
    holder = lease(aws).holder("auth")
    assert holder is not None
    assert holder.state == "starting"
    assert holder.task_arns == (first["body"]["taskArn"],)
    second = invoke({"action": "start", "service": "auth", "async": True, "id": "second"})
    assert second["statusCode"] == 202
    assert second["body"]["taskArn"] == first["body"]["taskArn"]
    assert len(mutations(aws, "RunTask")) == 1
    clock.advance(10)
    reconciled = deliver(state_change_event(aws, "auth-cluster", first["body"]["taskArn"]))
    assert reconciled["body"]["action"] == "registered"
    assert lease(aws).holder("auth") is None
    settle_and_check_owners(aws, deliver, clock)


def test_a_follower_reads_ecs_on_the_budget_only(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESCRIBE_TASKS_PER_SECOND", "0.2")  # tighter than its 0.7 s rounds
    gone = invoke(start_event("pdf"))["body"]["taskArn"]
    invoke(stop_event("pdf"))
    claim = lease(aws)
    claim.acquire("pdf", "holder", clock.wall(), 10.0)
    claim.record_tasks("pdf", "holder", [gone])  # its task is not live: nothing to adopt
    aws.lifecycle.describe_calls.clear()
    aws.lifecycle.list_calls.clear()
    began = clock.now()
    with checkpoints.at("start.before-run-task", lambda _: None) as took_over:
        answer = invoke({**start_event("pdf"), "id": "follower"})
    assert answer["statusCode"] == 200
    assert took_over, "the follower never took the lapsed claim over"
    following = [t for t, _, _ in aws.lifecycle.describe_calls if t < began + 10.0]
    assert len(following) <= 1 + 0.2 * 10.0  # the DescribeTasks budget, not every round
    assert [t for t in aws.lifecycle.list_calls if t < began + 10.0] == []  # no ListTasks loop
    settle_and_check_owners(aws, deliver, clock)


def test_an_engine_done_early_keeps_its_claim_while_the_others_start(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: Any
) -> None:
    """auth (running, reused) is done in the first round; pdf takes 10 s. A stop of auth a few
    seconds in, longer than the claim's TTL after the start took it, still finds auth's claim
    live and flags it, so the start does not answer 200 with auth's stopped task (I1)."""
    monkeypatch.setenv("LEASE_TTL_SECONDS", "2")
    assert invoke(start_event("auth"))["statusCode"] == 200
    aws.lifecycle.plan_next("pdf-cluster", running_after=10.0)
    stops: list[Any] = []

    def stop_auth(point: dict[str, Any]) -> None:
        if point.get("service") == "pdf" and not stops:
            stops.append(invoke(stop_event("auth")))

    with checkpoints.at("start.registered", stop_auth, times=10):
        answer = invoke(start_event(None) | {"id": "both", "detail": {"services": ["auth", "pdf"]}})
    assert stops[0]["body"]["tasksStopped"] == 1
    results = {r["service"]: r for r in answer["body"]["results"]}
    assert results["auth"]["statusCode"] == 409, results["auth"]
    assert results["auth"]["errorType"] == "StoppedDuringStart"
    assert results["pdf"]["statusCode"] == 200, results["pdf"]
    settle_and_check_owners(aws, deliver, clock)
