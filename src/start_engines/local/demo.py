"""`make demo`: the deployed story on the embedded AWS, on an accelerated clock.

Both stacks are deployed to the emulator and each function runs in its own worker process.
The .NET app's PutEvents starts auth through the deployed rule; `Engine Ready` arrives on a
queue subscribed to the bus; a request through the ALB's front door reaches the task; with no
more requests, the scheduled reaper stops it. Times are the emulated clock's: it runs
`--speed` times faster than real time while things happen, and `--idle-speed` times while
nothing does (Fargate, the ALB, the functions and the schedules all follow it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.error
import urllib.request
import warnings
from typing import TYPE_CHECKING, Any, TextIO

from start_engines.local.clock import VariableClock
from start_engines.local.emulator import Emulator
from start_engines.local.stack import queue_messages, subscribe_queue

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

    from start_engines.aws import Clients
    from start_engines.local.stack import DeployedStack

SEED_ENTRY: PutEventsRequestEntryTypeDef = {
    "Source": "custom.app",
    "DetailType": "Start ECS Task",
    "Detail": json.dumps({"service": "auth"}),
}
IDLE = {"idleMinutes": 5, "minUptimeMinutes": 5}
ENGINES_CONFIG = {"auth": IDLE, "pdf": IDLE}
SPEED = 10.0  # emulated seconds per real second, while things happen
IDLE_SPEED = 180.0  # and while the engine idles until the reaper's turn
REAL_LIMIT = 60.0  # seconds of real time any one step may take


class Story:
    """Lines stamped with the emulated time since the story began, and the real time."""

    def __init__(self, clock: VariableClock, out: TextIO) -> None:
        self.clock = clock
        self.out = out
        self.restart()

    def restart(self) -> None:
        self.began, self.real_began = self.clock.now(), time.monotonic()
        self.wall_began = self.clock.wall()

    def elapsed(self, at: float | None = None) -> str:
        """Emulated m:ss since the story began (now, or at emulated reading `at`)."""
        seconds = max(0, int((self.clock.now() if at is None else at) - self.began))
        return f"{seconds // 60:2d}:{seconds % 60:02d}"

    def say(self, text: str, at: float | None = None) -> None:
        real = time.monotonic() - self.real_began
        print(f"  [{self.elapsed(at)} | {real:4.1f}s] {text}", file=self.out, flush=True)

    def reading(self, wall: datetime) -> float:
        """The emulated clock's reading at wall time `wall`."""
        return self.began + (wall - self.wall_began).total_seconds()

    def title(self, text: str) -> None:
        print(f"\n{text}", file=self.out, flush=True)


def _quiet() -> None:
    """moto names each resource type its CloudFormation skips (alarms, say): not the story."""
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="moto")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m start_engines.local.demo",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--speed", type=float, default=SPEED, help="emulated seconds per second")
    parser.add_argument(
        "--idle-speed", type=float, default=IDLE_SPEED, help="the same, while the engine idles"
    )
    parser.add_argument(
        "--start-seconds", type=float, default=40.0, help="emulated Fargate start (s)"
    )
    parser.add_argument(
        "--health-seconds", type=float, default=10.0, help="ALB registration delay (s)"
    )
    args = parser.parse_args(argv)
    if min(args.speed, args.idle_speed) <= 0 or min(args.start_seconds, args.health_seconds) < 0:
        parser.error("the speeds must be positive, the times not negative")
    return run_demo(
        args.start_seconds,
        args.health_seconds,
        sys.stdout,
        speed=args.speed,
        idle_speed=args.idle_speed,
    )


