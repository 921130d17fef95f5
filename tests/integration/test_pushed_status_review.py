"""The adversary's review of "push task state" (task#<arn> records in the lease table, read
by a start instead of DescribeTasks): each test names the interleaving and the behaviour the
project's invariants (README, "Concurrency": I1, I3, I4) call for. D1, D3, D4, D7 and D8 failed
against the first cut; D2, D5 and D6 attacked a stop's claim written to the record, a design
dropped for the rule that only a look begun after registering confirms it.

Faults are injected as test_faults.py does: narrow patches of moto's backends (the server runs
in this process), or a wrapper around one Lease method to run a second operation at a precise
moment. No real sleeps: the manual clock and checkpoints only."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.responses import DynamoHandler
from moto.ecs.exceptions import ECSException
from moto.ecs.models import EC2ContainerServiceBackend

from start_engines import checkpoints
from start_engines.ecs_handler import STOPPING_TAG
from start_engines.lease import Lease
from tests.conftest import start_event
from tests.integration.helpers import (
    finish_stop,
    lease,
    settle_and_check_owners,
    state_change_event,
    stop_event,
    targets,
    task,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from start_engines.local import Emulator, ManualClock

    Invoke = Callable[..., dict[str, Any]]

CLUSTER = "auth-cluster"


def tags_of(aws: Emulator, arn: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in task(aws, CLUSTER, arn).get("tags", [])}


def live_targets(aws: Emulator, engine: str = "auth") -> list[str]:
    return [ip for ip, _, state in targets(aws, engine) if state != "draining"]


def refuse_dynamodb(monkeypatch: pytest.MonkeyPatch, action: str, when: Callable[[Any], bool]):
    """DynamoDB refuses `action` (AccessDenied: not retried, as a role without the new
    permission would, or a throttle that outlasts the retries) whenever when(body) holds."""
    original = getattr(DynamoHandler, action)
    refused: list[dict[str, Any]] = []

    def patched(self: DynamoHandler) -> Any:
        body = getattr(self, "body", None) or {}
        if not (refused and refused[0].get("off")) and when(body):
            refused.append(body)
            raise JsonRESTError("AccessDeniedException", f"not authorized to perform {action}")
        return original(self)

    monkeypatch.setattr(DynamoHandler, action, patched)
    return refused


def heal(refused: list[dict[str, Any]]) -> None:
    """DynamoDB answers again (monkeypatch.undo would also undo the aws fixture's env)."""
    if refused:
        refused[0]["off"] = True


def refuse_stop_task(monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
    """ECS refuses the first `times` StopTask calls, then lets them through."""
    original = EC2ContainerServiceBackend.stop_task
    refused: list[str] = []

    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        if len(refused) < times:
            refused.append("refused")
            raise ECSException("AccessDeniedException", "not authorized to perform ecs:StopTask")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EC2ContainerServiceBackend, "stop_task", patched)
    return refused


def running_task(aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock) -> str:
    """A started auth task, RUNNING and registered, its record written by its RUNNING event."""
    answer = invoke(start_event("auth"))
    assert answer["statusCode"] == 200, answer
    arn: str = answer["body"]["taskArn"]
    deliver(state_change_event(aws, CLUSTER, arn))
    record = lease(aws).task_states([arn])[arn]
    assert (record.last_status, record.stopping) == ("RUNNING", None)
    clock.advance(1)
    return arn


# --- D1: the record's claim outlives the claim ------------------------------------------------


def test_a_late_record_written_after_a_give_back_does_not_fail_later_starts(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interleaving. Task T runs, registered, its record RUNNING. A stop claims T (tag and
    record `stopping`). Exactly then the task-state function handles a (late or redelivered)
    event for T: its DescribeTasks shows the stopping tag; its UpdateItem is slow (throttled,
    retried) and lands later. The stop's StopTask is refused, so the stop gives T back: untag,
    REMOVE stopping from the record, register again. Then the slow UpdateItem lands: same
    version, later seenAt, so the condition lets it through, and it SETs stopping again.

    Now T runs, untagged, registered and serving, yet its record says a stop claims it, and
    nothing ever removes that (record_task_state never REMOVEs stopping; each later event
    write even pushes expiresAt on). A start of the engine reuses T, registers, and its
    confirming read of the record sees the stale claim.

    Expected: the start answers 200 with T (nothing is stopping it; DescribeTasks would say
    so). Observed: 409 StoppedDuringStart, for this start and every later one that reuses T.
    The budget is kept low, as in a start of several engines: the record is the only look."""
    arn = running_task(aws, invoke, deliver, clock)
    refuse_stop_task(monkeypatch, times=1)
    late: list[Callable[[], Any]] = []
    original = Lease.record_task_state

    def slow_write(self: Lease, *args: Any, **kwargs: Any) -> bool:
        late.append(lambda: original(self, *args, **kwargs))  # lands after the stop's end
        return True

    def event_during_claim(_: dict[str, Any]) -> None:
        with monkeypatch.context() as patch:
            patch.setattr(Lease, "record_task_state", slow_write)
            body = deliver(state_change_event(aws, CLUSTER, arn))["body"]
        assert body["reason"] == "a stop has claimed the task", body

    with checkpoints.at("stop.claimed", event_during_claim):
        refused = invoke(stop_event("auth"))
    assert refused["statusCode"] == 500, refused  # StopTask refused: T given back
    assert STOPPING_TAG not in tags_of(aws, arn)
    assert lease(aws).task_states([arn])[arn].stopping is None  # the give-back's REMOVE
    assert late and late[0]() is True  # the slow UpdateItem lands now
    monkeypatch.setenv("DESCRIBE_TASKS_PER_SECOND", "0.1")
    clock.advance(1)
    answer = invoke(start_event("auth"))
    assert answer["statusCode"] == 200, answer
    assert answer["body"]["taskArn"] == arn
    settle_and_check_owners(aws, deliver, clock)


# --- D3: a refused BatchGetItem aborts the whole start -----------------------------------------


def test_a_refused_record_read_falls_back_to_describe_tasks(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interleaving. The lease table refuses BatchGetItem (a role deployed without the new
    dynamodb:BatchGetItem permission, or a throttle that outlasts botocore's retries). The
    start has acquired its claim and run its task; its first poll round reads the records.

    Expected: the records are an optimisation ("the rest is left to DescribeTasks"): the
    start polls ECS and answers 200; at worst it fails that engine's job and cleans up
    (StopTask, targets out) like any failure after RunTask.
    Observed: the AwsError escapes poll_tasks, Starter.poll and start(): finish() sees no
    error on the job, so nothing is cleaned up; the answer is a bare 500 naming BatchGetItem,
    while the task it ran goes on running (registered by its RUNNING event)."""
    refused = refuse_dynamodb(monkeypatch, "batch_get_item", lambda body: True)
    answer = invoke(start_event("auth"))
    assert refused
    running = aws.clients().ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
    assert answer["statusCode"] == 200 or (answer["body"].get("cleanedUp") and not running), (
        answer,
        running,
    )
    heal(refused)
    settle_and_check_owners(aws, deliver, clock)


# --- D4: a malformed record crashes the start --------------------------------------------------


def test_a_malformed_record_does_not_crash_the_start(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
) -> None:
    """Hostile input. Right after RunTask, something else (an operator's script, an older
    or newer release) writes task#<arn> with version 1.5 and no statuses. The start's first
    round reads it in its BatchGetItem.

    Expected: a record it cannot read is no record: the start polls ECS and answers 200.
    Observed: ValueError from int("1.5") escapes poll_tasks; the handler answers 500
    InternalError; finish() sees no error on the job, so the task is not cleaned up."""
    table = aws.provisioned.lease_table  # type: ignore[union-attr]
    dynamodb = aws.clients().dynamodb

    def scribble(info: dict[str, Any]) -> None:
        for arn in info["taskArns"]:
            dynamodb.put_item(
                TableName=table,
                Item={"pk": {"S": f"task#{arn}"}, "version": {"N": "1.5"}},
            )

    with checkpoints.at("start.after-run-task", scribble):
        answer = invoke(start_event("auth"))
    assert answer["statusCode"] == 200, answer
    settle_and_check_owners(aws, deliver, clock)


def stop_of(arn: str, name: str) -> dict[str, Any]:
    return {**stop_event("auth", taskId=arn.rsplit("/", 1)[-1]), "id": f"stop-{name}"}


# --- D7: a record is a look as old as the last event ------------------------------------------


def test_a_confirming_read_of_a_stale_record_never_confirms_a_task_ecs_has_stopped(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interleaving. Start S registers T at RUNNING; T's RUNNING event is handled (record
    RUNNING at the version S knows). Right after the registration T dies (desired STOPPED,
    then STOPPED in ECS), and EventBridge is late: no event, so the record still says RUNNING.
    S's next read finds the record at the version it knows, read after registering: it
    confirms, with no DescribeTasks (the budget of a several-engine start is spent).

    Expected: as when the STOPPED event is handled first
    (test_pushed_status.test_a_task_recorded_stopped_before_the_confirming_read_fails_the_start)
    or when DescribeTasks takes the confirming look: the start fails (TaskStopped/TaskFailed)
    and cleans up, since T was dead before the confirming look. "Nothing is told started for
    a task that is about to stop (desired STOPPED)."
    Observed: 200 with T. The late STOPPED event removes the target later, so nothing is
    orphaned; the window is EventBridge's delivery latency (seconds, more under load), not
    the instant of one call as with DescribeTasks. The record's seen_at could bound it."""
    monkeypatch.setenv("AUTH_REGISTER_AT", "running")
    monkeypatch.setenv("DESCRIBE_TASKS_PER_SECOND", "0.1")
    dead: list[str] = []

    def die_unannounced(_: dict[str, Any]) -> None:
        arn = aws.clients().ecs.list_tasks(cluster=CLUSTER)["taskArns"][0]
        deliver(state_change_event(aws, CLUSTER, arn))  # its RUNNING event: the record
        aws.lifecycle.kill(arn)  # its STOPPED event is late
        dead.append(arn)

    with checkpoints.at("start.registered", die_unannounced):
        answer = invoke(start_event("auth"))
    assert dead
    assert task(aws, CLUSTER, dead[0])["desiredStatus"] == "STOPPED"
    assert answer["statusCode"] != 200, answer
    settle_and_check_owners(aws, deliver, clock)


# --- D8: the RUNNING event now needs the record write before it registers ----------------------


def test_a_refused_record_write_does_not_keep_the_running_event_from_registering(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interleaving. An asynchronous start answers 202 with task T; T turns RUNNING; its
    RUNNING event reaches the task-state function, whose UpdateItem of task#T is refused (a
    task-state role built from the README's IAM table, which gives it only
    dynamodb:DeleteItem on the lease table; or a throttle outlasting the retries).

    Expected: T registered (the record only spares a start some DescribeTasks; a RUNNING
    task's record is not needed for safety, only a stopped one's before deregistering).
    Observed: the write's AwsError ends the invocation before _running: no target, and the
    retried invocations fail the same way; T runs unregistered until a sync (I4)."""
    started = invoke({"action": "start", "service": "auth", "async": True})
    assert started["statusCode"] == 202, started
    arn = started["body"]["taskArn"]
    clock.advance(10)
    refused = refuse_dynamodb(
        monkeypatch,
        "put_item",
        lambda body: body.get("Item", {}).get("pk", {}).get("S", "").startswith("task#"),
    )
    with contextlib.suppress(Exception):  # Lambda would retry; what counts is the target
        deliver(state_change_event(aws, CLUSTER, arn))
    assert refused
    heal(refused)
    assert task(aws, CLUSTER, arn)["lastStatus"] == "RUNNING"
    assert live_targets(aws), "T runs, its RUNNING event was handled, and it has no target"


# --- attacks that held -------------------------------------------------------------------------


def test_without_a_lease_table_start_and_stop_work_as_before(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No LEASE_TABLE: no record is read or written (the task-state function, the stop's
    claim, the start); a start with a stop by taskId at start.registered is still caught by
    the DescribeTasks confirming look."""
    monkeypatch.delenv("LEASE_TABLE")
    answer = invoke(start_event("auth"))
    assert answer["statusCode"] == 200, answer
    arn = answer["body"]["taskArn"]
    assert deliver(state_change_event(aws, CLUSTER, arn))["statusCode"] == 200
    assert lease(aws).task_states([arn]) == {}
    stopped = invoke(stop_of(arn, "plain"))
    assert stopped["statusCode"] == 200, stopped
    finish_stop(aws, clock)
    stops: list[dict[str, Any]] = []

    def stop_it(_: dict[str, Any]) -> None:
        live = aws.clients().ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")
        stops.append(invoke(stop_of(live["taskArns"][0], "during")))

    with checkpoints.at("start.registered", stop_it):
        again = invoke({**start_event("auth"), "id": "again"})
    assert stops[0]["statusCode"] == 200, stops
    assert again["statusCode"] == 409, again
    finish_stop(aws, clock)
    settle_and_check_owners(aws, deliver, clock)


def test_one_clusters_failed_look_in_a_parallel_round_fails_only_its_engine(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engines in one start: a round's DescribeTasks run in threads. The fa-cluster one is
    refused once; only fa fails (cleaned up), auth answers 200, nothing is orphaned."""
    original = EC2ContainerServiceBackend.describe_tasks
    refused: list[str] = []

    def patched(self: Any, cluster_str: str, tasks: list[str]) -> Any:
        if cluster_str.endswith("fa-cluster") and not refused and tasks:
            refused.append(cluster_str)
            raise ECSException("AccessDeniedException", "not authorized to DescribeTasks")
        return original(self, cluster_str, tasks)

    monkeypatch.setattr(EC2ContainerServiceBackend, "describe_tasks", patched)
    answer = invoke(start_event(None) | {"detail": {"services": ["auth", "fa"]}})
    assert refused
    by_service = {r["service"]: r for r in answer["body"]["results"]}
    assert by_service["auth"]["statusCode"] == 200, answer
    assert by_service["fa"]["statusCode"] >= 400 and by_service["fa"]["cleanedUp"], answer
    finish_stop(aws, clock)
    settle_and_check_owners(aws, deliver, clock)
