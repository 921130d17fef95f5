"""One embedded AWS (moto server over HTTP) for the whole run, on a clock the tests move."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from start_engines import lambda_function
from start_engines.config import ENGINE_KEYS, SERVICE_MAPPINGS, env_prefix
from start_engines.local import Emulator, ManualClock
from start_engines.local.clock import SharedClock
from start_engines.local.context import LambdaContext

if TYPE_CHECKING:
    from collections.abc import Iterator

EVENTS = Path(__file__).resolve().parent.parent / "events"
START_SECONDS = 4.0
HEALTH_SECONDS = 10.0
STOP_SECONDS = 2.0


@pytest.fixture(scope="session")
def clock() -> ManualClock:
    return SharedClock()


@pytest.fixture(scope="session")
def emulator(clock: ManualClock) -> Iterator[Emulator]:
    emu = Emulator(
        clock=clock,
        start_seconds=START_SECONDS,
        health_seconds=HEALTH_SECONDS,
        stop_seconds=STOP_SECONDS,
    )
    emu.start()
    emu.provision()  # forgets its own mutations: a test sees its own changes
    yield emu
    emu.stop()


@pytest.fixture
def aws(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The emulator, with this process's environment pointing at it; scrubbed afterwards."""
    for name in SERVICE_MAPPINGS:
        for suffix in ENGINE_KEYS.values():
            monkeypatch.delenv(f"{env_prefix(name)}_{suffix}", raising=False)
    for var in ("ENGINES_CONFIG", "ASSIGN_PUBLIC_IP", "SUBNETS", "SECURITY_GROUPS"):
        monkeypatch.delenv(var, raising=False)
    assert emulator.provisioned is not None
    for key, value in {**emulator.aws_environ(), **emulator.provisioned.environ()}.items():
        monkeypatch.setenv(key, value)
    yield emulator
    emulator.lifecycle.scrub()


@pytest.fixture
def invoke(aws: Emulator, clock: ManualClock) -> Iterator[Any]:
    """Call lambda_handler as Lambda would, with the test clock behind every wait."""
    runtime = lambda_function.Runtime(aws.clients(), clock)

    def call(event: Any, timeout: float = 900.0) -> dict[str, Any]:
        # set on every call: a helper that reset it would otherwise put the test on real time
        lambda_function.use_runtime(runtime)
        return lambda_function.lambda_handler(event, LambdaContext(clock, timeout))

    yield call
    lambda_function.use_runtime(None)


@pytest.fixture
def deliver(aws: Emulator, clock: ManualClock) -> Iterator[Any]:
    """The task-state entry point, as the deployed aws.ecs rule invokes it."""

    def call(event: dict[str, Any]) -> dict[str, Any]:
        return lambda_function.task_state_handler(event, LambdaContext(clock, 60))

    yield call


def start_event(service: Any = "auth", **detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "test-event",
        "source": "custom.app",
        "detail-type": "Start ECS Task",
        "detail": {"service": service, **detail},
    }


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event
