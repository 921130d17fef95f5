"""EMF metrics: per start its timings and outcome, per stop its reason, read from the log lines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from start_engines.local import Emulator, ManualClock
from tests.conftest import start_event

Invoke = Any


def emf(out: str) -> list[dict[str, Any]]:
    blobs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return blobs


def metric(blobs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    found = []
    for blob in blobs:
        names = [m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
        if name in names:
            found.append(blob)
    return found


def test_start_metrics(aws: Emulator, invoke: Invoke, capsys: pytest.CaptureFixture[str]) -> None:
    body = invoke(start_event("auth", waitForHealthy=True))["body"]
    blobs = emf(capsys.readouterr().out)
    (timing,) = metric(blobs, "TimeToRunning")
    assert timing["Engine"] == "auth"
    assert timing["TimeToRunning"] == [body["timings"]["running"]]
    assert timing["TimeToRegistered"] == [body["timings"]["registered"]]
    assert timing["TimeToHealthy"] == [body["timings"]["healthy"]]
    units = {
        m["Name"]: m["Unit"] for d in timing["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]
    }
    assert units["TimeToRunning"] == "Seconds"
    assert timing["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "StartEngines"
    (starts,) = metric(blobs, "Starts")
    assert (starts["Engine"], starts["Outcome"], starts["Starts"]) == ("auth", "Started", [1.0])


def test_failed_start_and_stop_metrics(
    aws: Emulator, invoke: Invoke, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.lifecycle.plan_next(dies_after=1.0)
    invoke(start_event("pdf"))
    invoke({**start_event("users"), "id": "second"})
    invoke({"detail-type": "Stop ECS Task", "detail": {"service": "users", "reason": "night"}})
    blobs = emf(capsys.readouterr().out)
    outcomes = {(b["Engine"], b["Outcome"]) for b in metric(blobs, "Starts")}
    assert outcomes == {("pdf", "TaskStopped"), ("users", "Started")}
    (failed,) = metric(blobs, "FailedStarts")  # what the FailedStartsAlarm reads
    assert (failed["service"], failed["FailedStarts"]) == ("start-engines", [1.0])
    (stopped,) = metric(blobs, "TasksStopped")
    assert (stopped["Engine"], stopped["Reason"], stopped["TasksStopped"]) == (
        "users",
        "Requested",  # the caller's own text never becomes a dimension value
        [1.0],
    )


def test_reaped_tasks_are_counted_with_a_fixed_reason(
    aws: Emulator,
    invoke: Invoke,
    clock: ManualClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FA_IDLE_MINUTES", "30")
    invoke(start_event("fa"))
    clock.advance(40 * 60)
    capsys.readouterr()
    invoke({"detail-type": "Reap Idle Engines", "detail": {"service": "fa"}})
    (stopped,) = metric(emf(capsys.readouterr().out), "TasksStopped")
    assert (stopped["Engine"], stopped["Reason"], stopped["TasksStopped"]) == ("fa", "Idle", [1.0])
