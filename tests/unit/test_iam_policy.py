"""The IAM policy evaluator the least-privilege proof uses: AWS's decisions, and loud refusals."""

from __future__ import annotations

from typing import Any

import pytest

from start_engines.local.iam_policy import (
    Decision,
    Request,
    StatementRef,
    UnsupportedPolicy,
    evaluate,
)

ACCOUNT = "arn:aws:ecs:us-east-2:123456789012"
AUTH_TASK = f"{ACCOUNT}:task/auth-cluster/0f1e2d3c"
AUTH_CLUSTER = f"{ACCOUNT}:cluster/auth-cluster"


def policy(*statements: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"p": {"Version": "2012-10-17", "Statement": list(statements)}}


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def request(action: str = "ecs:StopTask", resource: str = AUTH_TASK, **context: str) -> Request:
    return Request(action, resource, tuple(context.items()))


def decide(policies: dict[str, dict[str, Any]], req: Request) -> Decision:
    return evaluate(policies, req).decision


def test_allow_names_the_statement_that_allowed() -> None:
    result = evaluate(policy(allow("ecs:StopTask", Sid="Stop")), request())
    assert result.decision is Decision.ALLOW
    assert result.statements == (StatementRef("p", 0, "Stop"),)
    assert result.statements[0].label == "p/Stop"


def test_nothing_matching_is_the_implicit_deny() -> None:
    result = evaluate(policy(allow("ecs:RunTask")), request())
    assert (result.decision, result.statements) == (Decision.IMPLICIT_DENY, ())
    assert decide({}, request()) is Decision.IMPLICIT_DENY


def test_deny_overrides_any_allow() -> None:
    deny = {"Effect": "Deny", "Action": "ecs:*", "Resource": f"{ACCOUNT}:task/auth-cluster/*"}
    policies = {**policy(allow("ecs:StopTask")), "guard": {"Statement": deny}}
    result = evaluate(policies, request())
    assert result.decision is Decision.EXPLICIT_DENY
    assert result.statements == (StatementRef("guard", 0, None),)
    other = f"{ACCOUNT}:task/pdf-cluster/1"  # the Deny's resource does not match: allowed
    assert decide(policies, request(resource=other)) is Decision.ALLOW


def test_actions_match_case_insensitively_with_wildcards() -> None:
    assert decide(policy(allow("ECS:stoptask")), request()) is Decision.ALLOW
    assert decide(policy(allow("ecs:Stop*")), request()) is Decision.ALLOW
    assert decide(policy(allow("ecs:?topTask")), request()) is Decision.ALLOW
    assert decide(policy(allow("ecs:Stop")), request()) is Decision.IMPLICIT_DENY
    assert decide(policy(allow("ec2:StopTask")), request()) is Decision.IMPLICIT_DENY
    assert decide(policy(allow(["ecs:RunTask", "ecs:StopTask"])), request()) is Decision.ALLOW


def test_not_action_allows_everything_else() -> None:
    policies = policy({"Effect": "Allow", "NotAction": "ecs:StopTask", "Resource": "*"})
    assert decide(policies, request("ecs:DescribeTasks")) is Decision.ALLOW
    assert decide(policies, request("ecs:StopTask")) is Decision.IMPLICIT_DENY
    denies = policy(
        allow("ecs:*"), {"Effect": "Deny", "NotAction": "ecs:Describe*", "Resource": "*"}
    )
    assert decide(denies, request("ecs:StopTask")) is Decision.EXPLICIT_DENY
    assert decide(denies, request("ecs:DescribeTasks")) is Decision.ALLOW


def test_resources_match_case_sensitively_with_wildcards() -> None:
    scoped = policy(allow("ecs:StopTask", f"{ACCOUNT}:task/auth-cluster/*"))
    assert decide(scoped, request()) is Decision.ALLOW
    for other in (
        f"{ACCOUNT}:task/pdf-cluster/0f1e2d3c",
        f"{ACCOUNT}:task/Auth-cluster/0f1e2d3c",
        f"{ACCOUNT}:task/auth-clusterX/0f1e2d3c",
        "*",
    ):
        assert decide(scoped, request(resource=other)) is Decision.IMPLICIT_DENY, other
    single = policy(allow("ecs:StopTask", f"{ACCOUNT}:task/auth-cluster/0f1e2d3?"))
    assert decide(single, request()) is Decision.ALLOW
    assert decide(single, request(resource=AUTH_TASK + "0")) is Decision.IMPLICIT_DENY
    literal = policy(allow("ecs:StopTask", f"{ACCOUNT}:task/auth-cluster/[0f]*"))
    assert decide(literal, request()) is Decision.IMPLICIT_DENY  # no character classes


