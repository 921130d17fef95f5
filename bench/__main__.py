"""`make bench`: every figure of the start flow beside the seed flow's, measured in the same run
on the same embedded AWS, with a real clock. Targets are shown, not asserted."""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.cold import BATCHES, PAIRS, cold_ratio, instructions
from bench.scale import POLL_INTERVAL, healthy_figures, healthy_rows, ten_engine_figures, ten_rows
from bench.seed_baseline import seed_lambda_handler
from bench.wake import wake_figures, wake_rows
from start_engines.clock import SystemClock
from start_engines.config import SERVICE_MAPPINGS, env_prefix
from start_engines.local.context import LambdaContext
from start_engines.local.emulator import Emulator

ENGINES = sorted(SERVICE_MAPPINGS)
START_TIMES = [2.0, 3.5, 5.0, 6.5, 8.0]  # seconds to RUNNING, spread over the engines


@dataclass
class Run:
    engine: str
    seconds: float
    body: dict[str, Any]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def event(engine: str, i: int) -> dict[str, Any]:
    return {
        "id": f"bench-{engine}-{i}-{time.monotonic_ns()}",
        "source": "custom.app",
        "detail-type": "Start ECS Task",
        "detail": {"service": engine},
    }


def timed(call: Any) -> tuple[float, Any]:
    began = time.monotonic()
    result = call()
    return time.monotonic() - began, result


def reset(emu: Emulator, times: dict[str, float]) -> None:
    emu.reset()
    emu.apply_environ()
    emu.lifecycle.start_seconds_for = lambda cluster: times.get(cluster, 3.0)


def lags(emu: Emulator) -> list[float]:
    """Seconds from each task reaching RUNNING to its target being registered."""
    found = []
    for plan in emu.lifecycle.plans.values():
        running_at = plan.created + plan.running_after
        registered = [at for (_, ip), at in emu.lifecycle.registered_at.items() if ip == plan.ip]
        if registered:
            found.append(min(registered) - running_at)
    return found


def describe_rates(emu: Emulator, runs: list[Run]) -> list[float]:
    """DescribeTasks calls per second of each invocation (each polls its own cluster)."""
    rates = []
    for run in runs:
        cluster = SERVICE_MAPPINGS[run.engine]["cluster"]
        calls = [at for at, c, _ in emu.lifecycle.describe_calls if c == cluster]
        rates.append(len(calls) / run.seconds)
    return rates


def main() -> int:
    os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
    os.environ["OUTGOING_EVENTS"] = "off"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    for engine, spec in SERVICE_MAPPINGS.items():  # the seed reads these; ours has defaults
        os.environ[f"{env_prefix(engine)}_TASK_DEF"] = spec["taskDefinition"]
        os.environ[f"{env_prefix(engine)}_PORT"] = str(spec["port"])
    from start_engines import lambda_function

    figures: dict[str, Any] = {}
    with (
        Emulator(start_seconds=3.0, health_seconds=10.0) as emu,
        contextlib.redirect_stdout(io.StringIO()),
    ):
        lambda_function.use_runtime(lambda_function.Runtime(emu.clients(), SystemClock()))
        bench = Bench(emu, lambda_function.lambda_handler)
        figures.update(bench.single_starts())
        figures.update(bench.five_in_one_event())
        figures.update(bench.asynchronous_start())
        figures.update(bench.fifty_concurrent())
        figures.update(wake_figures(emu, lambda_function.lambda_handler, say))
        figures.update(healthy_figures(emu, lambda_function.lambda_handler, say))
        lambda_function.use_runtime(None)
    with contextlib.redirect_stdout(io.StringIO()):
        figures.update(ten_engine_figures(say))  # an emulator of its own, on a slowed clock

    say("cold start: whole processes ending at their import, interleaved, a compiled copy")
    figures["cold"] = cold_ratio()
    figures["instructions"] = instructions()
    report(figures)
    return 0


