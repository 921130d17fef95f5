"""The deployed stack, run on the emulator: one end-to-end test per way in, through the wiring
CloudFormation created (rules, targets, permissions, environment), never by calling
lambda_handler here. Each function runs in its own worker process (local/workers.py)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from start_engines import lambda_function
from start_engines.local import Emulator, ManualClock
from start_engines.local.emulator import REGION
from start_engines.local.iam_calls import Account, EcsTaskDefinitions, authorizations, read_calls
from start_engines.local.iam_policy import evaluate
from start_engines.local.stack import queue_messages, subscribe_queue
from tests.conftest import START_SECONDS
from tests.infra.stacks import role_policies

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from start_engines.local.stack import DeployedStack

SEED = {"Source": "custom.app", "DetailType": "Start ECS Task", "Detail": '{"service": "auth"}'}
ENGINES_CONFIG = {"auth": {"idleMinutes": 10, "minUptimeMinutes": 5}}


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("calls")


@pytest.fixture(scope="module")
def stack(emulator: Emulator, record_dir: Path) -> Iterator[DeployedStack]:
    """Both templates deployed once for the module, with every optional way in, each
    function's AWS calls recorded; afterwards the emulator is reset (the stack's rules would
    stay on its default bus)."""
    emulator.lifecycle.scrub()
    deployed = emulator.deploy_stack(
        record_dir,
        wakeable=("pdf",),
        CreateStateMachine="true",
        EnginesConfig=json.dumps(ENGINES_CONFIG),
        MorningStartSchedule="cron(0 7 ? * MON-FRI *)",
        EveningStopSchedule="cron(0 19 ? * MON-FRI *)",
    )
    yield deployed
    try:
        denied = denied_calls(emulator, deployed, record_dir)
    finally:
        emulator.reset()
    assert denied == [], "calls the deployed roles deny"


ROLES = {"StartEnginesFunction": "StartEnginesRole", "TaskStateFunction": "TaskStateRole"}


def denied_calls(emulator: Emulator, deployed: DeployedStack, record_dir: Path) -> list[str]:
    """Every AWS call the workers recorded while the module ran, against its function's role
    as deployed (local/iam_policy.py): what the roles deny. The same evaluation as
    test_iam_proof, here on the calls of the functions as deployed."""
    clients = emulator.clients()
    account = Account(REGION, clients._client("sts").get_caller_identity()["Account"])
    definitions = EcsTaskDefinitions(clients.ecs)
    stack_name = deployed.sam["StackName"]
    policies = {role: role_policies(emulator, stack_name, role) for role in ROLES.values()}
    calls = read_calls(record_dir)
    assert set(calls) == set(ROLES), calls.keys()  # both functions made calls
    return [
        f"{function}: {call.service} {call.operation} needs {request.action} on "
        f"{request.resource} ({result.decision.value})"
        for function, made in calls.items()
        for call in made
        for request in authorizations(call, account, definitions)
        if not (result := evaluate(policies[ROLES[function]], request)).allowed
    ]


@pytest.fixture
def deployed(emulator: Emulator, stack: DeployedStack) -> Iterator[DeployedStack]:
    """The stack, with the in-process entry points out of reach: whatever runs, runs in the
    workers. Tasks, targets and leases are scrubbed afterwards."""
    saved = lambda_function.lambda_handler, lambda_function.task_state_handler
    lambda_function.lambda_handler = _not_here  # type: ignore[assignment]
    lambda_function.task_state_handler = _not_here  # type: ignore[assignment]
    try:
        yield stack
    finally:
        lambda_function.lambda_handler, lambda_function.task_state_handler = saved
        emulator.stop_delivering()
        assert emulator.workers is not None
        emulator.workers.drain()
        emulator.lifecycle.scrub()


def _not_here(*_: Any) -> Any:
    raise AssertionError("a handler ran in the test process, not in the deployed function")


def worker(emulator: Emulator, logical_id: str) -> Any:
    assert emulator.workers is not None
    return emulator.workers.worker(logical_id)


def registered(emulator: Emulator, group_arn: str) -> list[str]:
    health = emulator.clients().elbv2.describe_target_health(TargetGroupArn=group_arn)
    return [
        t["Target"]["Id"]
        for t in health["TargetHealthDescriptions"]
        if t["TargetHealth"]["State"] != "draining"
    ]


def task_ips(emulator: Emulator, cluster: str) -> list[str]:
    ecs = emulator.clients().ecs
    arns = ecs.list_tasks(cluster=cluster)["taskArns"]
    if not arns:
        return []
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
    return [
        d["value"]
        for t in tasks
        if t["lastStatus"] == "RUNNING"
        for a in t.get("attachments", [])
        for d in a["details"]
        if d["name"] == "privateIPv4Address"
    ]


# --- PutEvents -> the deployed Commands rule -> StartEnginesFunction -------------------------


def test_put_events_of_the_seed_starts_auth(
    emulator: Emulator, deployed: DeployedStack, record_dir: Path
) -> None:
    ready = subscribe_queue(emulator.clients(), "engine-ready", "Engine Ready")
    events = emulator.clients().events
    start = worker(emulator, "StartEnginesFunction")
    before, pid = len(start.invocations), start.pid

    other = {**SEED, "Source": "other.app"}
    assert events.put_events(Entries=[other])["FailedEntryCount"] == 0
    emulator.workers.drain()  # type: ignore[union-attr]
    assert len(start.invocations) == before  # no rule took it: not Commands, not a schedule
    assert ("RunTask", "auth-cluster") not in emulator.lifecycle.mutations

    assert events.put_events(Entries=[SEED])["FailedEntryCount"] == 0
    emulator.workers.drain()  # type: ignore[union-attr]
    (event,) = start.invocations[before:]  # once, and only through the Commands rule
    assert (event["source"], event["detail-type"], event["detail"]) == (
        "custom.app",
        "Start ECS Task",
        {"service": "auth"},
    )
    assert start.failures == []
    assert start.pid == pid  # warm: the same process as before
    assert ("RunTask", "auth-cluster") in emulator.lifecycle.mutations
    (ip,) = task_ips(emulator, "auth-cluster")
    assert registered(emulator, deployed.alb_outputs["AuthTargetGroupArns"]) == [ip]
    (message,) = queue_messages(emulator.clients(), ready)
    assert message["detail-type"] == "Engine Ready"
    assert (message["detail"]["service"], message["detail"]["privateIp"]) == ("auth", ip)
    # what the function called, as the IAM evaluator reads it
    lines = (record_dir / "StartEnginesFunction.jsonl").read_text().splitlines()
    calls = [json.loads(line) for line in lines]
    run_task = [c for c in calls if (c["service"], c["operation"]) == ("ecs", "RunTask")]
    assert [c["params"]["cluster"] for c in run_task] == ["auth-cluster"]
    assert {"service": "elbv2", "operation": "RegisterTargets"} in [
        {k: c[k] for k in ("service", "operation")} for c in calls
    ]


# --- ECS Task State Change -> the deployed aws.ecs rule -> TaskStateFunction -----------------


def invoke(emulator: Emulator, payload: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Invoke StartEnginesFunction through the Lambda API, as a caller would."""
    assert emulator.stack is not None
    function = emulator.stack.functions["StartEnginesFunction"].arn
    answer = (
        emulator.clients()
        ._client("lambda")
        .invoke(FunctionName=function, Payload=json.dumps(payload))
    )
    return json.loads(answer["Payload"].read()), answer.get("FunctionError")


