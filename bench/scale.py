"""Faster to healthy, and with the number of engines: RunTask -> registered, RUNNING and healthy
(tasks that take longer to start than the ALB's registration delay, as Fargate's image pulls
do), beside the seed flow on the same emulated ALB; and ten engines in ten clusters in one
event, beside the slowest of their single starts."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.seed_baseline import seed_lambda_handler
from start_engines.clock import SystemClock
from start_engines.config import SERVICE_MAPPINGS
from start_engines.local.clock import CLOCK_ENV, ScaledClock
from start_engines.local.context import LambdaContext
from start_engines.local.emulator import Emulator
from start_engines.local.provision import ACCOUNT_ROLE
from start_engines.local.worker import RECORD_ENV
from start_engines.local.workers import FunctionSpec, Worker

if TYPE_CHECKING:
    from start_engines.clock import Clock

SLOW_START = 12.0  # seconds to RUNNING: longer than the 10 s registration delay
FAST_START = 1.0  # for the many-engines figure: polling, not the ALB, is what it measures
# the ten-engine figure's emulated clock runs this many times slower than real time (see
# ten_engines); BENCH_DILATION=1 measures it on the real clock
DILATION = float(os.environ.get("BENCH_DILATION", "5"))
POLL_INTERVAL = 0.7  # the default POLL_INTERVAL_SECONDS
TEN_RUNS = 3  # starts of all ten engines, each beside the same ten single starts
# emulated seconds between deliveries of ECS's Task State Change events to the task-state fn
EVENTS_EVERY = float(os.environ.get("BENCH_EVENTS_EVERY", "0.5"))
STOP_SETTLE = 3.0  # emulated seconds for stopped tasks to reach STOPPED (stop_seconds=0.1)
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


def app_event(detail: dict[str, Any], detail_type: str = "Start ECS Task") -> dict[str, Any]:
    """An event as the application sends it, with an id of its own."""
    return {
        "id": f"scale-{time.monotonic_ns()}",
        "source": "custom.app",
        "detail-type": detail_type,
        "detail": detail,
    }


def start(handler: Any, detail: dict[str, Any], clock: Clock) -> tuple[float, dict[str, Any]]:
    """One start event; seconds on `clock`, and the answer's body."""
    began = clock.now()
    answer = handler(app_event(detail), LambdaContext(clock, 900))
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


@dataclass(frozen=True)
class StartRun:
    seconds: float  # on the emulator's clock
    cpu: float  # the start function's own CPU time, real seconds
    describes: list[float]  # when (emulator's clock) it called DescribeTasks
    body: dict[str, Any]

    def at_full_speed(self, dilation: float) -> float:
        """The time with the function's own CPU counted at real speed, as if all of it lay on
        the start's path (none overlapping a wait): the slowed clock counts it 1/dilation."""
        return self.seconds + self.cpu * (1 - 1 / dilation)


class StartProcess:
    """The start function in a process of its own (the emulator's function worker), warm, on
    the emulator's clock: what it computes is measured apart from the emulator's own work."""

    def __init__(self, clock: ScaledClock, workdir: Path) -> None:
        self.clock = clock
        self.record = workdir / "start.jsonl"
        self.record.touch()
        spec = FunctionSpec(
            logical_id="StartFunction",
            name="bench-start",
            arn="arn:aws:lambda:us-east-2:123456789012:function:bench-start",
            handler="start_engines.lambda_function.lambda_handler",
            environment={},
            timeout=900.0,
            memory=1769,
        )
        environ = {**os.environ, CLOCK_ENV: clock.spec(), RECORD_ENV: str(self.record)}
        self.worker = Worker(spec, environ, workdir / "start.log")
        self.worker.start()

    def run(self, detail: dict[str, Any], detail_type: str = "Start ECS Task") -> StartRun:
        lines = len(self.record.read_text().splitlines())
        pid = self.worker.pid
        cpu = cpu_seconds(pid)
        began = self.clock.now()
        answer = self.worker.invoke(app_event(detail, detail_type))
        seconds = self.clock.now() - began
        assert self.worker.pid == pid, "the start's process was replaced"
        cpu = cpu_seconds(pid) - cpu
        assert answer.function_error is None, answer.payload
        assert answer.payload["statusCode"] == 200, json.dumps(answer.payload)[:500]
        calls = [json.loads(line) for line in self.record.read_text().splitlines()[lines:]]
        describes = [c["at"] for c in calls if c["operation"] == "DescribeTasks"]
        return StartRun(seconds, cpu, describes, answer.payload["body"])

    def stop_all(self) -> None:
        """Stop every engine's task, and let them reach STOPPED: the next start runs its own."""
        self.run({"services": ALL_TEN}, "Stop ECS Tasks")
        self.clock.sleep(STOP_SETTLE)

    def close(self) -> None:
        self.worker.stop()


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ten_engine_figures(say: Any, dilation: float = DILATION) -> dict[str, Any]:
    """Ten engines in ten clusters in one event, beside the slowest of their single starts;
    on the real clock, and on an emulator whose clock runs `dilation` times slower."""
    return {"ten": {d: ten_engines(say, d) for d in dict.fromkeys([dilation, 1.0])}}


