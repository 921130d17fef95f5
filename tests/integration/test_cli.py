"""The `start-engines` console script, run as a subprocess against the embedded AWS."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from start_engines.local import Emulator, ManualClock
from start_engines.rules import forward_actions
from tests.integration.helpers import live_tasks, targets

SCRIPT = Path(sys.executable).parent / "start-engines"


@pytest.fixture
def cli_env(aws: Emulator, clock: ManualClock) -> Iterator[dict[str, str]]:
    """The emulator's clock runs 10x faster than real time while a CLI process waits on it."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.01):
            clock.advance(0.1)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    yield dict(os.environ)
    stop.set()
    ticker.join()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_start_status_stop_for_a_person(aws: Emulator, cli_env: dict[str, str]) -> None:
    started = cli(cli_env, "start", "auth")
    assert started.returncode == 0, started.stderr
    assert "at " in started.stdout and ":8080, health initial" in started.stdout
    assert "is RUNNING" in started.stderr  # live progress while it waits
    assert "registered in 1 target group(s)" in started.stderr
    ip = targets(aws, "auth")[0][0]
    assert ip in started.stdout

    status = cli(cli_env, "status")
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[0].split() == ["ENGINE", "READY", "TASKS", "TARGETS"]
    auth_row = next(line for line in lines if line.startswith("auth"))
    assert "RUNNING" in auth_row and ip in auth_row

    stopped = cli(cli_env, "stop", "auth")
    assert stopped.returncode == 0
    assert "auth: stopped: 1 task(s) stopped, 1 target(s) deregistered" in stopped.stdout
    assert live_tasks(aws, "auth-cluster") == []


def test_json_output(aws: Emulator, cli_env: dict[str, str]) -> None:
    started = cli(cli_env, "--json", "start", "pdf")
    assert started.returncode == 0, started.stderr
    answer = json.loads(started.stdout)
    assert answer["statusCode"] == 200
    assert answer["body"]["service"] == "pdf" and answer["body"]["port"] == 9080
    assert started.stderr == ""  # no progress lines in machine mode
    status = json.loads(cli(cli_env, "status", "pdf", "--json").stdout)
    assert status["body"]["results"][0]["tasks"][0]["taskId"] == answer["body"]["taskId"]


def test_exit_codes(aws: Emulator, cli_env: dict[str, str]) -> None:
    unknown = cli(cli_env, "start", "payroll")
    assert unknown.returncode == 2
    assert "Unknown engine 'payroll'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    usage = cli(cli_env, "launch", "auth")
    assert usage.returncode == 2
    bad_option = cli(cli_env, "start", "auth", "--count", "99")
    assert bad_option.returncode == 2
    assert "count" in bad_option.stderr

    aws.lifecycle.plan_next("fa-cluster", dies_after=1.0)
    failed = cli(cli_env, "start", "fa")
    assert failed.returncode == 1
    line = next(x for x in failed.stderr.splitlines() if "TaskStopped" in x)
    assert line.startswith("start-engines: fa: TaskStopped: ")  # one line, naming the engine
    assert "exit codes fa-app=1" in line  # words, not a Python dict
    assert "(cleaned up: stopped task " in line and "removed 0 target(s))" in line
    assert failed.stdout == ""
    assert "Traceback" not in failed.stderr + failed.stdout


def test_a_task_id_that_is_not_live_is_a_failure_not_bad_usage(
    aws: Emulator, cli_env: dict[str, str]
) -> None:
    result = cli(cli_env, "stop", "auth", "--task-id", "0123456789abcdef")
    assert result.returncode == 1
    assert result.stderr.startswith("start-engines: auth: NoSuchTask: ")
    assert len(result.stderr.splitlines()) == 1


def test_an_engine_aws_refuses_is_named_not_none(aws: Emulator, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "AUTH_CLUSTER": "no-such-cluster"}
    result = cli(env, "status", "auth", "pdf")
    assert result.returncode == 1
    assert result.stderr.startswith("start-engines: auth: AwsError: ")
    assert "None" not in result.stdout + result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["ENGINE", "pdf"]


def test_version(cli_env: dict[str, str]) -> None:
    result = cli(cli_env, "--version")
    assert (result.returncode, result.stdout.strip()) == (0, "start-engines 0.1.0")


