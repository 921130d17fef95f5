"""Wake on request, measured: a client that follows the waiting page's refresh, as a browser
does, from its first request to the engine's own answer, beside the start's time to healthy;
and the function's time per waiting request."""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from start_engines.engines.wake import RETRY_AFTER, forget_rules
from start_engines.local.context import LambdaContext

if TYPE_CHECKING:
    from start_engines.local.emulator import Emulator

RUNS = 3
WAITING_SAMPLES = 30


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wake_figures(emu: Emulator, handler: Any, say: Any) -> dict[str, Any]:
    answers: list[float] = []
    healthy: list[float] = []
    waiting: list[float] = []
    for run in range(RUNS):
        say(f"wake {run + 1}/{RUNS}: a sleeping engine's first request to its own answer")
        emu.reset(wakeable=("pdf",))
        emu.apply_environ()
        forget_rules()
        emu.deliver_task_events()
        lifecycle = emu.lifecycle
        with emu.front_door() as door:
            url = f"{door.url}/api/pdf/report"
            first = lifecycle.clock()
            while lifecycle.clock() - first < 120:
                status, headers, body = get(url)
                if status == 200 and b'"taskId"' in body:  # the task's own server
                    answers.append(lifecycle.clock() - first)
                    break
                if run == 0 and len(waiting) < WAITING_SAMPLES:
                    waiting += time_waiting(emu, handler, WAITING_SAMPLES - len(waiting))
                time.sleep(float(headers.get("Retry-After", RETRY_AFTER)))  # the page's refresh
        emu.stop_delivering()
        (plan,) = lifecycle.plans.values()
        # the emulated ALB: the health check that first found the task's app listening
        ready = min(
            checked.healthy_at
            for (_, ip), checked in lifecycle.health.targets.items()
            if ip == plan.ip and checked.healthy_at is not None
        )
        healthy.append(ready - first)
    return {"wake": (answers, healthy, waiting)}


def time_waiting(emu: Emulator, handler: Any, count: int) -> list[float]:
    """The function's own time for requests that find the engine starting."""
    assert emu.provisioned is not None
    event = {
        "requestContext": {"elb": {"targetGroupArn": emu.provisioned.wake_target_group}},
        "httpMethod": "GET",
        "path": "/api/pdf/report",
        "queryStringParameters": {},
        "headers": {"host": "bench", "accept": "text/html", "user-agent": "bench"},
        "body": "",
        "isBase64Encoded": False,
    }
    samples = []
    for _ in range(count):
        began = time.monotonic()
        answer = handler(event, LambdaContext(emu.lifecycle.time, 30))
        samples.append(time.monotonic() - began)
        if answer["statusCode"] != 503:
            break
        state = answer["headers"].get("X-Start-Engines-Wake")
        assert state == "starting", json.dumps(answer)[:300]
    return samples


def wake_rows(figures: dict[str, Any]) -> list[tuple[str, str, str, str, bool]]:
    answers, healthy, waiting = figures["wake"]
    extra = [a - h for a, h in zip(answers, healthy, strict=True)]
    return [
        (
            f"wake: first request -> the engine's own answer, median / max ({len(answers)} runs)",
            f"{statistics.median(answers):.1f} / {max(answers):.1f} s "
            f"(healthy after {statistics.median(healthy):.1f} s; "
            f"+{statistics.median(extra):.1f} / +{max(extra):.1f} s)",
            "no wake: 503 until an event starts it",
            f"<= healthy + {RETRY_AFTER} s (one refresh)",
            max(extra) <= RETRY_AFTER,
        ),
        (
            f"wake: function time per waiting request, median / max ({len(waiting)})",
            f"{statistics.median(waiting):.3f} / {max(waiting):.3f} s",
            "-",
            "<= 0.1 s",
            statistics.median(waiting) <= 0.1,
        ),
    ]