class Bench:
    def __init__(self, emu: Emulator, handler: Any) -> None:
        self.emu = emu
        self.handler = handler
        self.clock = SystemClock()
        self.times = {
            SERVICE_MAPPINGS[e]["cluster"]: t for e, t in zip(ENGINES, START_TIMES, strict=True)
        }
        self.our_runs: list[Run] = []
        self.seed_runs: list[Run] = []

    def ours(self, engine: str, i: int = 0) -> Run:
        seconds, response = timed(
            lambda: self.handler(event(engine, i), LambdaContext(self.clock, 900))
        )
        assert response["statusCode"] == 200, response
        return Run(engine, seconds, response["body"])

    def seed(self, engine: str, i: int = 0) -> Run:
        seconds, response = timed(lambda: seed_lambda_handler(event(engine, i), self.emu.clients()))
        return Run(engine, seconds, response["body"])

    def single_starts(self) -> dict[str, Any]:
        our_lags: list[float] = []
        our_rates: list[float] = []
        seed_lags: list[float] = []
        seed_rates: list[float] = []
        for wave in range(2):  # ten starts each, start times spread over 2-8 s
            shifted = {c: START_TIMES[(i + wave) % 5] for i, c in enumerate(self.times)}
            say(f"wave {wave + 1}/2: five single starts in parallel, ours, then the seed's")
            for runner, runs, lag, rate in (
                (self.ours, self.our_runs, our_lags, our_rates),
                (self.seed, self.seed_runs, seed_lags, seed_rates),
            ):
                reset(self.emu, shifted)
                with ThreadPoolExecutor(5) as pool:
                    wave_runs = list(pool.map(runner, ENGINES))
                runs.extend(wave_runs)
                lag.extend(lags(self.emu))
                rate.extend(describe_rates(self.emu, wave_runs))
        return {
            "lag": (our_lags, seed_lags),
            "rate1": (max(our_rates), statistics.mean(seed_rates)),
        }

    def five_in_one_event(self) -> dict[str, Any]:
        say("five engines in one event")
        reset(self.emu, self.times)
        all_five = {
            "id": "bench-all",
            "source": "custom.app",
            "detail-type": "Start ECS Task",
            "detail": {"services": ENGINES},
        }
        seconds, response = timed(lambda: self.handler(all_five, LambdaContext(self.clock, 900)))
        assert response["statusCode"] == 200, response
        slowest = max(r.seconds for r in self.our_runs[:5])
        return {
            "five": (seconds, slowest, sum(r.seconds for r in self.seed_runs[:5])),
            "rate5": len(self.emu.lifecycle.describe_calls) / seconds,
        }

    def asynchronous_start(self) -> dict[str, Any]:
        say("asynchronous start (API Gateway) handler time")
        reset(self.emu, self.times)
        samples = []
        for engine in ENGINES:
            path = f"/engines/{engine}/start"
            api = {
                "version": "2.0",
                "routeKey": "$default",
                "rawPath": path,
                "requestContext": {"http": {"method": "POST", "path": path}, "requestId": engine},
            }
            seconds, response = timed(
                lambda api=api: self.handler(api, LambdaContext(self.clock, 30))
            )
            assert response["statusCode"] == 202, response
            samples.append(seconds)
        return {
            "async": (
                statistics.median(samples),
                statistics.median(r.seconds for r in self.seed_runs),
            )
        }

    def fifty_concurrent(self) -> dict[str, Any]:
        say("50 concurrent start events across the five engines, ours, then the seed's")
        ecs = self.emu.clients().ecs

        def tasks_per_engine() -> dict[str, int]:
            return {
                e: len(
                    ecs.list_tasks(cluster=SERVICE_MAPPINGS[e]["cluster"], desiredStatus="RUNNING")[
                        "taskArns"
                    ]
                )
                for e in ENGINES
            }

        reset(self.emu, dict.fromkeys(self.times, 2.0))
        with ThreadPoolExecutor(50) as pool:
            responses = list(
                pool.map(
                    lambda i: self.handler(
                        event(ENGINES[i % 5], i), LambdaContext(self.clock, 900)
                    ),
                    range(50),
                )
            )
        ours = tasks_per_engine()
        reset(self.emu, dict.fromkeys(self.times, 2.0))
        with ThreadPoolExecutor(50) as pool:
            list(pool.map(lambda i: self.seed(ENGINES[i % 5], i), range(50)))
        ok = sum(1 for r in responses if r["statusCode"] == 200)
        return {"fifty": (ok, ours, sum(tasks_per_engine().values()))}