def test_ecs_events_register_an_async_start_with_nobody_polling(
    emulator: Emulator, deployed: DeployedStack, clock: ManualClock
) -> None:
    emulator.watch_task_events(duplicate=True)  # at least once: each event twice
    answer, error = invoke(emulator, {"action": "start", "service": "users", "async": True})
    assert (error, answer["statusCode"]) == (None, 202), answer
    group = deployed.alb_outputs["UsersTargetGroupArns"]
    assert registered(emulator, group) == []  # handed off: nobody waits for RUNNING

    clock.advance(START_SECONDS)
    assert emulator.pump_task_events() == 2  # RUNNING, delivered twice
    emulator.workers.drain()  # type: ignore[union-attr]
    (ip,) = task_ips(emulator, "users-cluster")
    assert registered(emulator, group) == [ip]
    task_state = worker(emulator, "TaskStateFunction")
    first, second = task_state.invocations[-2:]
    assert first == second  # the same event, id and all
    assert (first["source"], first["detail-type"]) == ("aws.ecs", "ECS Task State Change")
    assert first["detail"]["lastStatus"] == "RUNNING"
    assert task_state.failures == []


def test_out_of_order_ecs_events_leave_a_stopped_task_unregistered(
    emulator: Emulator, deployed: DeployedStack, clock: ManualClock
) -> None:
    """STOPPED arrives before RUNNING: the late RUNNING must not register a dead task."""
    emulator.watch_task_events(reorder=True)
    answer, error = invoke(emulator, {"action": "start", "service": "fa", "async": True})
    assert (error, answer["statusCode"]) == (None, 202), answer
    (arn,) = emulator.clients().ecs.list_tasks(cluster="fa-cluster")["taskArns"]
    clock.advance(START_SECONDS)
    assert emulator.pump_task_events() == 0  # RUNNING is held back
    emulator.lifecycle.kill(arn)
    clock.advance(1.0)
    assert emulator.pump_task_events() == 2  # STOPPED, then the late RUNNING
    emulator.workers.drain()  # type: ignore[union-attr]
    statuses = [
        e["detail"]["lastStatus"] for e in worker(emulator, "TaskStateFunction").invocations[-2:]
    ]
    assert statuses == ["STOPPED", "RUNNING"]
    assert registered(emulator, deployed.alb_outputs["FaTargetGroupArns"]) == []