def test_not_resource() -> None:
    policies = policy(
        {"Effect": "Allow", "Action": "ecs:StopTask", "NotResource": f"{ACCOUNT}:task/pdf-*"}
    )
    assert decide(policies, request()) is Decision.ALLOW
    pdf = request(resource=f"{ACCOUNT}:task/pdf-cluster/1")
    assert decide(policies, pdf) is Decision.IMPLICIT_DENY


def test_string_equals_is_exact_and_any_value_may_match() -> None:
    condition = {"StringEquals": {"iam:PassedToService": ["ecs-tasks.amazonaws.com", "x"]}}
    policies = policy(allow("iam:PassRole", "*", Condition=condition))
    passed = request(
        "iam:PassRole",
        "arn:aws:iam::123456789012:role/r",
        **{"iam:PassedToService": "ecs-tasks.amazonaws.com"},
    )
    assert decide(policies, passed) is Decision.ALLOW
    for value in ("ECS-tasks.amazonaws.com", "ecs-tasks.amazonaws.com.evil", "ecs-*"):
        other = request("iam:PassRole", "*", **{"iam:PassedToService": value})
        assert decide(policies, other) is Decision.IMPLICIT_DENY, value
    star = policy(
        allow("iam:PassRole", "*", Condition={"StringEquals": {"iam:PassedToService": "*"}})
    )
    literal = request("iam:PassRole", "*", **{"iam:PassedToService": "lambda.amazonaws.com"})
    assert decide(star, literal) is Decision.IMPLICIT_DENY  # no wildcards in StringEquals


def test_string_like_takes_wildcards() -> None:
    policies = policy(
        allow("ecs:TagResource", Condition={"StringLike": {"ecs:CreateAction": "Run*"}})
    )
    assert decide(policies, request("ecs:TagResource", **{"ecs:CreateAction": "RunTask"})) is (
        Decision.ALLOW
    )
    other = request("ecs:TagResource", **{"ecs:CreateAction": "StartTask"})
    assert decide(policies, other) is Decision.IMPLICIT_DENY


@pytest.mark.parametrize("operator", ["ArnEquals", "ArnLike"])
def test_arn_operators_match_each_part_on_its_own(operator: str) -> None:
    clusters = [AUTH_CLUSTER, "arn:aws:ecs:*:123456789012:cluster/pdf-*"]
    policies = policy(allow("ecs:ListTasks", Condition={operator: {"ecs:cluster": clusters}}))
    assert decide(policies, request("ecs:ListTasks", "*", **{"ecs:cluster": AUTH_CLUSTER})) is (
        Decision.ALLOW
    )
    pdf = "arn:aws:ecs:eu-west-1:123456789012:cluster/pdf-cluster"
    assert decide(policies, request("ecs:ListTasks", "*", **{"ecs:cluster": pdf})) is (
        Decision.ALLOW
    )
    for cluster in (
        f"{AUTH_CLUSTER}-2",
        "arn:aws:ecs:us-east-2:999999999999:cluster/auth-cluster",
        "arn:aws:ecs:us-east-2:123456789012:cluster:pdf-x",  # * stays within its part
        "auth-cluster",  # not an ARN
    ):
        denied = request("ecs:ListTasks", "*", **{"ecs:cluster": cluster})
        assert decide(policies, denied) is Decision.IMPLICIT_DENY, cluster
    regional = policy(
        allow("ecs:ListTasks", Condition={operator: {"ecs:cluster": "arn:aws:ecs:*"}})
    )
    spans = request("ecs:ListTasks", "*", **{"ecs:cluster": AUTH_CLUSTER})
    assert decide(regional, spans) is Decision.IMPLICIT_DENY  # a pattern of fewer parts


