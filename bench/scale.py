"""Faster to healthy, and with the number of engines: RunTask -> registered, RUNNING and healthy
(tasks that take longer to start than the ALB's registration delay, as Fargate's image pulls
do), beside the seed flow on the same emulated ALB; and ten engines in ten clusters in one
event, beside the slowest of their single starts."""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bench.seed_baseline import seed_lambda_handler
from start_engines.clock import SystemClock
from start_engines.config import SERVICE_MAPPINGS
from start_engines.local.clock import ScaledClock
from start_engines.local.context import LambdaContext
from start_engines.local.emulator import EVENTS_THREAD, Emulator
from start_engines.local.provision import ACCOUNT_ROLE

if TYPE_CHECKING:
    from start_engines.clock import Clock

SLOW_START = 12.0  # seconds to RUNNING: longer than the 10 s registration delay
FAST_START = 1.0  # for the many-engines figure: polling, not the ALB, is what it measures
# the ten-engine figure's emulated clock runs this many times slower than real time (see
# ten_engine_figures); BENCH_DILATION=1 measures it on the real clock
DILATION = float(os.environ.get("BENCH_DILATION", "5"))
EXTRA = [f"eng{i}" for i in range(6, 11)]
ALL_TEN = sorted(SERVICE_MAPPINGS) + EXTRA
SEED_SETTINGS = ("CLUSTER", "TASK_DEF", "TARGET_GROUP_ARN", "PORT")
SEED_KEYS = [f"{name.upper()}_{key}" for name in EXTRA for key in SEED_SETTINGS]