def run_demo(
    start_seconds: float,
    health_seconds: float,
    out: TextIO,
    *,
    speed: float = SPEED,
    idle_speed: float = IDLE_SPEED,
) -> int:
    real_began = time.monotonic()
    _quiet()
    clock = VariableClock(speed)
    with Emulator(clock, start_seconds=start_seconds, health_seconds=health_seconds) as emu:
        print(f"Embedded AWS: moto server at {emu.endpoint_url}", file=out)
        print(
            f"The emulated clock runs {speed:g}x real time ({idle_speed:g}x while the engines "
            "idle); the story's lines show [emulated m:ss | real s].",
            file=out,
        )
        story = Story(clock, out)
        emu.provision(wakeable=("pdf",))
        stack = emu.deploy_stack(wakeable=("pdf",), EnginesConfig=json.dumps(ENGINES_CONFIG))
        _show_stack(story, emu, stack)
        queue = subscribe_queue(emu.clients(), "engine-ready", "Engine Ready")
        print("  a queue, engine-ready, subscribed to `Engine Ready` on the bus", file=out)
        story.restart()  # the story's clock starts once the stack is up
        emu.deliver_task_events(every=0.05)  # ECS's events, onto the default bus
        assert emu.schedules is not None
        emu.schedules.start(every=0.05)
        ok = _story(story, emu, stack, queue, idle_speed)
        emu.stop_delivering()
        emu.schedules.stop()
    print(
        f"\nDone: the story took {story.elapsed().strip()} emulated; "
        f"{time.monotonic() - real_began:.1f} s real in all, the deployment included.",
        file=out,
    )
    return 0 if ok else 1


def _show_stack(story: Story, emu: Emulator, stack: DeployedStack) -> None:
    real = time.monotonic() - story.real_began
    story.title(
        f"1. Deployed infra/alb.yaml and template.yaml in {real:.1f} s (CloudFormation, SAM "
        "translated):"
    )
    for logical, spec in sorted(stack.functions.items()):
        print(f"  {logical}: {spec.handler}, in its own worker process", file=story.out)
    rules = emu.clients().events.list_rules()["Rules"]
    for rule in sorted(rules, key=lambda r: r["Name"]):
        print(f"  rule {rule['Name'].split('-')[1]}: {_rule_summary(rule)}", file=story.out)


def _rule_summary(rule: Mapping[str, Any]) -> str:
    if rule.get("ScheduleExpression"):
        return str(rule["ScheduleExpression"])
    pattern = json.loads(rule.get("EventPattern") or "{}")
    kinds = pattern.get("detail-type", [])
    shown = ", ".join(kinds[:2]) + (f" and {len(kinds) - 2} more" if len(kinds) > 2 else "")
    return f"source {', '.join(pattern.get('source', []))}: {shown}"


def _story(
    story: Story, emu: Emulator, stack: DeployedStack, queue: str, idle_speed: float
) -> bool:
    clients = emu.clients()
    target = _start_auth(story, clients, stack, queue)
    if target is None:
        return False
    story.title("4. Requests through the ALB's front door:")
    with emu.front_door() as door:
        url = f"{door.url}/api/auth/login"
        status, body = _get(url)
        story.say(f"GET /api/auth/login -> {status} {_answered_by(body)}")
        if status != 200 or not _wake(story, f"{door.url}/api/pdf/report"):
            return False
    story.title(
        f"5. No more requests ({idle_speed:g}x now); the reaper runs every 5 minutes (idleMinutes"
        " 5 and minUptimeMinutes 5 here, metrics 3 min late):"
    )
    story.clock.set_speed(idle_speed)
    reaped = _reaped(story, emu, clients, target)
    story.clock.set_speed(1.0)
    if not reaped:
        story.say("the reaper did not stop auth and pdf")
        return False
    with emu.front_door() as door:
        status, body = _get(f"{door.url}/api/pdf/report")
    state = json.loads(body).get("state") if status == 503 else body[:40]
    story.say(f"pdf sleeps again: its next request -> {status} {state}, and wakes it")
    return True


def _start_auth(
    story: Story, clients: Clients, stack: DeployedStack, queue: str
) -> tuple[str, str] | None:
    """Steps 2 and 3: PutEvents, Engine Ready, healthy. Returns auth's (group, IP)."""
    story.title("2. The .NET app sends its event (PutEvents), as in README 'Calling from .NET':")
    story.say(json.dumps(SEED_ENTRY))
    answer = clients.events.put_events(Entries=[SEED_ENTRY])
    story.say(f"PutEvents: FailedEntryCount {answer['FailedEntryCount']}")

    story.title("3. The Commands rule invokes StartEnginesFunction; auth comes up:")
    ready = _wait(lambda: queue_messages(clients, queue))
    if not ready:
        story.say("no Engine Ready arrived")
        return None
    detail = ready[0]["detail"]
    story.say(f"Engine Ready on the queue: {detail.get('message')}")
    group = stack.alb_outputs["AuthTargetGroupArns"].split(",")[0]
    ip = str(detail["privateIp"])
    states: list[str] = []

    def healthy() -> bool:
        state, reason = _health(clients, group, ip)
        if not states or states[-1] != state:
            states.append(state)
            booting = " (a check made while it booted: registered at its IP)"
            story.say(
                f"the ALB's health checks of {ip}: {state}{booting if state == 'unhealthy' else reason}"
            )
        return state == "healthy"

    return (group, ip) if _wait(healthy, every=0.02) else None


