"""Wake on request end to end: a real HTTP client against the emulated ALB's listener, which
calls lambda_handler for the wake target group and proxies to the task's server once the rule
is switched."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from start_engines import checkpoints, lambda_function
from start_engines.engines.wake import forget_rules
from start_engines.local import Emulator, ManualClock
from tests.conftest import HEALTH_SECONDS, START_SECONDS
from tests.integration.helpers import finish_stop, mutations, state_change_event, stop_event
from tests.integration.wake_helpers import forward, routing

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from start_engines.local.front_door import FrontDoor

    Invoke = Callable[..., dict[str, Any]]

MB = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def door(
    aws: Emulator, invoke: Invoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FrontDoor]:
    """pdf sleeps behind the front door; the function it calls runs on the test's clock."""
    provisioned = aws.provisioned
    assert provisioned is not None
    lambda_function.use_runtime(lambda_function.Runtime(aws.clients(), clock))
    monkeypatch.setenv("PDF_LISTENER_RULE_ARN", provisioned.rules["pdf"])
    forward(aws, "pdf", provisioned.wake_target_group)
    forget_rules()
    with aws.front_door() as front:
        yield front
    forward(aws, "pdf", provisioned.target_groups["pdf"])
    forget_rules()


def get(
    door: FrontDoor,
    path: str = "/api/pdf/report",
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """As a client would, following a 307 (urllib does, for GET and HEAD)."""
    request = urllib.request.Request(
        door.url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


def advance_to_running(aws: Emulator, clock: ManualClock, deliver: Any) -> str:
    arn: str = aws.clients().ecs.list_tasks(cluster="pdf-cluster")["taskArns"][0]
    clock.advance(START_SECONDS + 0.1)
    deliver(state_change_event(aws, "pdf-cluster", arn))  # registers, waits healthy, switches
    return arn


def test_the_first_request_gets_the_page_and_one_task(aws: Emulator, door: FrontDoor) -> None:
    answer = get(door, headers={"Accept": "text/html"})
    assert answer.status == 503
    assert answer.headers["X-Start-Engines-Wake"] == "starting"
    assert answer.headers["Retry-After"] == "5"
    assert b"<h1>pdf</h1>" in answer.body
    assert len(mutations(aws, "RunTask")) == 1


def test_twenty_concurrent_requests_start_one_task(aws: Emulator, door: FrontDoor) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: get(door), range(20)))
    assert [a.status for a in answers] == [503] * 20
    assert {a.json()["state"] for a in answers} == {"starting"}
    assert len(mutations(aws, "RunTask")) == 1


def test_the_engine_answers_once_awake_and_a_stop_puts_it_back_to_sleep(
    aws: Emulator, door: FrontDoor, invoke: Invoke, deliver: Any, clock: ManualClock
) -> None:
    get(door)
    task_arn = advance_to_running(aws, clock, deliver)
    assert routing(aws) == "awake"
    served = get(door)
    assert served.status == 200
    assert served.json() == {
        "engine": "pdf",
        "taskId": task_arn.rsplit("/", 1)[-1],
        "path": "/api/pdf/report",
    }
    assert "X-Start-Engines-Wake" not in served.headers  # the task answered, not us

    assert invoke(stop_event("pdf"))["statusCode"] == 200
    assert routing(aws) == "asleep"
    finish_stop(aws, clock)
    again = get(door)
    assert again.status == 503 and again.json()["state"] == "starting"
    assert len(mutations(aws, "RunTask")) == 2


def test_a_refresh_switches_the_rule_and_its_307_reaches_the_engine(
    aws: Emulator, door: FrontDoor, invoke: Invoke, clock: ManualClock
) -> None:
    get(door)
    clock.advance(START_SECONDS + 0.1)
    invoke({"action": "sync", "service": "pdf"})  # registered; the rule waits for health
    clock.advance(HEALTH_SECONDS + 1)
    assert routing(aws) == "asleep"
    refreshed = get(door, headers={"Accept": "text/html"})
    assert refreshed.status == 200  # our 307, followed to the engine's own answer
    assert refreshed.json()["engine"] == "pdf"
    assert routing(aws) == "awake"


def test_a_failed_start_shows_and_refreshes_start_no_storm(
    aws: Emulator, door: FrontDoor, deliver: Any, clock: ManualClock
) -> None:
    aws.lifecycle.plan_next("pdf-cluster", dies_after=1.0)
    get(door)
    arn = aws.clients().ecs.list_tasks(cluster="pdf-cluster")["taskArns"][0]
    clock.advance(2.0)
    deliver(state_change_event(aws, "pdf-cluster", arn))
    pages = [get(door, headers={"Accept": "text/html"}) for _ in range(5)]
    assert {p.headers["X-Start-Engines-Wake"] for p in pages} == {"failed"}
    assert b"TaskStopped" in pages[0].body
    assert len(mutations(aws, "RunTask")) == 1


def test_health_checks_unknown_paths_and_big_or_binary_bodies(
    aws: Emulator, door: FrontDoor
) -> None:
    checker = get(door, headers={"User-Agent": "ELB-HealthChecker/2.0"})
    assert checker.status == 200
    assert get(door, "/api/nothing/x").status == 404
    assert get(door, method="POST", body=b"x" * (MB + 1)).status == 413
    assert mutations(aws, "RunTask") == []
    binary = get(door, method="POST", body=bytes(range(256)) * 10)
    assert binary.status == 503 and binary.json()["state"] == "starting"
    assert len(mutations(aws, "RunTask")) == 1


def test_block_holds_a_get_until_the_engine_answers_and_never_a_post(
    aws: Emulator,
    door: FrontDoor,
    deliver: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PDF_WAKE_STRATEGY", "block")
    began = clock.now()
    posted = get(door, method="POST", body=b'{"order": 1}')
    assert posted.status == 503 and clock.now() == began  # not held, not replayed
    delivered: list[str] = []

    def running_event(_: dict[str, Any]) -> None:
        arn = aws.clients().ecs.list_tasks(cluster="pdf-cluster")["taskArns"][0]
        event = state_change_event(aws, "pdf-cluster", arn)
        if event["detail"]["lastStatus"] == "RUNNING" and not delivered:
            delivered.append(arn)
            deliver(event)

    with checkpoints.at("wake.hold", running_event, times=100):
        held = get(door)
    assert held.status == 200 and held.json()["engine"] == "pdf"
    assert len(mutations(aws, "RunTask")) == 1