def provision_extra(emu: Emulator) -> None:
    """Five more engines, each in a cluster of its own, behind the same listener."""
    provisioned = emu.provisioned
    assert provisioned is not None
    clients = emu.clients()
    config: dict[str, Any] = {}
    for priority, name in enumerate(EXTRA, start=60):
        group = clients.elbv2.create_target_group(
            Name=f"{name}-tg",
            Protocol="HTTP",
            Port=8080,
            VpcId=provisioned.vpc_id,
            TargetType="ip",
            HealthCheckIntervalSeconds=5,
        )["TargetGroups"][0]["TargetGroupArn"]
        clients.elbv2.create_rule(
            ListenerArn=provisioned.listener_arn,
            Priority=priority,
            Conditions=[{"Field": "path-pattern", "Values": [f"/api/{name}/*"]}],
            Actions=[{"Type": "forward", "TargetGroupArn": group}],
        )
        clients.ecs.create_cluster(clusterName=f"{name}-cluster")
        clients.ecs.register_task_definition(
            family=f"{name}-task",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            executionRoleArn=ACCOUNT_ROLE.format("ecsTaskExecutionRole"),
            containerDefinitions=[
                {
                    "name": f"{name}-app",
                    "image": f"{name}:latest",
                    "memory": 512,
                    "essential": True,
                    "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                }
            ],
        )
        seed = (f"{name}-cluster", f"{name}-task", group, "8080")  # what the seed flow reads
        os.environ.update(
            {f"{name.upper()}_{key}": value for key, value in zip(SEED_SETTINGS, seed, strict=True)}
        )
        config[name] = {
            "cluster": f"{name}-cluster",
            "taskDefinition": f"{name}-task",
            "port": 8080,
            "targetGroupArns": [group],
        }
    os.environ["ENGINES_CONFIG"] = json.dumps(config)


def start(handler: Any, detail: dict[str, Any], clock: Clock) -> tuple[float, dict[str, Any]]:
    """One start event; seconds on `clock`, and the answer's body."""
    event = {
        "id": f"scale-{time.monotonic_ns()}",
        "source": "custom.app",
        "detail-type": "Start ECS Task",
        "detail": detail,
    }
    began = clock.now()
    answer = handler(event, LambdaContext(clock, 900))
    assert answer["statusCode"] == 200, json.dumps(answer)[:500]
    return clock.now() - began, answer["body"]


def seed_timings(emu: Emulator) -> list[dict[str, float]]:
    """RunTask -> registered, RUNNING and healthy of every task, read from the emulator."""
    lifecycle = emu.lifecycle
    found = []
    for plan in lifecycle.plans.values():
        registered = [at for (_, ip), at in lifecycle.registered_at.items() if ip == plan.ip]
        if not registered:
            continue
        running = plan.created + plan.running_after
        # the emulated ALB's first check comes health_seconds after registration; the seed
        # registers only at RUNNING, so that first check passes
        healthy = max(min(registered) + lifecycle.health_seconds, running)
        found.append(
            {
                "registered": min(registered) - plan.created,
                "running": plan.running_after,
                "healthy": healthy - plan.created,
            }
        )
    return found


def healthy_figures(emu: Emulator, handler: Any, say: Any) -> dict[str, Any]:
    """RunTask -> registered, RUNNING and healthy (`waitForHealthy`), tasks RUNNING after
    SLOW_START: five single starts at once, then ten engines in ten clusters in one event (the
    ECS events delivered, as deployed); each beside the seed flow, one event per engine."""
    clock = SystemClock()
    say(
        f"healthy: five single starts, tasks RUNNING after {SLOW_START:.0f} s, ours then the seed's"
    )
    fresh(emu, SLOW_START)
    with ThreadPoolExecutor(5) as pool:
        ours = list(
            pool.map(
                lambda e: start(handler, {"service": e, "waitForHealthy": True}, clock)[1],
                ENGINES5,
            )
        )
    seed = seed_starts(emu, ENGINES5)
    say("healthy: ten engines in ten clusters in one event, ours then the seed's (ten events)")
    fresh(emu, SLOW_START, extra=True)
    emu.deliver_task_events()
    try:
        _, ten = start(handler, {"services": ALL_TEN, "waitForHealthy": True}, clock)
    finally:
        emu.stop_delivering()
    ten_seed = seed_starts(emu, ALL_TEN)
    fresh(emu, SLOW_START)
    return {
        "healthy": ([r["timings"] for r in ours], seed),
        "healthy_ten": ([r["timings"] for r in ten["results"]], ten_seed),
    }


def fresh(emu: Emulator, seconds: float, *, extra: bool = False) -> None:
    """Nothing running; the five engines (and with `extra` five more), tasks RUNNING after
    `seconds`."""
    forget_extra()
    emu.reset()
    emu.apply_environ()
    if extra:
        provision_extra(emu)
    emu.lifecycle.start_seconds_for = lambda cluster: seconds


def forget_extra() -> None:
    """The five more engines' settings out of the environment."""
    for key in ["ENGINES_CONFIG", *SEED_KEYS]:
        os.environ.pop(key, None)


def seed_starts(emu: Emulator, engines: list[str]) -> list[dict[str, float]]:
    """The seed flow for `engines`, one event each, all at once, on clusters made fresh."""
    fresh(emu, SLOW_START, extra=len(engines) > len(ENGINES5))
    with ThreadPoolExecutor(len(engines)) as pool:
        list(
            pool.map(
                lambda e: seed_lambda_handler({"detail": {"service": e}}, emu.clients()),
                engines,
            )
        )
    return seed_timings(emu)


def ten_engine_figures(say: Any, dilation: float = DILATION) -> dict[str, Any]:
    """Ten engines in ten clusters in one event, beside the slowest of their single starts,
    on an emulator of its own whose clock runs `dilation` times slower than real time: the
    emulator does in one Python process what AWS does on many hosts (moto, every start's
    calls, the task-state function's invocations), and the slowed clock shrinks that work
    to a `dilation`-th in the emulated seconds the figure counts. Every wait (the poll
    interval, the budget's second, Fargate's start, the events' delivery) is on that clock."""
    from start_engines import lambda_function

    clock = ScaledClock(factor=1 / dilation)
    say(
        f"ten engines in ten clusters, tasks RUNNING after {FAST_START:.0f} s, time dilated "
        f"{dilation:g}x: a warm-up, ten single starts, then one event"
    )
    with Emulator(clock, start_seconds=FAST_START, health_seconds=10.0) as emu:
        lambda_function.use_runtime(lambda_function.Runtime(emu.clients(), clock))
        handler = lambda_function.lambda_handler
        try:
            singles = []
            for engine in [ALL_TEN[0], *ALL_TEN]:  # the first one warms up, uncounted
                calls = len(emu.describe_log)
                seconds, _ = ten_setup(emu, handler, clock, {"service": engine})
                singles.append((seconds, len(_starts_calls(emu, calls)) / seconds))
            singles = singles[1:]
            calls = len(emu.describe_log)
            ten_seconds, ten = ten_setup(
                emu, handler, clock, {"services": ALL_TEN, "waitForHealthy": False}
            )
        finally:
            lambda_function.use_runtime(None)
            forget_extra()
        assert not any(r.get("reused") for r in ten["results"]), ten
        if os.environ.get("BENCH_VERBOSE"):
            for r in ten["results"]:
                say(f"  {r['service']}: {r.get('timings')}")
            say(f"  start's DescribeTasks at: {[round(t, 2) for t in _starts_calls(emu, calls)]}")
        return {
            "ten": (
                ten_seconds,
                max(s for s, _ in singles),
                len(_starts_calls(emu, calls)) / ten_seconds,
                _max_per_second(emu, calls),
            ),
            "rate_single": statistics.median(r for _, r in singles),
            "dilation": dilation,
        }


def ten_setup(
    emu: Emulator, handler: Any, clock: ScaledClock, detail: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """A start on fresh clusters (nothing to reuse), the ECS events delivered to the
    task-state function every half emulated second, as deployed."""
    fresh(emu, FAST_START, extra=True)
    emu.deliver_task_events(every=0.5 / clock.factor)  # real seconds
    try:
        return start(handler, detail, clock)
    finally:
        emu.stop_delivering()


def _starts_calls(emu: Emulator, since: int) -> list[float]:
    """When the start called DescribeTasks (the task-state function's own calls left out)."""
    return [at for at, who in emu.describe_log[since:] if not who.startswith(EVENTS_THREAD)]


def _max_per_second(emu: Emulator, since: int) -> int:
    """The most DescribeTasks calls of the start in any one-second window of the ten-engine
    start."""
    times = _starts_calls(emu, since)
    return max((sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0)


ENGINES5 = sorted(SERVICE_MAPPINGS)


def scale_rows(f: dict[str, Any], poll_interval: float) -> list[tuple[str, str, str, str, bool]]:
    rows = []
    for figure, what in (("healthy", "5 single starts"), ("healthy_ten", "ten in one event")):
        ours, seed = f[figure]
        for key in ("registered", "running", "healthy"):
            mine = [t[key] for t in ours]
            theirs = [t[key] for t in seed]
            rows.append(
                (
                    f"RunTask -> {key}, median / max ({what}, RUNNING after {SLOW_START:.0f} s)",
                    f"{statistics.median(mine):.2f} / {max(mine):.2f} s",
                    f"{statistics.median(theirs):.2f} / {max(theirs):.2f} s",
                    "healthy <= RUNNING + 5 s (one check)" if key == "healthy" else "-",
                    max(t["healthy"] - t["running"] for t in ours) <= 5.0
                    if key == "healthy"
                    else True,
                )
            )
    ten, slowest, rate, window = f["ten"]
    rows.append(
        (
            f"ten engines in ten clusters in one event (time dilated {f['dilation']:g}x)",
            f"{ten:.2f} s (slowest single {slowest:.2f} s)",
            "(one engine per event)",
            f"<= slowest + {poll_interval} s",
            ten <= slowest + poll_interval,
        )
    )
    rows.append(
        (
            f"DescribeTasks per second, one engine / ten (max in any 1 s; {f['dilation']:g}x)",
            f"{f['rate_single']:.2f} / {rate:.2f} ({window})",
            "-",
            "<= 5",
            rate <= 5.0 and window <= 5,
        )
    )
    return rows
