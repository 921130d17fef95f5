"""The cold start stays small because the handler's module loads only what every invocation
needs, and an event loads only its own command and use case. Checked on sys.modules of a fresh
interpreter (not on timing: bench/cold.py measures that)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from start_engines import events
from start_engines.commands.stop import StopRequest as StopRequestHome
from start_engines.events import StopRequest, parse_event

# Each of these loads only for the events that need it.
NOT_AT_IMPORT = (
    "boto3",
    "start_engines.commands.start",
    "start_engines.commands.stop",
    "start_engines.commands.status",
    "start_engines.commands.sync",
    "start_engines.commands.reap",
    "start_engines.commands.task_state",
    "start_engines.alb_request",
    "start_engines.wake_target",
    "start_engines.wake_page",
    "start_engines.rules",
    "start_engines.engines.start",
    "start_engines.engines.stop",
    "start_engines.engines.reconcile",
    "start_engines.ecs_handler",
    "start_engines.target_group_handler",
    "start_engines.local",
)

PROBE = """
import gc, json, sys
outside = []  # heavy modules imported with no wide frame on the stack
def heavy_import(event, args):
    if event == "import" and args[0].split(".")[0] in ("botocore", "aws_lambda_powertools"):
        frame = sys._getframe()
        while frame is not None and frame.f_code.co_stacksize < 16_000:
            frame = frame.f_back
        if frame is None:
            outside.append(args[0])
sys.addaudithook(heavy_import)
before = set(sys.modules)
import start_engines.lambda_function
at_import = set(sys.modules)
heavy_outside = list(outside)
gc_after = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
from start_engines.events import parse_event
parse_event({"source": "custom.app", "detail-type": "Stop ECS Task", "detail": {"service": "auth"}})
print(json.dumps({
    "import": sorted(at_import - before),
    "stop": sorted(set(sys.modules) - at_import),
    "gc": gc_after,
    "heavy_outside": heavy_outside,
}))
"""


@pytest.fixture(scope="module")
def loaded() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
        ).stdout
    )
    return found


def test_handler_import_leaves_out_what_only_some_events_need(
    loaded: dict[str, Any],
) -> None:
    assert "start_engines.lambda_function" in loaded["import"]
    assert "botocore.session" in loaded["import"]  # every invocation's clients: loaded at init
    assert "aws_lambda_powertools" in loaded["import"]  # every invocation logs
    early = [name for name in NOT_AT_IMPORT if name in loaded["import"]]
    assert early == []


def test_heavy_imports_run_inside_one_wide_frame(loaded: dict[str, Any]) -> None:
    """botocore and Powertools load under the frame that holds one data-stack chunk for all
    their nested imports (see lambda_function: no chunk mapped and unmapped per swing)."""
    from start_engines.lambda_function import WIDE_FRAME_SLOTS

    assert WIDE_FRAME_SLOTS >= 16_000  # what the probe looks for
    assert "botocore.session" in loaded["import"]
    assert loaded["heavy_outside"] == []


def test_an_event_loads_only_its_own_command(loaded: dict[str, Any]) -> None:
    commands = [name for name in loaded["stop"] if name.startswith("start_engines.commands.")]
    assert commands == ["start_engines.commands.stop"]


def test_commands_are_still_imported_from_events() -> None:
    assert StopRequest is StopRequestHome
    command = parse_event(
        {"source": "custom.app", "detail-type": "Stop ECS Task", "detail": {"service": "auth"}}
    )
    assert type(command) is StopRequestHome
    assert command.kind == "stop"
    with pytest.raises(AttributeError, match="NoSuchCommand"):
        getattr(events, "NoSuchCommand")  # noqa: B009


def test_the_import_collects_no_garbage_and_leaves_the_collector_on(
    loaded: dict[str, Any],
) -> None:
    assert loaded["gc"]["enabled"] is True
    assert loaded["gc"]["frozen"] > 0  # what the imports built is out of every later collection


def test_a_collector_switched_off_by_the_host_stays_off() -> None:
    code = "import gc; gc.disable(); import start_engines.lambda_function; print(gc.isenabled())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
