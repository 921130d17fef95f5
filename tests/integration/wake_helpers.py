"""Wake on request in tests: ALB's events, the sleeping engine's rule, and reading it back."""

from __future__ import annotations

import json
from typing import Any

from start_engines.local import Emulator
from start_engines.rules import forward_actions, forward_targets


def forward(aws: Emulator, engine: str, group: str, *, attached: bool = True) -> None:
    """Point the engine's rule at `group`; at the wake group, the engine's own stays attached
    at weight 0 (as infra/alb.yaml deploys a sleeping rule) unless `attached` is False."""
    provisioned = aws.provisioned
    assert provisioned is not None
    own = provisioned.target_groups[engine]
    standby = [own] if group != own and attached else []
    aws.clients().elbv2.modify_rule(
        RuleArn=provisioned.rules[engine],
        Actions=forward_actions([], [group], standby),  # type: ignore[arg-type]
    )


def routing(aws: Emulator, engine: str = "pdf") -> str:
    assert aws.provisioned is not None
    rule = aws.clients().elbv2.describe_rules(RuleArns=[aws.provisioned.rules[engine]])["Rules"][0]
    groups = forward_targets(rule["Actions"])  # where traffic goes: weight above 0
    if groups == (aws.provisioned.wake_target_group,):
        return "asleep"
    return "awake" if groups == (aws.provisioned.target_groups[engine],) else "other"


def request(
    aws: Emulator,
    path: str = "/api/pdf/report",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str = "",
    *,
    base64_body: bool = False,
    multi: bool = False,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An ALB event as ALB sends it to a Lambda target."""
    assert aws.provisioned is not None
    all_headers = {
        "host": "engines.example.com",
        "user-agent": "curl/8.5",
        "accept": "*/*",
        "x-forwarded-for": "203.0.113.9",
        **(headers or {}),
    }
    event: dict[str, Any] = {
        "requestContext": {"elb": {"targetGroupArn": aws.provisioned.wake_target_group}},
        "httpMethod": method,
        "path": path,
        "body": body,
        "isBase64Encoded": base64_body,
    }
    if multi:
        event["multiValueHeaders"] = {k: [v] for k, v in all_headers.items()}
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()}
    else:
        event["headers"] = all_headers
        event["queryStringParameters"] = query or {}
    return event


def json_body(answer: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(answer["body"])
    return parsed
