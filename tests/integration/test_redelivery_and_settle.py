"""The start's last moment and a redelivered event, interleaved: the claim's conditional release
when DynamoDB refuses it (I1), and a second delivery of one event racing the first (one task
per event). Deterministic: checkpoints, a wrapper around one method, the manual clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from start_engines import checkpoints
from start_engines.ecs_handler import ECSHandler
from tests.conftest import start_event
from tests.integration.helpers import (
    lease,
    mutations,
    settle_and_check_owners,
    stop_event,
)
from tests.integration.test_pushed_status_review import heal, refuse_dynamodb

if TYPE_CHECKING:
    from start_engines.local import Emulator, ManualClock

Invoke = Any


def lease_delete(engine: str):  # type: ignore[no-untyped-def]
    return lambda body: body.get("Key", {}).get("pk", {}).get("S") == f"lease#{engine}"


# --- A1: the one conditional DeleteItem fails for a reason other than its condition -----------


@pytest.mark.parametrize("refusals", [1, 99])
def test_a_stop_at_settle_is_told_even_when_the_release_is_refused(
    aws: Emulator,
    invoke: Invoke,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    refusals: int,
) -> None:
    """A stop flags the claim at start.settle (as test_a_stop_as_the_start_settles_its_claim_is
    _told), and then DynamoDB refuses the start's DeleteItem of lease#pdf (throttled past the
    retries, or AccessDenied): once (refusals=1), or every time (99). The start reads the claim
    then, sees the flag and answers 409, never 200 with the stopped task."""
    stops: list[dict[str, Any]] = []
    refused: list[Any] = []

    def stop_then_refuse(point: dict[str, Any]) -> None:
        stops.append(invoke(stop_event("pdf")))
        count = [0]

        def when(body: Any) -> bool:
            if lease_delete("pdf")(body) and count[0] < refusals:
                count[0] += 1
                return True
            return False

        refused.append(refuse_dynamodb(monkeypatch, "delete_item", when))

    with checkpoints.at("start.settle", stop_then_refuse):
        answer = invoke({**start_event("pdf"), "id": "settle-refused"})
    assert stops[0]["body"]["tasksStopped"] == 1
    stopped_task = answer["body"].get("taskArn")
    heal(refused[0])
    assert answer["statusCode"] == 409, (
        f"200 with task {stopped_task}, which the stop at settle claimed and stopped: "
        f"{answer['body'].get('message')}"
    )
    settle_and_check_owners(aws, deliver, clock)


# --- A2: the event records read before the claim ------------------------------------------------


def test_a_delivery_that_completes_after_recall_is_seen_by_the_redelivery(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deliveries of one event (force: a fresh task). Before delivery B's first step, A runs
    and completes (RunTask, record, RUNNING, release). B reads the event records under its
    claim, sees A's task and watches it: one RunTask for the event."""
    event = {**start_event("pdf", force=True), "id": "delivered-twice"}
    first: list[dict[str, Any]] = []
    original = ECSHandler.container_name

    def container_name(self: ECSHandler, engine: Any) -> str:
        if not first:
            first.append({})
            first[0] = invoke(event)  # delivery A, from first to last
        return original(self, engine)

    monkeypatch.setattr(ECSHandler, "container_name", container_name)
    second = invoke(event)  # delivery B
    assert first[0]["statusCode"] == 200, first[0]
    runs = len(mutations(aws, "RunTask"))
    assert runs == 1, (
        f"{runs} RunTask for one event: A {first[0]['body'].get('taskId')}, "
        f"B {second['body'].get('taskId')} (reused={second['body'].get('reused')})"
    )
    settle_and_check_owners(aws, deliver, clock)


def test_a_delivery_that_completes_between_the_read_and_the_claim_is_seen(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race at B's claim: A completes just before B's PutItem. The records are read
    after the claim is taken, so B sees A's."""
    from start_engines.lease import Lease

    event = {**start_event("fa", force=True), "id": "delivered-twice-at-claim"}
    first: list[dict[str, Any]] = []
    original = Lease.acquire

    def acquire(self: Lease, *args: Any, **kwargs: Any) -> Any:
        if not first:
            first.append({})
            first[0] = invoke(event)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Lease, "acquire", acquire)
    invoke(event)
    assert first[0]["statusCode"] == 200, first[0]
    assert len(mutations(aws, "RunTask")) == 1
    settle_and_check_owners(aws, deliver, clock)


