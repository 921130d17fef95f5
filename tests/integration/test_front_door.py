"""The emulator's front door: a real HTTP client against the emulated ALB's listener, routed by
the listener's rules to fixed responses, redirects, Lambda targets and running tasks."""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import HEALTH_SECONDS, START_SECONDS
from tests.integration.helpers import finish_stop, run_foreign_task

if TYPE_CHECKING:
    from collections.abc import Iterator

    from start_engines.local import Emulator, ManualClock
    from start_engines.local.front_door import FrontDoor

CLUSTER, FAMILY = "auth-cluster", "auth-api-task"
FUNCTION_ARN = "arn:aws:lambda:us-east-2:123456789012:function:engines-wake"
SCRATCH_PATH = "/fd/*"
MB = 1024 * 1024


@dataclass
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeLambda:
    """Stands in for the Lambda runtime behind a `lambda` target: records each event and
    answers what the test sets."""

    answer: Any = None
    raises: Exception | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    def reset(self) -> None:
        self.answer, self.raises = {"statusCode": 200, "body": "ok"}, None
        self.events.clear()
        self.contexts.clear()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        self.contexts.append(context)
        if self.raises is not None:
            raise self.raises
        answer: dict[str, Any] = self.answer
        return answer


def call(
    door: FrontDoor,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", door.port, timeout=10)
    try:
        connection.putrequest(method, path)
        for key, value in headers or []:
            connection.putheader(key, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Answer(response.status, response.reason, response.getheaders(), response.read())
    finally:
        connection.close()


# One door, one fake function and one client for the module: building boto3 clients is
# what would take the time here.
@pytest.fixture(scope="module")
def shared_lambda() -> FakeLambda:
    fake = FakeLambda()
    fake.reset()
    return fake


@pytest.fixture(scope="module")
def shared_door(emulator: Emulator, shared_lambda: FakeLambda) -> Iterator[FrontDoor]:
    with emulator.front_door(invoke=shared_lambda) as front:
        yield front


@pytest.fixture(scope="module", name="elbv2")
def _elbv2(emulator: Emulator) -> Any:
    return emulator.clients().elbv2


@pytest.fixture
def fake_lambda(shared_lambda: FakeLambda) -> FakeLambda:
    shared_lambda.reset()
    return shared_lambda


@pytest.fixture
def door(aws: Emulator, shared_door: FrontDoor, fake_lambda: FakeLambda) -> FrontDoor:
    return shared_door


@pytest.fixture
def scratch_rule(aws: Emulator, elbv2: Any) -> Iterator[str]:
    """A rule of our own (`/fd/*`), so the shared listener's engine rules stay as they are."""
    assert aws.provisioned is not None
    arn = elbv2.create_rule(
        ListenerArn=aws.provisioned.listener_arn,
        Priority=900,
        Conditions=[{"Field": "path-pattern", "Values": [SCRATCH_PATH]}],
        Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "418"}}],
    )["Rules"][0]["RuleArn"]
    yield arn
    elbv2.delete_rule(RuleArn=arn)


@pytest.fixture
def lambda_group(aws: Emulator, elbv2: Any) -> str:
    """A `lambda` target group with a function registered (moto takes any function ARN)."""
    arn = elbv2.create_target_group(Name=f"fd-{uuid.uuid4().hex[:12]}", TargetType="lambda")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": FUNCTION_ARN}])
    return arn


def forward_to(elbv2: Any, rule_arn: str, *groups: tuple[str, int]) -> None:
    """ModifyRule: the rule forwards to one group, or to several by weight."""
    if len(groups) == 1:
        action: dict[str, Any] = {"Type": "forward", "TargetGroupArn": groups[0][0]}
    else:
        action = {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [{"TargetGroupArn": g, "Weight": w} for g, w in groups]
            },
        }
    elbv2.modify_rule(RuleArn=rule_arn, Actions=[action])


def empty_ip_group(aws: Emulator, elbv2: Any) -> str:
    assert aws.provisioned is not None
    arn: str = elbv2.create_target_group(
        Name=f"fd-{uuid.uuid4().hex[:12]}",
        Protocol="HTTP",
        Port=8080,
        VpcId=aws.provisioned.vpc_id,
        TargetType="ip",
    )["TargetGroups"][0]["TargetGroupArn"]
    return arn


