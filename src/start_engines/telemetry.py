"""CloudWatch metrics in Embedded Metric Format (Powertools), from a command's answer.

Per start: TimeToRunning, TimeToRegistered, TimeToHealthy (seconds; dimension Engine) and a
Starts count with dimensions Engine and Outcome (Started, Reused, HandedOff, or the errorType).
Per stop, and per engine the reaper stops: TasksStopped with dimensions Engine and Reason
(Requested, Idle or MaxLifetime). FailedStarts (dimension service) counts the 5xx starts, for
an alarm. Every dimension value comes from a fixed set: each new value
is a new custom metric, paid for, so no caller's text ever becomes one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from start_engines.errors import error_types

if TYPE_CHECKING:
    from start_engines.engines import Outcome
    from start_engines.events import Command

NAMESPACE = "StartEngines"
TIMINGS = {"running": "TimeToRunning", "registered": "TimeToRegistered", "healthy": "TimeToHealthy"}
REQUESTED, IDLE, MAX_LIFETIME = "Requested", "Idle", "MaxLifetime"
SERVICE = "start-engines"


def namespace() -> str:
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE


def record(command: Command, outcome: Outcome) -> None:
    results = outcome.body.get("results") or [{**outcome.body, "statusCode": outcome.status_code}]
    for result in results:
        engine = result.get("service")
        if not isinstance(engine, str):
            continue
        if command.kind == "start":
            _start(engine, result)
        elif command.kind == "stop" and result.get("tasksStopped"):
            _count("TasksStopped", int(result["tasksStopped"]), Engine=engine, Reason=REQUESTED)
        elif command.kind == "reap" and result.get("action") == "stopped":
            reason = MAX_LIFETIME if result.get("reason") == "max lifetime" else IDLE
            _count("TasksStopped", len(result.get("taskIds", [])), Engine=engine, Reason=reason)


def _start(engine: str, result: dict[str, Any]) -> None:
    status = int(result.get("statusCode", 200))
    timings = result.get("timings") or {}
    if status == 200 and timings:
        metrics = EphemeralMetrics(namespace=namespace(), service="start-engines")
        metrics.add_dimension(name="Engine", value=engine)
        for key, name in TIMINGS.items():
            if key in timings:
                metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=float(timings[key]))
        metrics.flush_metrics()
    if status >= 400:
        error_type = result.get("errorType")
        outcome = error_type if error_type in error_types() else "Failed"
    elif status == 202:
        outcome = "HandedOff"
    else:
        outcome = "Reused" if result.get("reused") else "Started"
    _count("Starts", 1, Engine=engine, Outcome=outcome)
    if status >= 500:  # ours or AWS's to fix, not a caller's mistake or a stop: the alarm's
        _count("FailedStarts", 1, service=SERVICE)


def wake_latency(engine: str, seconds: float) -> None:
    """WakeLatency: a sleeping engine's first request to its rule switched to the engine."""
    if is_metrics_disabled():
        return
    with single_metric(
        name="WakeLatency", unit=MetricUnit.Seconds, value=seconds, namespace=namespace()
    ) as metric:
        metric.add_dimension(name="Engine", value=engine)


def _count(name: str, value: int, **dimensions: str) -> None:
    if is_metrics_disabled():  # Powertools' own switch; single_metric does not check it
        return
    with single_metric(
        name=name, unit=MetricUnit.Count, value=value, namespace=namespace()
    ) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)