def report(f: dict[str, Any]) -> None:
    our_lags, seed_lags = f["lag"]
    five, slowest, seed_sum = f["five"]
    async_median, seed_sync = f["async"]
    ok, per_engine, seed_tasks = f["fifty"]
    cold, counted = f["cold"], f["instructions"]
    rows = [
        ("figure", "start-engines", "seed baseline", "target", "met"),
        (
            f"registered minus RUNNING, median / max ({len(our_lags)} starts, 2-8 s; < 0: before RUNNING)",
            f"{statistics.median(our_lags):.2f} / {max(our_lags):.2f} s",
            f"{statistics.median(seed_lags):.2f} / {max(seed_lags):.2f} s",
            "<= 0.5 / <= 1.0 s",
            yes(statistics.median(our_lags) <= 0.5 and max(our_lags) <= 1.0),
        ),
        (
            "DescribeTasks per second per invocation, 1 engine",
            f"{f['rate1'][0]:.2f}",
            f"{f['rate1'][1]:.2f}",
            "<= 1.5",
            yes(f["rate1"][0] <= 1.5),
        ),
        (
            "DescribeTasks per second per invocation, 5 engines",
            f"{f['rate5']:.2f}",
            "(one engine per event)",
            "<= 5",
            yes(f["rate5"] <= 5.0),
        ),
        (
            "five engines in one event, wall time",
            f"{five:.2f} s = {five / slowest:.2f}x slowest single ({slowest:.2f} s)",
            f"{seed_sum:.2f} s (sum of five)",
            "<= 1.2x slowest",
            yes(five <= 1.2 * slowest),
        ),
        (
            "handler time of an asynchronous start (202)",
            f"{async_median:.3f} s",
            f"{seed_sync:.2f} s (it waits)",
            "<= 0.5 s",
            yes(async_median <= 0.5),
        ),
        (
            f"cold start, non-editable, compiled, whole processes: {BATCHES} batches of {PAIRS} pairs",
            f"{cold.seconds[0]:.3f} s vs import boto3 {cold.seconds[1]:.3f} s: wall {cold.wall}, "
            f"cpu {cold.cpu}",
            "-",
            "<= 1.0x",
            yes(cold.met),
        ),
        (
            "cold start by instructions executed (valgrind callgrind; load does not change it)",
            "valgrind not installed"
            if counted is None
            else f"{counted[0] / counted[1]:.3f}x import boto3",
            "-",
            "<= 1.0x",
            yes(counted is not None and counted[0] <= counted[1]),
        ),
        (
            "50 concurrent start events, 5 engines",
            f"{ok}/50 ok, tasks per engine {sorted(set(per_engine.values()))}",
            f"{seed_tasks} tasks",
            "all ok, 1 task each",
            yes(ok == 50 and set(per_engine.values()) == {1}),
        ),
    ]
    rows += [
        (name, ours, seed, target, yes(met))
        for name, ours, seed, target, met in [
            *wake_rows(f),
            *healthy_rows(f),
            *ten_rows(f, POLL_INTERVAL),
        ]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def yes(value: bool) -> str:
    return "yes" if value else "NO"


if __name__ == "__main__":
    sys.exit(main())