def running_auth_task(aws: Emulator, elbv2: Any, clock: ManualClock) -> tuple[str, str]:
    """A RUNNING auth task registered in the auth target group: (task ARN, its IP)."""
    assert aws.provisioned is not None
    arn = run_foreign_task(aws, CLUSTER, FAMILY)
    clock.advance(START_SECONDS + 0.5)
    ip = aws.lifecycle.plans[arn].ip
    assert ip is not None
    elbv2.register_targets(
        TargetGroupArn=aws.provisioned.target_groups["auth"], Targets=[{"Id": ip, "Port": 8080}]
    )
    return arn, ip


# --- the listener's own answers ----------------------------------------------------------


def test_a_path_no_rule_matches_gets_the_listener_default(door: FrontDoor) -> None:
    answer = call(door, "/nowhere/at/all?x=1")
    assert answer.status == 404
    assert answer.header("Content-Type") == ["text/plain"]
    assert answer.header("Content-Length") == ["0"]


def test_an_engine_without_targets_gets_503(door: FrontDoor) -> None:
    answer = call(door, "/api/auth/x")
    assert answer.status == 503
    assert b"503 Service Unavailable" in answer.body


def test_fixed_response_and_redirect_rules(elbv2: Any, door: FrontDoor, scratch_rule: str) -> None:
    elbv2.modify_rule(
        RuleArn=scratch_rule,
        Actions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {
                    "StatusCode": "200",
                    "ContentType": "application/json",
                    "MessageBody": '{"up": true}',
                },
            }
        ],
    )
    fixed = call(door, "/fd/health")
    assert (fixed.status, fixed.json()) == (200, {"up": True})
    assert fixed.header("Content-Type") == ["application/json"]

    elbv2.modify_rule(
        RuleArn=scratch_rule,
        Actions=[
            {
                "Type": "redirect",
                "RedirectConfig": {"Path": "/v2/#{path}", "StatusCode": "HTTP_301"},
            }
        ],
    )
    moved = call(door, "/fd/page?a=1&b=x%20y")
    assert moved.status == 301
    assert moved.header("Location") == [f"http://127.0.0.1:{door.port}/v2/fd/page?a=1&b=x%20y"]


# --- ip targets: the task behind the IP --------------------------------------------------


def test_a_running_task_answers_until_it_stops(
    aws: Emulator, elbv2: Any, clock: ManualClock, door: FrontDoor
) -> None:
    arn, _ = running_auth_task(aws, elbv2, clock)
    # the target is still `initial`: with no healthy target ALB fails open
    answer = call(door, "/api/auth/login?next=%2Fhome")
    assert answer.status == 200
    assert answer.header("Content-Type") == ["application/json"]
    assert answer.json() == {
        "engine": "auth",
        "taskId": arn.rsplit("/", 1)[-1],
        "path": "/api/auth/login?next=%2Fhome",
    }
    clock.advance(HEALTH_SECONDS)  # healthy now
    assert call(door, "/api/auth/x", method="POST", body=b"{}").status == 200
    assert door.task_server_url(arn) is not None

    aws.clients().ecs.stop_task(cluster=CLUSTER, task=arn, reason="done")
    finish_stop(aws, clock)
    after = call(door, "/api/auth/x")
    assert after.status in (502, 503)
    assert door.task_server_url(arn) is None  # its server went with it


def test_requests_take_turns_over_the_healthy_tasks(
    aws: Emulator, elbv2: Any, clock: ManualClock, door: FrontDoor
) -> None:
    first, _ = running_auth_task(aws, elbv2, clock)
    second, _ = running_auth_task(aws, elbv2, clock)
    clock.advance(HEALTH_SECONDS)
    seen = {call(door, "/api/auth/x").json()["taskId"] for _ in range(4)}
    assert seen == {first.rsplit("/", 1)[-1], second.rsplit("/", 1)[-1]}


# --- lambda targets ----------------------------------------------------------------------


