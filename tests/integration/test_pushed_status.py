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

    def __call__(self, seconds: float) -> None:
        self.sleep(seconds)
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


def test_a_stop_seen_only_through_its_tag_is_caught(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    push_auth: Pusher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop's tag makes no event: a record from before the registration never confirms
    it, the confirming DescribeTasks does (and sees the tag)."""
    from start_engines.ecs_handler import STOPPING_TAG

    monkeypatch.setenv("AUTH_REGISTER_AT", "running")
    ecs = aws.clients().ecs

    def claim(_: dict[str, Any]) -> None:
        arn = ecs.list_tasks(cluster="auth-cluster")["taskArns"][0]
        ecs.tag_resource(resourceArn=arn, tags=[{"key": STOPPING_TAG, "value": "test claim"}])

    with checkpoints.at("start.registered", claim):
        answer = invoke(start_event("auth"))
    assert answer["statusCode"] == 409, answer
    assert answer["body"]["errorType"] == "StoppedDuringStart"
    assert all(s == "draining" for _, _, s in targets(aws, "auth"))


def start_two_with_events(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, mp: pytest.MonkeyPatch
) -> dict[str, Any]:
    """auth and pdf in one event, each task's changes told by its events after every sleep,
    with a budget too small to look at every cluster each round."""
    pushers = [Pusher(aws, deliver, clock, c) for c in ("auth-cluster", "pdf-cluster")]
    sleep = clock.sleep

    def tick(seconds: float) -> None:
        sleep(seconds)
        for pusher in pushers:
            pusher.push()

    mp.setattr(clock, "sleep", tick)
    mp.setenv("DESCRIBE_TASKS_PER_SECOND", "0.1")
    answer = invoke(start_event(None) | {"detail": {"services": ["auth", "pdf"]}})
    assert answer["statusCode"] == 200, answer
    return answer


def test_a_start_short_of_budget_reads_the_records_again_between_rounds(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tasks show their IP from PENDING, 1 s after RunTask; rounds come every 0.7 s (0.7,
    1.4). Between them the records are read every 0.175 s (0.875, 1.05, 1.225), and both tasks
    are registered at the first read after 1 s, not at 1.4."""
    answer = start_two_with_events(aws, invoke, deliver, clock, monkeypatch)
    registered = [r["timings"]["registered"] for r in answer["body"]["results"]]
    assert registered == [pytest.approx(1.05, abs=0.01)] * 2
    settle_and_check_owners(aws, deliver, clock)


def test_a_start_with_budget_to_spare_reads_the_records_only_in_its_rounds(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    push_auth: Pusher,
) -> None:
    """One cluster: every round looks at it, so there is nothing to read between rounds."""
    answer, _ = start_calls(aws, invoke, push_auth)
    assert answer["statusCode"] == 200, answer
    assert answer["body"]["timings"]["registered"] == pytest.approx(1.4, abs=0.01)
    settle_and_check_owners(aws, deliver, clock)


def test_a_read_between_rounds_that_ends_every_job_answers_at_once(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tasks reach RUNNING 3.6 s after RunTask, between the rounds at 3.5 and 4.2. The read
    at 3.675 finds their RUNNING records, which confirm the registrations of 1.05 (their looks
    began after them), and the start answers there, not a round later."""
    for cluster in ("auth-cluster", "pdf-cluster"):
        aws.lifecycle.plan_next(cluster, running_after=3.6)
    began = clock.now()
    answer = start_two_with_events(aws, invoke, deliver, clock, monkeypatch)
    assert clock.now() - began == pytest.approx(3.675, abs=0.01)
    running = [r["timings"]["running"] for r in answer["body"]["results"]]
    assert running == [pytest.approx(3.675, abs=0.01)] * 2
    settle_and_check_owners(aws, deliver, clock)