def test_a_start_of_two_tasks_names_both(aws: Emulator, cli_env: dict[str, str]) -> None:
    result = cli(cli_env, "start", "batch", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("task ") == 2
    for task_arn in live_tasks(aws, "batch-cluster"):
        assert task_arn.rsplit("/", 1)[1] in result.stdout


def test_no_region_is_a_clear_message(aws: Emulator, cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    result = cli(env, "status")
    assert result.returncode == 1
    assert "You must specify a region" in result.stderr
    assert "Traceback" not in result.stderr


def test_endpoint_url_flag(aws: Emulator, cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "AWS_ENDPOINT_URL"}
    began = time.monotonic()
    result = cli(env, "--endpoint-url", aws.endpoint_url, "status", "auth", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["body"]["results"][0]["service"] == "auth"
    assert time.monotonic() - began < 60


def test_reap_dry_run(aws: Emulator, cli_env: dict[str, str]) -> None:
    assert cli(cli_env, "start", "fa").returncode == 0
    aws.lifecycle.mutations.clear()
    # the CLI runs on the real clock, the emulator on the test's: keep ages out of it
    result = cli({**cli_env, "FA_IDLE_MINUTES": "off"}, "reap", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "fa: kept: idle stop is off (idleMinutes null)\n"
    assert aws.lifecycle.mutations == []
    answer = json.loads(cli(cli_env, "reap", "fa", "--dry-run", "--json").stdout)
    assert answer["body"]["dryRun"] is True


def test_the_demo_reads_as_a_story() -> None:
    """`make demo`'s run, idling faster: the deployed story in order, each line stamped with
    the emulated and the real time, no raw log or metric lines."""
    result = subprocess.run(
        [str(SCRIPT), "demo", "--start-seconds", "5", "--idle-speed", "600"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"_aws"' not in out and '"level"' not in out  # metrics and logs stay in the workers
    steps = [
        "1. Deployed infra/alb.yaml and template.yaml",
        "StartEnginesFunction: start_engines.lambda_function.lambda_handler",
        "2. The .NET app sends its event (PutEvents)",
        "PutEvents: FailedEntryCount 0",
        "Engine Ready on the queue: Engine 'auth' started at 10.",
        ": healthy",
        "GET /api/auth/login -> 200",
        "GET /api/pdf/report -> 503 starting",
        "(the waiting page)",
        "GET /api/pdf/report -> 200 from pdf's task",
        "reaper: auth stopped (idle for 5 min)",
        "auth and pdf stopped, out of their target groups",
        "pdf sleeps again: its next request -> 503 starting",
    ]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions, [s for s, at in zip(steps, positions, strict=True) if at < 0]
    assert positions == sorted(positions)
    stamped = [line for line in out.splitlines() if line.startswith("  [")]
    assert all(re.match(r"  \[\s*\d+:\d\d \|\s*[\d.]+s\] ", line) for line in stamped)
    assert out.rstrip().splitlines()[-1].startswith("Done: ")


def test_the_emulators_own_help_names_it_and_says_how_to_use_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "start_engines.local", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m start_engines.local ")
    assert "paste them into another shell" in result.stdout
    assert "--print-env" not in result.stdout


def test_config_check_with_nothing_configured_fails_and_says_what_to_set(
    aws: Emulator, cli_env: dict[str, str]
) -> None:
    env = {k: v for k, v in cli_env.items() if not k.endswith("_TARGET_GROUP_ARN")}
    result = cli(env, "config", "check")
    assert result.returncode == 1
    rows = result.stdout.splitlines()
    auth = next(row for row in rows if row.split()[1] == "auth")
    problem, fix = auth.split("  set ", 1)
    assert problem.split(None, 2)[2].strip() == "engine 'auth' has no target group"
    assert fix.startswith("AUTH_TARGET_GROUP_ARN to the engine's target group ARN(s)")
    assert any("no engine is configured" in row for row in rows)


def test_ctrl_c_during_a_start_cleans_up_and_says_so(
    aws: Emulator, cli_env: dict[str, str]
) -> None:
    aws.lifecycle.plan_next("users-cluster", running_after=float("inf"))  # it waits for ever
    process = subprocess.Popen(
        [str(SCRIPT), "start", "users"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as in a person's terminal: a non-interactive parent (CI) may have SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    assert process.stderr is not None
    for line in process.stderr:  # the live progress, until RunTask has answered
        if "RunTask accepted" in line:
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    (task_arn,) = all_tasks(aws, "users-cluster")
    task_id = task_arn.rsplit("/", 1)[1]
    assert f"start-engines: users: interrupted: stopped task {task_id}, removed 0 target(s)" in err
    assert "Traceback" not in err
    assert live_tasks(aws, "users-cluster") == []
    again = cli(cli_env, "start", "users")  # no failure cooldown after a person's Ctrl-C
    assert "StartFailedElsewhere" not in again.stderr


def all_tasks(aws: Emulator, cluster: str) -> list[str]:
    ecs = aws.clients().ecs
    return list(ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"])


def test_json_mode_keeps_warnings_off_stderr_and_text_mode_shows_the_answers_as_notes(
    aws: Emulator, cli_env: dict[str, str]
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "LEASE_TABLE"}  # a start then warns
    machine = cli(env, "--json", "start", "fa")
    assert machine.returncode == 0, machine.stderr
    assert json.loads(machine.stdout)["body"]["serialised"] is False
    assert machine.stderr == ""
    person = cli(env, "status", "fa")
    assert person.returncode == 0
    stopped = cli(env, "stop", "fa")
    assert "Traceback" not in stopped.stderr
    again = cli(env, "start", "fa")
    assert "start-engines: fa: warning: LEASE_TABLE is not set" in again.stderr


def test_on_a_terminal_progress_is_a_live_coloured_line_and_plain_elsewhere(
    aws: Emulator, cli_env: dict[str, str]
) -> None:
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(SCRIPT), "start", "auth"], env=cli_env, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    seen = b""
    while True:  # read what the terminal shows until the command ends
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        seen += chunk
    process.wait(timeout=60)
    os.close(controller)
    screen = seen.decode()
    assert process.returncode == 0
    assert "\r\x1b[2K" in screen  # the status line is rewritten in place
    assert "\x1b[32mauth\x1b[0m: task " in screen  # the answer, in colour
    piped = cli(cli_env, "start", "auth")  # not a terminal: plain text
    assert "\x1b[" not in piped.stdout + piped.stderr


def test_usage_errors_are_one_line_in_the_command_lines_words(
    aws: Emulator, cli_env: dict[str, str]
) -> None:
    unknown = cli(cli_env, "launch", "auth")
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1
    assert unknown.stderr.startswith("start-engines: argument COMMAND: invalid choice: 'launch'")
    too_many = cli(cli_env, "start", "auth", "--count", "99")
    assert too_many.returncode == 2
    assert too_many.stderr == "start-engines: --count must be a whole number 1-10, got 99\n"


def test_a_reused_tasks_progress_says_it_was_already_running(
    aws: Emulator, cli_env: dict[str, str]
) -> None:
    assert cli(cli_env, "start", "pdf").returncode == 0
    again = cli(cli_env, "start", "pdf")
    assert "registered in 1 target group(s) (already running)" in again.stderr
    assert "(already running)" in again.stdout


def test_a_refused_retry_says_it_was_your_own_start_and_when_to_retry(
    aws: Emulator, cli_env: dict[str, str]
) -> None:
    aws.lifecycle.plan_next("fa-cluster", dies_after=1.0)
    assert cli(cli_env, "start", "fa").returncode == 1
    mine = cli(cli_env, "start", "fa")  # at once: inside the failure cooldown
    assert mine.returncode == 1
    line = mine.stderr.strip().splitlines()[-1]
    assert line.startswith(
        "start-engines: fa: StartFailedElsewhere: your own earlier start of 'fa'"
    )
    assert " s ago: task " in line and line.count("retry in ") == 1


def test_a_second_ctrl_c_exits_at_once_and_says_what_may_be_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first Ctrl-C is answered by the start's cleanup (above); a second one, during that
    cleanup, escapes it: the command must go at once, and say what may be left."""
    import io

    from start_engines import cli as command_line

    def interrupted_again(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(command_line, "run", interrupted_again)
    out, err = io.StringIO(), io.StringIO()
    assert command_line.main(["start", "auth"], out, err) == 130
    assert err.getvalue().startswith("start-engines: interrupted again: tasks this command")
    assert "`start-engines status` shows them" in err.getvalue()
    assert out.getvalue() == ""


def test_status_shows_a_wakeable_engines_routing(aws: Emulator, cli_env: dict[str, str]) -> None:
    provisioned = aws.provisioned
    assert provisioned is not None
    rule = provisioned.rules["pdf"]
    aws.clients().elbv2.modify_rule(
        RuleArn=rule,
        Actions=forward_actions(
            [], [provisioned.wake_target_group], [provisioned.target_groups["pdf"]]
        ),  # type: ignore[arg-type]
    )
    try:
        status = cli({**cli_env, "PDF_LISTENER_RULE_ARN": rule}, "status", "pdf")
    finally:
        aws.clients().elbv2.modify_rule(
            RuleArn=rule,
            Actions=[{"Type": "forward", "TargetGroupArn": provisioned.target_groups["pdf"]}],
        )
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1].split()[:3] == ["pdf", "no,", "asleep"]


def test_the_local_aws_refuses_an_unknown_wakeable_engine() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "start_engines.local", "--wakeable", "pdf,payroll"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown engine(s) payroll" in done.stderr