def test_a_lambda_target_gets_albs_event_and_its_answer_reaches_the_client(
    elbv2: Any, door: FrontDoor, fake_lambda: FakeLambda, scratch_rule: str, lambda_group: str
) -> None:
    forward_to(elbv2, scratch_rule, (lambda_group, 1))
    fake_lambda.answer = {
        "statusCode": 201,
        "statusDescription": "201 Created",
        "headers": {"Content-Type": "text/plain", "X-Engine": "wake"},
        "body": "made",
        "isBase64Encoded": False,
    }
    answer = call(
        door,
        "/fd/hello?a=1&a=2&b=x%20y",
        method="POST",
        body=b"hi there",
        headers=[("X-Custom", "Yes"), ("Content-Type", "text/plain")],
    )
    assert (answer.status, answer.reason, answer.body) == (201, "Created", b"made")
    assert answer.header("X-Engine") == ["wake"]

    (event,) = fake_lambda.events
    assert event["requestContext"] == {"elb": {"targetGroupArn": lambda_group}}
    assert (event["httpMethod"], event["path"]) == ("POST", "/fd/hello")
    assert event["queryStringParameters"] == {"a": "2", "b": "x%20y"}  # last wins, undecoded
    headers = event["headers"]
    assert all(name == name.lower() for name in headers)
    assert headers["x-custom"] == "Yes"
    assert headers["host"] == f"127.0.0.1:{door.port}"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-port"] == str(door.port)
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-amzn-trace-id"].startswith("Root=1-")
    assert (event["body"], event["isBase64Encoded"]) == ("hi there", False)
    assert "multiValueHeaders" not in event
    assert fake_lambda.contexts[0].invoked_function_arn == FUNCTION_ARN


def test_binary_bodies_travel_as_base64(
    elbv2: Any, door: FrontDoor, fake_lambda: FakeLambda, scratch_rule: str, lambda_group: str
) -> None:
    forward_to(elbv2, scratch_rule, (lambda_group, 1))
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    fake_lambda.answer = {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(png).decode(),
        "isBase64Encoded": True,
    }
    sent = b"\xff\xfe\x00binary"
    answer = call(door, "/fd/upload", method="PUT", body=sent)
    assert (answer.status, answer.body) == (200, png)
    assert answer.header("Content-Type") == ["image/png"]
    (event,) = fake_lambda.events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == sent
    assert event["queryStringParameters"] == {}


def test_multi_value_headers_when_the_group_says_so(
    elbv2: Any, door: FrontDoor, fake_lambda: FakeLambda, scratch_rule: str, lambda_group: str
) -> None:
    elbv2.modify_target_group_attributes(
        TargetGroupArn=lambda_group,
        Attributes=[{"Key": "lambda.multi_value_headers.enabled", "Value": "true"}],
    )
    forward_to(elbv2, scratch_rule, (lambda_group, 1))
    fake_lambda.answer = {
        "statusCode": 200,
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": "",
    }
    answer = call(door, "/fd/m?k=1&k=2&solo", headers=[("X-Dup", "one"), ("X-Dup", "two")])
    assert answer.status == 200
    assert answer.header("Set-Cookie") == ["a=1", "b=2"]
    (event,) = fake_lambda.events
    assert "headers" not in event
    assert "queryStringParameters" not in event
    assert event["multiValueHeaders"]["x-dup"] == ["one", "two"]
    assert event["multiValueHeaders"]["x-forwarded-proto"] == ["http"]
    assert event["multiValueQueryStringParameters"] == {"k": ["1", "2"], "solo": [""]}


def test_a_request_over_1_mb_gets_413_without_an_invoke(
    elbv2: Any, door: FrontDoor, fake_lambda: FakeLambda, scratch_rule: str, lambda_group: str
) -> None:
    forward_to(elbv2, scratch_rule, (lambda_group, 1))
    assert call(door, "/fd/big", method="POST", body=b"x" * (MB + 1)).status == 413
    assert fake_lambda.events == []
    assert call(door, "/fd/fits", method="POST", body=b"x" * (MB - 1024)).status == 200