# --- schedules, on the emulator's clock ------------------------------------------------------


def test_the_reaper_schedule_stops_an_idle_engine(
    emulator: Emulator, deployed: DeployedStack, clock: ManualClock
) -> None:
    answer, error = invoke(emulator, {"action": "start", "service": "auth"})
    assert (error, answer["statusCode"]) == (None, 200), answer
    schedules = emulator.schedules
    assert schedules is not None
    reap_rule = deployed.physical_id("ReapRule")
    group = deployed.alb_outputs["AuthTargetGroupArns"]
    start = worker(emulator, "StartEnginesFunction")

    clock.advance(5 * 60)  # rate(5 minutes): due once in any five minutes
    assert reap_rule in schedules.fire_due()
    emulator.workers.drain()  # type: ignore[union-attr]
    assert start.invocations[-1] == {
        "source": "start-engines.schedule",
        "detail-type": "Reap Idle Engines",
        "detail": {},
    }  # the rule's Input, not the Scheduled Event
    assert len(registered(emulator, group)) == 1  # too young to be idle: kept
    due = max(at for at, name in schedules.fired if name == reap_rule)

    clock.advance((due + timedelta(minutes=5) - clock.wall()).total_seconds() - 1)
    assert reap_rule not in schedules.fire_due()  # a second early

    clock.advance(10 * 60 + 1)  # idle for over 13 minutes: idleMinutes 10 + metrics delay
    assert schedules.fire_due().count(reap_rule) == 1  # two periods passed: fired once
    emulator.workers.drain()  # type: ignore[union-attr]
    assert start.failures == []
    assert [m[0] for m in emulator.lifecycle.mutations if m[0] == "StopTask"] == ["StopTask"]
    assert registered(emulator, group) == []


def test_the_morning_and_evening_schedules_start_and_stop_the_scheduled_engines(
    emulator: Emulator, deployed: DeployedStack, clock: ManualClock
) -> None:
    assert emulator.schedules is not None
    wall = clock.wall()
    morning = wall.replace(hour=7, minute=0, second=0, microsecond=0)
    while morning <= wall + timedelta(minutes=1) or morning.weekday() >= 5:
        morning += timedelta(days=1)  # the next weekday's 07:00 UTC
    clock.advance((morning - wall).total_seconds() - 60)
    emulator.schedules.fire_due()  # whatever came due on the way (the evening stop, say)
    emulator.workers.drain()  # type: ignore[union-attr]
    clock.advance(60)
    fired = emulator.schedules.fire_due()
    assert deployed.physical_id("MorningStartRule") in fired
    assert deployed.physical_id("EveningStopRule") not in fired
    emulator.workers.drain()  # type: ignore[union-attr]
    start = worker(emulator, "StartEnginesFunction")
    assert {
        "source": "start-engines.schedule",
        "detail-type": "Start ECS Task",
        "detail": {"services": ["auth"]},
    } in start.invocations  # the rule's Input, ScheduledEngines joined into a list
    assert ("RunTask", "auth-cluster") in emulator.lifecycle.mutations  # ScheduledEngines: auth
    (ip,) = task_ips(emulator, "auth-cluster")
    assert registered(emulator, deployed.alb_outputs["AuthTargetGroupArns"]) == [ip]

    clock.advance(12 * 3600)  # 19:00 the same weekday
    fired = emulator.schedules.fire_due()
    assert deployed.physical_id("EveningStopRule") in fired
    emulator.workers.drain()  # type: ignore[union-attr]
    evening = {
        "source": "start-engines.schedule",
        "detail-type": "Stop ECS Tasks",
        "detail": {"services": ["auth"], "reason": "evening schedule"},
    }
    last = max(i for i, event in enumerate(start.invocations) if event == evening)
    answer = start.answers[last]
    assert answer.function_error is None
    assert answer.payload["statusCode"] == 200, answer.payload
    (result,) = answer.payload["body"]["results"]  # it stopped auth, not the reaper after it
    assert (result["service"], result["status"], result["tasksStopped"]) == ("auth", "stopped", 1)
    assert registered(emulator, deployed.alb_outputs["AuthTargetGroupArns"]) == []
    ecs = emulator.clients().ecs
    (task,) = ecs.describe_tasks(cluster="auth-cluster", tasks=result["taskIds"])["tasks"]
    assert task["desiredStatus"] == "STOPPED"