def test_a_missing_condition_key_matches_nothing() -> None:
    condition = {"ArnEquals": {"ecs:cluster": AUTH_CLUSTER}}
    policies = policy(allow("ecs:StopTask", Condition=condition))
    assert decide(policies, request()) is Decision.IMPLICIT_DENY
    assert decide(policies, request(**{"ECS:Cluster": AUTH_CLUSTER})) is Decision.ALLOW


def test_every_operator_and_key_must_hold() -> None:
    condition = {
        "ArnEquals": {"ecs:cluster": AUTH_CLUSTER},
        "StringEquals": {"ecs:CreateAction": "RunTask"},
    }
    policies = policy(allow("ecs:TagResource", Condition=condition))
    both = request(
        "ecs:TagResource", **{"ecs:cluster": AUTH_CLUSTER, "ecs:CreateAction": "RunTask"}
    )
    assert decide(policies, both) is Decision.ALLOW
    one = request("ecs:TagResource", **{"ecs:cluster": AUTH_CLUSTER})
    assert decide(policies, one) is Decision.IMPLICIT_DENY


LEASES = "arn:aws:dynamodb:us-east-2:123456789012:table/leases"


def put(*keys: str) -> Request:
    return Request("dynamodb:PutItem", LEASES, tuple(("dynamodb:LeadingKeys", k) for k in keys))


def test_for_all_values_needs_every_value_of_the_request_to_match() -> None:
    policies = policy(
        allow(
            "dynamodb:PutItem",
            LEASES,
            Condition={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["task#*"]}},
        )
    )
    assert decide(policies, put("task#arn:1")) is Decision.ALLOW
    assert decide(policies, put("task#arn:1", "task#arn:2")) is Decision.ALLOW
    assert decide(policies, put("task#arn:1", "lease#auth")) is Decision.IMPLICIT_DENY
    assert decide(policies, put("lease#auth")) is Decision.IMPLICIT_DENY
    # as AWS evaluates it: a request without the key has no value that fails
    assert decide(policies, put()) is Decision.ALLOW


def test_for_any_value_needs_one_value_of_the_request_to_match() -> None:
    policies = policy(
        allow(
            "dynamodb:PutItem",
            LEASES,
            Condition={"ForAnyValue:StringEquals": {"dynamodb:LeadingKeys": ["lease#auth"]}},
        )
    )
    assert decide(policies, put("task#arn:1", "lease#auth")) is Decision.ALLOW
    assert decide(policies, put("task#arn:1")) is Decision.IMPLICIT_DENY
    assert decide(policies, put()) is Decision.IMPLICIT_DENY


@pytest.mark.parametrize(
    "operator",
    [
        "StringNotEquals",
        "StringEqualsIfExists",
        "ForAnyValue:Bool",
        "ForSomeValues:StringLike",
        "Null",
        "Bool",
        "x",
    ],
)
def test_an_unknown_operator_fails_loudly_never_allows(operator: str) -> None:
    policies = policy(allow("ecs:StopTask", Condition={operator: {"ecs:cluster": "x"}}))
    with pytest.raises(UnsupportedPolicy, match=operator):
        evaluate(policies, request(**{"ecs:cluster": "x"}))
    with pytest.raises(UnsupportedPolicy, match=operator):  # even where it would not match
        evaluate(policies, request("ecs:RunTask", **{"ecs:cluster": "x"}))


@pytest.mark.parametrize(
    ("statement", "complaint"),
    [
        ({"Effect": "Allow", "Action": "ecs:*"}, "Resource and NotResource"),
        ({"Effect": "Allow", "Resource": "*"}, "Action and NotAction"),
        ({"Effect": "Allow", "Action": "a", "NotAction": "b", "Resource": "*"}, "exactly one"),
        ({"Effect": "allow", "Action": "ecs:*", "Resource": "*"}, "Allow or Deny"),
        ({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Principal": "*"}, "Principal"),
        ({"Effect": "Allow", "Action": "ecs:*", "Resource": "arn:${aws:username}"}, "variable"),
        ({"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": []}, "object"),
        ({"Effect": "Allow", "Action": True, "Resource": "*"}, "not a string"),
    ],
)
def test_what_it_cannot_decide_on_fails_loudly(statement: dict[str, Any], complaint: str) -> None:
    with pytest.raises(UnsupportedPolicy, match=complaint):
        evaluate(policy(statement), request())
