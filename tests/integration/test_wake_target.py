"""Custom::WakeTarget through lambda_handler: registrations in the emulator's Lambda target
groups, and the answer PUT to a real HTTP server on loopback, as CloudFormation's presigned URL."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from start_engines.local import Emulator
from start_engines.local.context import LambdaContext

FUNCTION = LambdaContext.invoked_function_arn  # the function the requests reach


@dataclass
class Answers:
    """What CloudFormation would have received at the ResponseURL."""

    url: str
    received: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)

    def only(self) -> dict[str, Any]:
        ((method, headers, body),) = self.received
        assert method == "PUT"
        assert headers.get("Content-Type") == ""  # what the presigned S3 URL is signed for
        return body


@pytest.fixture
def answers() -> Iterator[Answers]:
    received: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            received.append(("PUT", dict(self.headers.items()), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Answers(f"http://127.0.0.1:{server.server_port}/presigned?X-Amz-Signature=abc", received)
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def groups(aws: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """Two Lambda target groups, deleted afterwards; the first is the function's wake group."""
    elbv2 = aws.clients().elbv2
    arns = tuple(
        elbv2.create_target_group(Name=f"wake-{uuid.uuid4().hex[:8]}", TargetType="lambda")[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        for _ in range(2)
    )
    monkeypatch.setenv("WAKE_TARGET_GROUP_ARN", arns[0])
    yield arns[0], arns[1]
    for arn in arns:
        elbv2.delete_target_group(TargetGroupArn=arn)


def stack(aws: Emulator, *, deleted: bool) -> str:
    """A stack's ID: deleted (as when CloudFormation deletes this resource for real), or live."""
    cloudformation = aws.clients()._client("cloudformation")
    body = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    name = f"engines-{uuid.uuid4().hex[:8]}"
    stack_id: str = cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(body))[
        "StackId"
    ]
    if deleted:
        cloudformation.delete_stack(StackName=stack_id)
    return stack_id


LIVE_STACK = "arn:aws:cloudformation:us-east-2:123456789012:stack/engines/1"


def request(kind: str, url: str, group: str, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": kind,
        "ServiceToken": FUNCTION,
        "ResponseURL": url,
        "StackId": LIVE_STACK,
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "WakeTarget",
        "ResourceType": "Custom::WakeTarget",
        "ResourceProperties": {
            "ServiceToken": FUNCTION,
            "TargetGroupArn": group,
            "FunctionArn": FUNCTION,
        },
        **extra,
    }


def registered(aws: Emulator, group: str) -> list[str]:
    found = aws.clients().elbv2.describe_target_health(TargetGroupArn=group)
    return [t["Target"]["Id"] for t in found["TargetHealthDescriptions"]]


def test_create_registers_the_function(
    aws: Emulator, invoke: Any, answers: Answers, groups: tuple[str, str]
) -> None:
    event = request("Create", answers.url, groups[0])
    returned = invoke(event)
    assert registered(aws, groups[0]) == [FUNCTION]
    body = answers.only()
    assert body == returned
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == f"{groups[0]}|{FUNCTION}"
    for key in ("StackId", "RequestId", "LogicalResourceId"):
        assert body[key] == event[key]