def test_a_schedule_the_emulator_cannot_evaluate_is_skipped_alone(
    emulator: Emulator, deployed: DeployedStack, clock: ManualClock
) -> None:
    """Someone else's rule with `cron(0 12 L * ? *)` (valid on AWS, not emulated) in the
    account: it is skipped, and the stack's reaper still fires (the adversary's finding)."""
    events = emulator.clients().events
    events.put_rule(Name="month-end", ScheduleExpression="cron(0 12 L * ? *)")
    schedules = emulator.schedules
    assert schedules is not None
    try:
        schedules.fire_due()  # counted from now
        noon = clock.wall().replace(hour=12, minute=0, second=0, microsecond=0)
        if noon <= clock.wall():
            noon += timedelta(days=1)
        clock.advance((noon - clock.wall()).total_seconds() + 5 * 60)
        assert deployed.physical_id("ReapRule") in schedules.fire_due()
        assert [r for r in schedules.skipped if r.endswith("/month-end")]
        clock.advance(5 * 60)
        assert deployed.physical_id("ReapRule") in schedules.fire_due()
    finally:
        events.delete_rule(Name="month-end")
        assert emulator.workers is not None
        emulator.workers.drain()


# --- Step Functions: the sample state machine, run by moto's ASL interpreter -----------------


def run_state_machine(emulator: Emulator, deployed: DeployedStack, service: Any) -> dict[str, Any]:
    """StartExecution, then wait (real time, bounded) for the interpreter to finish."""
    sfn = emulator.clients()._client("stepfunctions")
    arn = deployed.sam_outputs["StateMachineArn"]
    execution = sfn.start_execution(
        stateMachineArn=arn, name=str(uuid.uuid4()), input=json.dumps({"service": service})
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.05)
    raise AssertionError("the execution did not finish within 60 s")


def test_state_machine_retries_a_start_that_failed_elsewhere_then_succeeds(
    emulator: Emulator, deployed: DeployedStack, clock: ManualClock
) -> None:
    emulator.lifecycle.plan_next("batch-cluster", dies_after=1.0)
    answer, error = invoke(emulator, {"action": "start", "service": "batch"})
    assert error == "Unhandled" and answer["errorType"] == "TaskStopped", answer
    assert emulator.wiring is not None
    waits_before = len(emulator.wiring.sfn_waits)
    emulator.deliver_task_events(every=0.02)  # the async start is registered by ECS events

    described = run_state_machine(emulator, deployed, "batch")

    assert described["status"] == "SUCCEEDED", described
    waits = emulator.wiring.sfn_waits[waits_before:]
    assert waits[0] == 15.0  # StartFailedElsewhere's Retry interval, on the emulator's clock
    assert set(waits[1:]) == {10.0}  # then the Wait state between status checks
    start = worker(emulator, "StartEnginesFunction")
    starts = [e for e in start.invocations if e.get("action") == "start"]
    assert starts[-2:] == [{"action": "start", "service": "batch", "async": True}] * 2
    output = json.loads(described["output"])
    assert output["status"]["engine"]["ready"] is True
    (ip,) = task_ips(emulator, "batch-cluster")
    assert registered(emulator, deployed.alb_outputs["BatchTargetGroupArns"]) == [ip]


def test_state_machine_catches_a_bad_event(emulator: Emulator, deployed: DeployedStack) -> None:
    described = run_state_machine(emulator, deployed, ["auth"])  # not an engine's name
    assert described["status"] == "FAILED", described
    assert described["error"] == "BadRequest"  # the Rejected state, reached by the Catch
    sfn = emulator.clients()._client("stepfunctions")
    history = sfn.get_execution_history(executionArn=described["executionArn"])["events"]
    failed = [e for e in history if e["type"] == "LambdaFunctionFailed"] + [
        e for e in history if e["type"] == "TaskFailed"
    ]
    assert failed and "BadEvent" in json.dumps(failed[0], default=str)
    assert not [m for m in emulator.lifecycle.mutations if m[0] == "RunTask"]


# --- the ALB front door: a wakeable engine's first request -> Invoke ------------------------


def test_first_request_to_a_sleeping_engine_invokes_the_deployed_function(
    emulator: Emulator, deployed: DeployedStack
) -> None:
    import urllib.error
    import urllib.request

    start = worker(emulator, "StartEnginesFunction")
    before = len(start.invocations)
    with emulator.front_door() as door:
        request = urllib.request.Request(
            f"{door.url}/api/pdf/report", headers={"Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
    assert status == 503, (status, body)  # the function's waiting answer, through ALB
    answer = json.loads(body)
    assert (answer["engine"], answer["state"]) == ("pdf", "starting")
    (event,) = start.invocations[before:]  # through Invoke, in the deployed function's worker
    assert (
        event["requestContext"]["elb"]["targetGroupArn"]
        == deployed.alb_outputs["WakeTargetGroupArn"]
    )
    assert event["path"] == "/api/pdf/report"
    assert ("RunTask", "pdf-cluster") in emulator.lifecycle.mutations  # pdf wakes
