"""Push where possible: the task-state entry point records each task's state in the lease
table, and a start reads it there (one BatchGetItem a round) before spending DescribeTasks.
Without events everything works as before."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from start_engines import checkpoints
from start_engines.ecs_handler import TaskInfo
from tests.conftest import start_event
from tests.integration.helpers import (
    finish_stop,
    lease,
    settle_and_check_owners,
    state_change_event,
    stop_event,
    targets,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from start_engines.local import Emulator, ManualClock

    Invoke = Callable[..., dict[str, Any]]


class Pusher:
    """ECS's Task State Change events, delivered whenever the start sleeps between rounds (a
    task's status changed since its last event): EventBridge, on the manual clock. Its own
    DescribeTasks (the event's and the task-state function's) are counted apart."""

    def __init__(self, aws: Emulator, deliver: Any, clock: ManualClock, cluster: str) -> None:
        self.aws, self.deliver, self.cluster = aws, deliver, cluster
        self.sleep = clock.sleep
        self.sent: dict[str, tuple[str, str, int]] = {}
        self.own = 0  # DescribeTasks made by delivering
        self.paused = False  # events late: none delivered for now

    def __call__(self, seconds: float) -> None:
        self.sleep(seconds)
        if not self.paused:
            self.push()

    def push(self) -> None:
        before = len(self.aws.lifecycle.describe_calls)
        ecs = self.aws.clients().ecs
        for arn in ecs.list_tasks(cluster=self.cluster)["taskArns"]:
            event = state_change_event(self.aws, self.cluster, arn)
            detail = event["detail"]
            shown = (detail["lastStatus"], detail["desiredStatus"], detail["version"])
            if self.sent.get(arn) != shown:
                self.sent[arn] = shown
                self.deliver(event)
        self.own += len(self.aws.lifecycle.describe_calls) - before


@pytest.fixture
def push_auth(
    aws: Emulator, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> Pusher:
    pusher = Pusher(aws, deliver, clock, "auth-cluster")
    monkeypatch.setattr(clock, "sleep", pusher)
    return pusher


def start_calls(aws: Emulator, invoke: Invoke, pusher: Pusher | None = None) -> tuple[Any, int]:
    """The start's answer, and the DescribeTasks it made itself after RunTask."""
    marks: list[int] = []
    own_before = pusher.own if pusher else 0
    with checkpoints.at(
        "start.after-run-task", lambda _: marks.append(len(aws.lifecycle.describe_calls))
    ):
        answer = invoke(start_event("auth"))
    pushed = (pusher.own if pusher else 0) - own_before
    return answer, len(aws.lifecycle.describe_calls) - marks[0] - pushed