def test_update_moves_it_to_another_group(
    aws: Emulator,
    invoke: Any,
    answers: Answers,
    groups: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = groups
    invoke(request("Create", answers.url, old))
    created = answers.received.pop()[2]
    old_properties = request("Create", answers.url, old)["ResourceProperties"]
    monkeypatch.setenv("WAKE_TARGET_GROUP_ARN", new)  # the stack update changed the parameter
    invoke(
        request(
            "Update",
            answers.url,
            new,
            PhysicalResourceId=created["PhysicalResourceId"],
            OldResourceProperties=old_properties,
        )
    )
    body = answers.only()
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", f"{new}|{FUNCTION}")
    assert (registered(aws, old), registered(aws, new)) == ([], [FUNCTION])
    # a new physical ID: CloudFormation then deletes the old one, already deregistered
    answers.received.clear()
    invoke(
        request(
            "Delete",
            answers.url,
            old,
            PhysicalResourceId=created["PhysicalResourceId"],
        )
    )
    assert answers.only()["Status"] == "SUCCESS"
    assert registered(aws, new) == [FUNCTION]  # the old ID named the old group only


def test_update_in_place_keeps_the_registration(
    aws: Emulator, invoke: Any, answers: Answers, groups: tuple[str, str]
) -> None:
    group = groups[0]
    invoke(request("Create", answers.url, group))
    created = answers.received.pop()[2]
    event = request("Update", answers.url, group, PhysicalResourceId=created["PhysicalResourceId"])
    invoke({**event, "OldResourceProperties": event["ResourceProperties"]})
    body = answers.only()
    assert (body["Status"], body["PhysicalResourceId"]) == (
        "SUCCESS",
        created["PhysicalResourceId"],
    )
    assert registered(aws, group) == [FUNCTION]


@pytest.mark.parametrize(
    "change",
    [{"FunctionArn": f"{FUNCTION}-other"}, {"TargetGroupArn": "second"}],
    ids=["another-function", "another-group"],
)
def test_a_request_to_register_anything_else_is_refused(
    aws: Emulator,
    invoke: Any,
    answers: Answers,
    groups: tuple[str, str],
    change: dict[str, str],
) -> None:
    """Whoever may invoke the function could send this request: it registers only itself, in
    its own WAKE_TARGET_GROUP_ARN, so wake traffic can never be moved to another function."""
    group, second = groups
    invoke(request("Create", answers.url, group))
    created = answers.received.pop()[2]
    event = request("Update", answers.url, group, PhysicalResourceId=created["PhysicalResourceId"])
    old_properties = event["ResourceProperties"]
    properties = {**old_properties, **change}
    if properties["TargetGroupArn"] == "second":
        properties["TargetGroupArn"] = second
    for kind in ("Update", "Create"):
        invoke(
            {
                **event,
                "RequestType": kind,
                "ResourceProperties": properties,
                "OldResourceProperties": old_properties,
            }
        )
        body = answers.received.pop()[2]
        assert body["Status"] == "FAILED"
        assert "ResourceProperties." in body["Reason"]
    assert (registered(aws, group), registered(aws, second)) == ([FUNCTION], [])


def test_delete_deregisters_and_is_idempotent(
    aws: Emulator, invoke: Any, answers: Answers, groups: tuple[str, str]
) -> None:
    group = groups[0]
    invoke(request("Create", answers.url, group))
    physical = answers.received.pop()[2]["PhysicalResourceId"]
    going = stack(aws, deleted=True)
    for _ in range(2):  # the second finds the target gone: done all the same
        invoke(request("Delete", answers.url, group, PhysicalResourceId=physical, StackId=going))
        body = answers.received.pop()[2]
        assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", physical)
    assert registered(aws, group) == []


@pytest.mark.parametrize("stack_id", ["live", LIVE_STACK, "not-an-arn", None])
def test_a_delete_while_the_stack_lives_is_refused(
    aws: Emulator,
    invoke: Any,
    answers: Answers,
    groups: tuple[str, str],
    stack_id: str | None,
) -> None:
    """A forged Delete (the stack is not being deleted, or is not there) would switch wake
    off for every wakeable engine: refused, and the function stays registered."""
    group = groups[0]
    invoke(request("Create", answers.url, group))
    physical = answers.received.pop()[2]["PhysicalResourceId"]
    named = stack(aws, deleted=False) if stack_id == "live" else stack_id
    invoke(request("Delete", answers.url, group, PhysicalResourceId=physical, StackId=named))
    body = answers.only()
    assert body["Status"] == "FAILED" and body["Reason"]
    assert registered(aws, group) == [FUNCTION]


def test_delete_of_a_missing_group_counts_as_done(invoke: Any, answers: Answers) -> None:
    gone = "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/gone/0123456789abcdef"
    invoke(request("Delete", answers.url, gone, PhysicalResourceId=f"{gone}|{FUNCTION}"))
    assert answers.only()["Status"] == "SUCCESS"


def test_create_in_a_missing_group_fails_with_a_reason(
    aws: Emulator, invoke: Any, answers: Answers, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/gone/0123456789abcdef"
    monkeypatch.setenv("WAKE_TARGET_GROUP_ARN", gone)
    returned = invoke(request("Create", answers.url, gone))  # answers, does not raise
    body = answers.only()
    assert body == returned
    assert body["Status"] == "FAILED"
    assert "RegisterTargets" in body["Reason"] and "TargetGroupNotFound" in body["Reason"]
    # its rollback Delete (the stack going) then finds nothing to deregister
    answers.received.clear()
    going = stack(aws, deleted=True)
    physical = body["PhysicalResourceId"]
    invoke(request("Delete", answers.url, gone, PhysicalResourceId=physical, StackId=going))
    assert answers.only()["Status"] == "SUCCESS"


@pytest.mark.parametrize(
    "change",
    [
        {"ResourceProperties": None},
        {"ResourceProperties": ["not", "a", "dict"]},
        {"ResourceProperties": {"TargetGroupArn": 42, "FunctionArn": FUNCTION}},
        {"ResourceProperties": {"TargetGroupArn": "not-an-arn", "FunctionArn": FUNCTION}},
        {"RequestType": "Update", "OldResourceProperties": "junk"},
        {"StackId": None, "RequestId": 7},
    ],
    ids=["none", "list", "number", "bad-arn", "bad-old", "bad-ids"],
)
def test_malformed_requests_are_answered_not_raised(
    invoke: Any, answers: Answers, change: dict[str, Any]
) -> None:
    event = {**request("Create", answers.url, "unused"), **change}
    returned = invoke(event)
    body = answers.only()
    assert body == returned
    assert body["Status"] == "FAILED" and body["Reason"]
    assert body["PhysicalResourceId"]


def test_malformed_delete_succeeds_so_a_rollback_never_sticks(
    invoke: Any, answers: Answers
) -> None:
    event = {**request("Delete", answers.url, "unused"), "ResourceProperties": "junk"}
    assert invoke(event)["Status"] == "SUCCESS"
    assert answers.only()["PhysicalResourceId"] == "WakeTarget-not-registered"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/closed", "file:///etc/passwd", "not a url", ""],
    ids=["closed-port", "file", "garbage", "empty"],
)
def test_an_unreachable_response_url_does_not_raise(
    invoke: Any, groups: tuple[str, str], url: str
) -> None:
    assert invoke(request("Create", url, groups[0]))["Status"] == "SUCCESS"


def test_other_events_are_not_custom_resource_requests() -> None:
    from start_engines.wake_target import is_custom_resource

    good = request("Create", "https://example.com/x", "tg")
    assert is_custom_resource(good)
    assert not is_custom_resource({**good, "RequestType": "Start"})
    assert not is_custom_resource({**good, "ResourceType": "AWS::S3::Bucket"})
    assert not is_custom_resource({k: v for k, v in good.items() if k != "ResponseURL"})
    assert not is_custom_resource({"detail-type": "Start ECS Task", "detail": {}})
    assert not is_custom_resource(["Create"])