def ten_engines(say: Any, dilation: float) -> dict[str, Any]:
    """On an emulator whose clock runs `dilation` times slower than real time: it does in one
    Python process, on this machine's cores, what AWS does on many hosts (moto, the task-state
    function's invocations), and the slowed clock counts that work a `dilation`-th. Every wait
    (the poll interval, the budget's second, Fargate's start, the events' delivery every half
    emulated second) is on that clock. The start function runs in a process of its own, warm,
    and its CPU time is measured, so it can be counted back at full speed (`at_full_speed`)."""
    clock = ScaledClock(factor=1 / dilation)
    say(
        f"ten engines in ten clusters, tasks RUNNING after {FAST_START:.0f} s, clock "
        f"{dilation:g}x slower: a warm-up, ten single starts, then {TEN_RUNS} starts of all ten"
    )
    from start_engines import lambda_function  # after the caller's logging settings

    with Emulator(clock, start_seconds=FAST_START, health_seconds=10.0, stop_seconds=0.1) as emu:
        fresh(emu, FAST_START, extra=True)
        # the task-state function (in this process) on this emulator and its clock: its records'
        # times are compared with the start's
        lambda_function.use_runtime(lambda_function.Runtime(emu.clients(), clock))
        emu.deliver_task_events(every=EVENTS_EVERY / clock.factor)  # real seconds
        with tempfile.TemporaryDirectory(prefix="bench-start-") as workdir:
            process = StartProcess(clock, Path(workdir))
            try:
                process.run({"service": ALL_TEN[0]})  # warms up, uncounted
                process.stop_all()
                singles = [process.run({"service": engine}) for engine in ALL_TEN]
                tens = []
                for _ in range(TEN_RUNS):
                    process.stop_all()
                    tens.append(process.run({"services": ALL_TEN, "waitForHealthy": False}))
            finally:
                process.close()
                emu.stop_delivering()
                lambda_function.use_runtime(None)
                forget_extra()
    for ten in tens:
        assert not any(r.get("reused") for r in ten.body["results"]), ten.body
        if os.environ.get("BENCH_VERBOSE"):
            say(f"  {ten.seconds:.2f} s, cpu {ten.cpu:.2f} s, DescribeTasks {len(ten.describes)}")
            say(f"    timings {[r.get('timings') for r in ten.body['results']]}")
            say(f"    DescribeTasks at {[round(t, 2) for t in ten.describes]}")
    return {"singles": singles, "tens": tens}


def per_second(runs: list[StartRun]) -> tuple[float, int]:
    """DescribeTasks per second of the start (median over runs), and the most in any 1 s."""
    rate = statistics.median(len(r.describes) / r.seconds for r in runs)
    most = max(
        (sum(1 for t in r.describes if at <= t < at + 1.0) for r in runs for at in r.describes),
        default=0,
    )
    return rate, most


ENGINES5 = sorted(SERVICE_MAPPINGS)


def healthy_rows(f: dict[str, Any]) -> list[tuple[str, str, str, str, bool]]:
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
    return rows


def ten_rows(f: dict[str, Any], poll_interval: float) -> list[tuple[str, str, str, str, bool]]:
    rows = []
    for dilation, found in f["ten"].items():
        singles, tens = found["singles"], found["tens"]
        clock = f"clock {dilation:g}x slower" if dilation != 1 else "real clock"
        slowest = max(r.seconds for r in singles)
        rows.append(
            (
                f"ten engines in ten clusters in one event, {clock}: median / max of {TEN_RUNS}",
                f"{statistics.median(r.seconds for r in tens):.2f} / "
                f"{max(r.seconds for r in tens):.2f} s (singles: median "
                f"{statistics.median(r.seconds for r in singles):.2f}, slowest {slowest:.2f} s)",
                "(one engine per event)",
                f"<= slowest + {poll_interval} s",
                max(r.seconds for r in tens) <= slowest + poll_interval,
            )
        )
        if dilation != 1:
            full = max(r.at_full_speed(dilation) for r in tens)
            slowest_full = max(r.at_full_speed(dilation) for r in singles)
            rows.append(
                (
                    "  the same, the start's own CPU counted at full speed (1 vCPU)",
                    f"{full:.2f} s (slowest single {slowest_full:.2f} s); the start's CPU: ten "
                    f"{statistics.median(r.cpu for r in tens):.2f} s, single "
                    f"{statistics.median(r.cpu for r in singles):.2f} s",
                    "-",
                    f"<= slowest + {poll_interval} s",
                    full <= slowest_full + poll_interval,
                )
            )
        rate_single, _ = per_second(singles)
        rate_ten, most = per_second(tens)
        rows.append(
            (
                "  DescribeTasks per second of the start, one engine / ten (most in any 1 s)",
                f"{rate_single:.2f} / {rate_ten:.2f} ({most})",
                "-",
                "<= 5",
                rate_ten <= 5.0 and most <= 5,
            )
        )
    return rows


if __name__ == "__main__":  # the ten-engine figures alone (about five minutes)
    import contextlib
    import io
    import sys

    os.environ.update(
        POWERTOOLS_LOG_LEVEL="ERROR", OUTGOING_EVENTS="off", POWERTOOLS_METRICS_DISABLED="true"
    )

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with contextlib.redirect_stdout(io.StringIO()):
        figures = ten_engine_figures(say)
    for name, ours, _, target, met in ten_rows(figures, POLL_INTERVAL):
        print(f"{name}: {ours} (target {target}: {'yes' if met else 'NO'})")