def _reaped(story: Story, emu: Emulator, clients: Clients, target: tuple[str, str]) -> bool:
    """Step 5: each reaper run's decisions, stamped with its run, until auth and pdf stop."""
    assert emu.workers is not None and emu.schedules is not None
    start = emu.workers.worker("StartEnginesFunction")
    schedules = emu.schedules
    group, ip = target
    told = 0
    runs = 0

    def stopped() -> bool:
        nonlocal told, runs
        for index in range(told, len(start.answers)):
            told = index + 1
            if start.invocations[index].get("detail-type") != "Reap Idle Engines":
                continue
            fired = [due for due, name in schedules.fired if "ReapRule" in name]
            at = story.reading(fired[runs]) if runs < len(fired) else None
            runs += 1
            payload = start.answers[index].payload or {}
            results = [
                r
                for r in payload.get("body", {}).get("results", [])
                if r.get("service") in ("auth", "pdf")
            ]
            for result in results:
                say = f"reaper: {result['service']} {result.get('action')}"
                story.say(f"{say} ({result.get('reason')})", at)
            if not results:
                story.say("reaper: nothing running to stop", at)
        gone = _health(clients, group, ip)[0] in ("draining", "unregistered")
        return gone and not _running(clients, "auth-cluster") + _running(clients, "pdf-cluster")

    if not _wait(stopped, limit=REAL_LIMIT * 2):
        return False
    emu.workers.drain()  # the last reaper's answer, once its invocation has ended
    stopped()
    story.say(f"auth and pdf stopped, out of their target groups ({runs} reaper runs)")
    return True


def _wake(story: Story, url: str) -> bool:
    """pdf sleeps: its rule forwards to the wake target group (the function). Its first request
    starts it; the client follows the waiting page's refresh until pdf itself answers."""
    story.say("pdf sleeps: its rule forwards to the function's wake target group")
    last = ""

    def answered() -> bool:
        nonlocal last
        status, body = _get(url)
        if status == 200:
            story.say(f"GET /api/pdf/report -> 200 {_answered_by(body)}")
            return True
        try:
            state = json.loads(body)
        except ValueError:
            state = {}
        line = f"GET /api/pdf/report -> {status} {state.get('state', '')}" + (
            f", task {state['taskStatus']}" if state.get("taskStatus") else ""
        )
        if line != last:
            story.say(line + (" (the waiting page)" if not last else ""))
            last = line
        return False

    return bool(_wait(answered, every=0.1))


def _answered_by(body: str) -> str:
    """Who answered: the emulated task echoes its engine, task ID and path."""
    try:
        echo = json.loads(body)
        return f"from {echo['engine']}'s task {str(echo['taskId'])[:8]}"
    except (ValueError, KeyError, TypeError):
        return body[:60]


def _health(clients: Clients, group: str, ip: str) -> tuple[str, str]:
    """The target's state, and ALB's description of it (" (...)") if it gives one."""
    described = clients.elbv2.describe_target_health(TargetGroupArn=group)
    mine = [t for t in described["TargetHealthDescriptions"] if t["Target"]["Id"] == ip]
    if not mine:
        return "unregistered", ""
    health = mine[0]["TargetHealth"]
    why = health.get("Description") or health.get("Reason")
    return str(health["State"]), f" ({why})" if why else ""


def _running(clients: Clients, cluster: str) -> list[str]:
    return list(clients.ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"])


def _wait(ready: Callable[[], Any], *, every: float = 0.05, limit: float = REAL_LIMIT) -> Any:
    """ready() until it is truthy, in real time, at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = ready()
        if found:
            return found
        time.sleep(every)
    return None


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


if __name__ == "__main__":
    sys.exit(main())