def test_a_start_learns_running_from_the_pushed_state_without_describe_tasks(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    push_auth: Pusher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a budget too small for any poll: what the start learns, the events told
    monkeypatch.setenv("DESCRIBE_TASKS_PER_SECOND", "0.1")
    answer, described = start_calls(aws, invoke, push_auth)
    assert answer["statusCode"] == 200, answer
    body = answer["body"]
    assert body["timings"]["registered"] < body["timings"]["running"]
    assert described == 0
    assert [(ip, port) for ip, port, _ in targets(aws, "auth")] == [(body["privateIp"], 8080)]
    settle_and_check_owners(aws, deliver, clock)


def test_without_events_a_start_polls_as_before(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    answer, described = start_calls(aws, invoke)
    assert answer["statusCode"] == 200, answer
    assert described >= 2  # RUNNING, then the confirming look
    assert lease(aws).task_states([answer["body"]["taskArn"]]) == {}
    settle_and_check_owners(aws, deliver, clock)


def test_an_older_state_never_overwrites_a_newer_record(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    arn = invoke({"action": "start", "service": "auth", "async": True})["body"]["taskArn"]
    clock.advance(10)
    running = state_change_event(aws, "auth-cluster", arn)
    assert deliver(running)["body"]["lastStatus"] == "RUNNING"
    record = lease(aws).task_states([arn])[arn]
    assert (record.last_status, record.version) == ("RUNNING", running["detail"]["version"])
    # an older look, written late (events and their functions run out of order)
    old = TaskInfo(
        arn=arn,
        cluster_arn="auth-cluster",
        last_status="PENDING",
        desired_status="RUNNING",
        version=record.version - 1,
    )
    clock.advance(1)
    later = clock.wall()
    assert lease(aws).record_task_state(old, later, later) is False
    assert lease(aws).task_states([arn])[arn] == record
    # the same version, read later, carries what changed without a version (a tag)
    tagged = dataclasses.replace(old, last_status="RUNNING", version=record.version, stopping="x")
    assert lease(aws).record_task_state(tagged, later, later) is True
    assert lease(aws).task_states([arn])[arn].stopping == "x"
    # a late delivery of an old event: the function reads the task as it is now
    deliver(running)
    assert lease(aws).task_states([arn])[arn].version == record.version


def test_a_stop_after_the_record_is_caught_by_the_confirming_look(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    push_auth: Pusher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_REGISTER_AT", "running")  # registered on the RUNNING record
    stops: list[dict[str, Any]] = []
    with checkpoints.at("start.registered", lambda _: stops.append(invoke(stop_event("auth")))):
        answer = invoke(start_event("auth"))
    assert stops[0]["body"]["tasksStopped"] == 1
    assert answer["statusCode"] == 409, answer
    assert answer["body"]["errorType"] == "StoppedDuringStart"
    assert all(s == "draining" for _, _, s in targets(aws, "auth"))
    finish_stop(aws, clock)
    settle_and_check_owners(aws, deliver, clock)


def test_a_confirming_record_read_after_registering_spares_the_describe(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    push_auth: Pusher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registered on the RUNNING record: the next round's read of the same record confirms
    (nothing claimed or stopped the task before it), with no DescribeTasks at all."""
    monkeypatch.setenv("DESCRIBE_TASKS_PER_SECOND", "0.1")
    monkeypatch.setenv("AUTH_REGISTER_AT", "running")
    answer, described = start_calls(aws, invoke, push_auth)
    assert answer["statusCode"] == 200, answer
    assert described == 0
    assert [(ip, port) for ip, port, _ in targets(aws, "auth")] == [
        (answer["body"]["privateIp"], 8080)
    ]
    settle_and_check_owners(aws, deliver, clock)


def test_a_stop_of_the_task_by_id_is_read_from_its_claim_in_the_record(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    push_auth: Pusher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop of one task (by taskId: it does not preempt the start's claim) writes its claim
    to the task's record before StopTask. The start's confirming read sees it, though no
    event has told of the stop (EventBridge is late) and the budget allows no DescribeTasks."""
    monkeypatch.setenv("DESCRIBE_TASKS_PER_SECOND", "0.1")
    monkeypatch.setenv("AUTH_REGISTER_AT", "running")
    stops: list[dict[str, Any]] = []
    after_stop: list[tuple[int, int]] = []  # (DescribeTasks so far, the pusher's own so far)

    def stop_that_task(_: dict[str, Any]) -> None:
        arn = aws.clients().ecs.list_tasks(cluster="auth-cluster")["taskArns"][0]
        stops.append(invoke(stop_event("auth", taskId=arn.rsplit("/", 1)[-1])))
        push_auth.paused = True
        after_stop.append((len(aws.lifecycle.describe_calls), push_auth.own))

    with checkpoints.at("start.registered", stop_that_task):
        answer = invoke(start_event("auth"))
    assert stops[0]["statusCode"] == 200, stops[0]
    assert answer["statusCode"] == 409, answer
    assert answer["body"]["errorType"] == "StoppedDuringStart"
    calls, own = after_stop[0]
    # from the stop to the answer, the start looked only once: its clean-up's DescribeTasks
    assert len(aws.lifecycle.describe_calls) - calls - (push_auth.own - own) == 1
    push_auth.paused = False
    assert all(s == "draining" for _, _, s in targets(aws, "auth"))
    finish_stop(aws, clock)
    settle_and_check_owners(aws, deliver, clock)


def test_a_task_recorded_stopped_before_the_confirming_read_fails_the_start(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    push_auth: Pusher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The task dies right after the start registered it, and its STOPPED event is handled
    (record written, targets out) before the start's next read: the read sees STOPPED."""
    monkeypatch.setenv("AUTH_REGISTER_AT", "running")

    def die(_: dict[str, Any]) -> None:
        arn = aws.clients().ecs.list_tasks(cluster="auth-cluster")["taskArns"][0]
        aws.lifecycle.kill(arn)
        push_auth.push()

    with checkpoints.at("start.registered", die):
        answer = invoke(start_event("auth"))
    assert answer["statusCode"] >= 500 or answer["statusCode"] == 409, answer
    assert answer["body"]["errorType"] in ("TaskStopped", "TaskFailed"), answer
    assert all(s == "draining" for _, _, s in targets(aws, "auth"))
    settle_and_check_owners(aws, deliver, clock)


def test_a_stop_claim_never_blocks_the_record_of_later_states(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    """A stop's claim may create the record (version 0) before any event did: later looks
    still land, and keep the claim."""
    arn = invoke({"action": "start", "service": "auth", "async": True})["body"]["taskArn"]
    found = lease(aws)
    info = TaskInfo(
        arn=arn,
        cluster_arn="auth-cluster",
        last_status="PENDING",
        desired_status="RUNNING",
        version=1,
    )
    found.record_stop_claim(info, "2026-01-05T08:00:00+00:00 test", clock.wall())
    bare = found.task_states([arn])[arn]
    assert (bare.version, bare.last_status, bare.stopping) == (
        0,
        "",
        "2026-01-05T08:00:00+00:00 test",
    )
    assert found.record_task_state(dataclasses.replace(info, version=2), clock.wall(), clock.wall())
    record = found.task_states([arn])[arn]
    assert (record.version, record.last_status) == (2, "PENDING")
    assert record.stopping == "2026-01-05T08:00:00+00:00 test"
    found.record_stop_claim(info, None, clock.wall())
    assert found.task_states([arn])[arn].stopping is None
    # giving back a claim on a task with no record writes nothing
    found.record_stop_claim(dataclasses.replace(info, arn=arn + "x"), None, clock.wall())
    assert found.task_states([arn + "x"]) == {}