def test_an_event_id_too_long_for_a_record_key_starts_nothing(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    """An id longer than a DynamoDB key may be is refused before any claim or read."""
    answer = invoke({**start_event(None), "id": "x" * 3000, "detail": {"services": ["pdf", "fa"]}})
    assert answer["statusCode"] == 400, answer
    assert answer["body"]["errorType"] == "BadEvent"
    assert mutations(aws, "RunTask") == []
    assert lease(aws).holder("pdf") is None
    settle_and_check_owners(aws, deliver, clock)


def on_lease(engine: str):  # type: ignore[no-untyped-def]
    return lambda body: body.get("Key", {}).get("pk", {}).get("S") == f"lease#{engine}"


def test_a_stop_at_settle_is_told_when_the_claim_can_be_neither_released_nor_read(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop flags the claim at start.settle; then DynamoDB refuses every DeleteItem and every
    GetItem of lease#pdf (a throttle outlasting the retries). The start looks at its task
    instead, sees the stop's tag, and answers 409."""
    stops: list[dict[str, Any]] = []
    refused: list[Any] = []

    def stop_then_refuse(point: dict[str, Any]) -> None:
        stops.append(invoke(stop_event("pdf")))
        refused.append(refuse_dynamodb(monkeypatch, "delete_item", on_lease("pdf")))
        refused.append(refuse_dynamodb(monkeypatch, "get_item", on_lease("pdf")))

    with checkpoints.at("start.settle", stop_then_refuse):
        answer = invoke({**start_event("pdf"), "id": "settle-blind"})
    for r in refused:
        heal(r)
    assert stops[0]["body"]["tasksStopped"] == 1
    assert answer["statusCode"] == 409, answer
    assert answer["body"]["errorType"] == "StoppedDuringStart"


def test_a_redelivery_during_a_failed_starts_cooldown_answers_with_its_own_task(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    """Event E started pdf (task T, live). Another start of pdf then failed: the claim is the
    cooldown. E delivered again is answered with T, not the other start's failure."""
    event = {**start_event("pdf"), "id": "E-cooldown"}
    first = invoke(event)
    assert first["statusCode"] == 200, first
    claim = lease(aws)
    assert claim.acquire("pdf", "failed-start", clock.wall(), 30.0) is None
    claim.fail("pdf", "failed-start", "boom", clock.wall(), 30.0)
    again = invoke(event)
    assert again["statusCode"] == 200, again["body"]
    assert again["body"]["taskArn"] == first["body"]["taskArn"]


def test_one_claim_refused_and_the_batch_read_refused_start_the_rest_once(
    aws: Emulator, invoke: Invoke, deliver: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PutItem of lease#fa refused, BatchGetItem refused: pdf still starts once (its record
    read on its own), fa fails with an AWS error, nothing is left claimed; a redelivery with
    force runs no second pdf task."""
    r1 = refuse_dynamodb(
        monkeypatch, "put_item", lambda b: b.get("Item", {}).get("pk", {}).get("S") == "lease#fa"
    )
    r2 = refuse_dynamodb(monkeypatch, "batch_get_item", lambda b: True)
    event = {**start_event(None), "id": "mixed", "detail": {"services": ["pdf", "fa"]}}
    answer = invoke(event)
    heal(r1)
    results = {r["service"]: r for r in answer["body"]["results"]}
    assert results["pdf"]["statusCode"] == 200, results
    assert results["fa"]["statusCode"] >= 500, results
    again = invoke({**event, "detail": {"services": ["pdf"], "force": True}})
    heal(r2)
    got = again["body"].get("results", [again["body"]])[0]
    assert got.get("taskArn") == results["pdf"]["taskArn"], got
    assert len(mutations(aws, "RunTask")) == 1
    assert lease(aws).holder("pdf") is None and lease(aws).holder("fa") is None
    settle_and_check_owners(aws, deliver, clock)