@pytest.mark.parametrize(
    ("raises", "answer"),
    [
        (RuntimeError("function crashed"), None),
        (None, {"body": "no status"}),
        (None, "not an object"),
        (None, {"statusCode": "200"}),
        (None, {"statusCode": 200, "body": "x" * (MB + 1)}),
        (None, {"statusCode": 200, "body": "!!", "isBase64Encoded": True}),
    ],
    ids=["raises", "no-status", "not-a-dict", "string-status", "over-1-mb", "bad-base64"],
)
def test_a_failing_function_gives_502(
    elbv2: Any,
    door: FrontDoor,
    fake_lambda: FakeLambda,
    scratch_rule: str,
    lambda_group: str,
    raises: Exception | None,
    answer: Any,
) -> None:
    forward_to(elbv2, scratch_rule, (lambda_group, 1))
    fake_lambda.raises, fake_lambda.answer = raises, answer
    reply = call(door, "/fd/x")
    assert reply.status == 502
    assert b"502 Bad Gateway" in reply.body
    assert len(fake_lambda.events) == 1


def test_a_lambda_group_without_a_function_gets_503(
    elbv2: Any, door: FrontDoor, fake_lambda: FakeLambda, scratch_rule: str
) -> None:
    empty = elbv2.create_target_group(Name=f"fd-{uuid.uuid4().hex[:12]}", TargetType="lambda")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    forward_to(elbv2, scratch_rule, (empty, 1))
    assert call(door, "/fd/x").status == 503
    assert fake_lambda.events == []


# --- weighted forwards -------------------------------------------------------------------


def test_a_weighted_forward_reaches_the_group_with_targets(
    aws: Emulator,
    elbv2: Any,
    door: FrontDoor,
    fake_lambda: FakeLambda,
    scratch_rule: str,
    lambda_group: str,
) -> None:
    empty = empty_ip_group(aws, elbv2)
    forward_to(elbv2, scratch_rule, (empty, 3), (lambda_group, 1))
    assert [call(door, f"/fd/{n}").status for n in range(4)] == [200] * 4
    assert len(fake_lambda.events) == 4
    assert {e["requestContext"]["elb"]["targetGroupArn"] for e in fake_lambda.events} == {
        lambda_group
    }


def test_a_weighted_forward_with_no_targets_anywhere_gets_503(
    aws: Emulator, elbv2: Any, door: FrontDoor, scratch_rule: str
) -> None:
    groups = [empty_ip_group(aws, elbv2) for _ in range(2)]
    forward_to(elbv2, scratch_rule, (groups[0], 1), (groups[1], 1))
    assert call(door, "/fd/x").status == 503


def test_the_emulator_builds_a_door_on_its_listener(aws: Emulator) -> None:
    assert aws.provisioned is not None
    door = aws.front_door().start()
    try:
        assert door.listener_arn == aws.provisioned.listener_arn
        assert door.url == f"http://127.0.0.1:{door.port}"
        assert call(door, "/nowhere").status == 404
    finally:
        door.stop()


def test_each_forwarded_request_counts_in_the_groups_request_count(
    aws: Emulator, elbv2: Any, clock: ManualClock, door: FrontDoor
) -> None:
    """ALB's RequestCount per target group, on the emulator's clock: the reaper's traffic."""
    assert aws.provisioned is not None
    running_auth_task(aws, elbv2, clock)
    before = request_count(aws, clock, aws.provisioned.target_groups["auth"])
    assert call(door, "/api/auth/a").status == 200
    assert call(door, "/api/auth/b").status == 200
    assert call(door, "/no/such/route").status != 200  # the listener's own answer: not counted
    assert request_count(aws, clock, aws.provisioned.target_groups["auth"]) == before + 2


def request_count(aws: Emulator, clock: ManualClock, group_arn: str) -> float:
    """The group's RequestCount over the last five minutes, as the reaper reads it."""
    assert aws.provisioned is not None
    balancer = aws.provisioned.load_balancer_arn.split(":loadbalancer/", 1)[-1]
    found = aws.clients().cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "requests",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/ApplicationELB",
                        "MetricName": "RequestCount",
                        "Dimensions": [
                            {"Name": "TargetGroup", "Value": group_arn.split(":", 5)[-1]},
                            {"Name": "LoadBalancer", "Value": balancer},
                        ],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=clock.wall() - timedelta(minutes=5),
        EndTime=clock.wall() + timedelta(minutes=1),
    )
    return float(sum(found["MetricDataResults"][0]["Values"]))
