"""A burst of 100 mixed events, 20 at a time (the template's ReservedConcurrency: Lambda runs
no more), on one shared emulated timeline: how many ECS and ELB calls per second it makes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from start_engines import lambda_function
from start_engines.local import Emulator, ManualClock
from start_engines.local.clock import SteppedClock
from start_engines.local.context import LambdaContext

ENGINES = ("auth", "pdf", "fa", "users", "batch")
CONCURRENCY = 20  # ReservedConcurrency's default
DESCRIBE_RATE = 1.5  # DESCRIBE_TASKS_PER_SECOND, per invocation
HEALTH_RATE = 0.5  # 1 / HEALTH_POLL_INTERVAL_SECONDS, per target group
FIXED_CALLS = 8  # the most ECS (or ELB) calls an invocation makes outside its polls


def mixed_events() -> list[dict[str, Any]]:
    kinds = ["Start ECS Task"] * 6 + ["Stop ECS Task", "Stop ECS Task"]
    kinds += ["ECS Task Status", "Sync Target Groups"]
    events = []
    for i in range(100):
        detail: dict[str, Any] = {"service": ENGINES[i % 5]}
        if i % 20 == 3:
            detail["waitForHealthy"] = True
        events.append(
            {
                "id": f"burst-{i}",
                "source": "custom.app",
                "detail-type": kinds[i % 10],
                "detail": detail,
            }
        )
    return events


@pytest.fixture
def stepped(aws: Emulator, clock: ManualClock) -> Iterator[SteppedClock]:
    """The emulator and the function on one stepped timeline, for this test only."""
    timeline = SteppedClock(start=clock.now())
    lifecycle = aws.lifecycle
    saved = lifecycle.time, lifecycle.clock
    lifecycle.time, lifecycle.clock = timeline, timeline.now
    lambda_function.use_runtime(lambda_function.Runtime(aws.clients(), timeline))
    yield timeline
    lambda_function.use_runtime(None)
    lifecycle.time, lifecycle.clock = saved
    clock.advance(max(0.0, timeline.now() - clock.now()))


def test_a_burst_of_mixed_events_keeps_the_ecs_and_elb_call_rate_bounded(
    aws: Emulator, stepped: SteppedClock
) -> None:
    durations: list[float] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        with stepped.worker():
            began = stepped.now()
            answer = lambda_function.lambda_handler(event, LambdaContext(stepped, 900))
            durations.append(stepped.now() - began)
            return answer

    began = stepped.now()
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        answers = list(pool.map(invoke, mixed_events()))

    bodies = [a["body"] for a in answers]
    results = [r for b in bodies for r in b.get("results", [b])]
    assert not [r for r in results if r.get("errorType") == "InternalError"]
    assert all(a["statusCode"] in (200, 207, 409, 503, 504) for a in answers), Counter(
        a["statusCode"] for a in answers
    )
    per_second: dict[int, Counter[str]] = {}
    for at, action in aws.lifecycle.api_calls:
        per_second.setdefault(int(at - began), Counter())[action] += 1
    ecs = [sum(n for a, n in c.items() if a.startswith("ecs:")) for c in per_second.values()]
    elb = [sum(n for a, n in c.items() if a.startswith("elbv2:")) for c in per_second.values()]
    describe = [c["ecs:DescribeTasks"] for c in per_second.values()]
    print(
        f"\nburst: {len(per_second)} s; per second, peak ECS {max(ecs)}, ELB {max(elb)}, "
        f"DescribeTasks {max(describe)}; totals {sum(ecs)} ECS, {sum(elb)} ELB"
    )
    # No loop runs unbounded: every call is one of an invocation's few fixed calls, or a poll
    # within its budget over its own running time. (Per emulated second the peaks are not a
    # bound: an AWS call takes no emulated time, so quick events pile into one second.)
    busy = sum(durations)
    assert len(durations) == 100
    assert sum(ecs) <= FIXED_CALLS * 100 + DESCRIBE_RATE * busy, (sum(ecs), busy)
    assert sum(elb) <= FIXED_CALLS * 100 + HEALTH_RATE * busy, (sum(elb), busy)
    assert sum(describe) <= FIXED_CALLS * 100 + DESCRIBE_RATE * busy
