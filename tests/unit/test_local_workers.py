"""A deployed function's worker process: warm, Lambda's error shape, its timeout."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from start_engines.local.workers import FunctionSpec, Workers

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HANDLER = """
import time

def handler(event, context):
    if event.get("hang"):
        time.sleep(30)
    if event.get("fail"):
        raise ValueError("no " + event["fail"])
    return {"name": context.function_name, "left": context.get_remaining_time_in_millis()}
"""


@pytest.fixture
def workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    (tmp_path / "sample_handler.py").write_text(HANDLER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    arn = "arn:aws:lambda:us-east-2:123456789012:function:sample"
    spec = FunctionSpec("Sample", "sample", arn, "sample_handler.handler", {}, 1.0, 128)
    running = Workers([spec], {}, "system").start()
    yield running
    running.stop()


def test_a_worker_answers_warm_and_reports_errors_as_lambda_does(workers: Workers) -> None:
    worker = workers.worker("Sample")
    answer = worker.invoke({})
    assert answer.function_error is None
    assert answer.payload["name"] == "sample"
    assert 0 < answer.payload["left"] <= 1000  # the function's timeout, on the clock
    pid = worker.pid
    failed = worker.invoke({"fail": "luck"})
    assert failed.function_error == "Unhandled"
    assert (failed.payload["errorType"], failed.payload["errorMessage"]) == (
        "ValueError",
        "no luck",
    )
    assert worker.pid == pid  # an exception does not end the process
    assert workers.find("arn:aws:lambda:us-east-2:123456789012:function:sample:$LATEST") is worker


def test_a_hung_function_times_out_and_the_next_call_gets_a_fresh_process(
    workers: Workers,
) -> None:
    worker = workers.worker("Sample")
    pid = worker.invoke({}) and worker.pid
    answer = worker.invoke({"hang": True})
    assert answer.function_error == "Unhandled"
    assert answer.payload["errorType"] == "Sandbox.Timedout"
    worker.invoke_async({})
    workers.drain(timeout=30)
    assert worker.answers[-1].function_error is None
    assert worker.pid not in (None, pid)
