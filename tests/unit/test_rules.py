"""Listener rules matched as ALB matches them."""

from __future__ import annotations

from typing import Any

import pytest

from start_engines.rules import (
    HttpRequest,
    first_match,
    forward_actions,
    forward_targets,
    parse_rule,
)


def rule(priority: str, *conditions: dict[str, Any], target: str = "tg") -> dict[str, Any]:
    return {
        "RuleArn": f"rule-{priority}",
        "Priority": priority,
        "Conditions": list(conditions),
        "Actions": [{"Type": "forward", "TargetGroupArn": target}],
        "IsDefault": priority == "default",
    }


def path(*values: str) -> dict[str, Any]:
    return {"Field": "path-pattern", "PathPatternConfig": {"Values": list(values)}}


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("/api/pdf/*", "/api/pdf/report", True),
        ("/api/pdf/*", "/api/pdf/", True),
        ("/api/pdf/*", "/api/pdf", False),
        ("/api/pdf/*", "/API/pdf/x", False),  # paths are case-sensitive
        ("/api/?df/*", "/api/pdf/x", True),
        ("/api/pdf/[a]*", "/api/pdf/a", False),  # brackets are literal, not a class
        ("/api/pdf/[a]*", "/api/pdf/[a]x", True),
        ("/a.b", "/aXb", False),  # a dot is literal
    ],
)
def test_path_patterns(pattern: str, value: str, matches: bool) -> None:
    found = first_match([parse_rule(rule("1", path(pattern)))], HttpRequest("GET", value))
    assert (found is not None) is matches


def test_lowest_priority_wins_and_the_default_comes_last() -> None:
    rules = [
        parse_rule(rule("default", target="default")),
        parse_rule(rule("20", path("/api/*"), target="api")),
        parse_rule(rule("10", path("/api/pdf/*"), target="pdf")),
    ]
    assert first_match(rules, HttpRequest("GET", "/api/pdf/x")).forward_to == ("pdf",)  # type: ignore[union-attr]
    assert first_match(rules, HttpRequest("GET", "/api/auth")).forward_to == ("api",)  # type: ignore[union-attr]
    assert first_match(rules, HttpRequest("GET", "/x")).forward_to == ("default",)  # type: ignore[union-attr]


def test_every_condition_must_match_any_of_its_values() -> None:
    host = {"Field": "host-header", "HostHeaderConfig": {"Values": ["*.Example.com"]}}
    method = {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET"]}}
    header = {
        "Field": "http-header",
        "HttpHeaderConfig": {"HttpHeaderName": "X-Tenant", "Values": ["acme", "glob*"]},
    }
    query = {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v", "Value": "2"}]}}
    source = {"Field": "source-ip", "SourceIpConfig": {"Values": ["203.0.113.0/24"]}}
    rules = [parse_rule(rule("1", path("/a/*"), host, method, header, query, source))]
    good = HttpRequest(
        "GET",
        "/a/b",
        host="api.EXAMPLE.com:443",
        headers=(("x-tenant", "GLOBEX"),),
        query=(("v", "2"),),
        source_ip="203.0.113.7",
    )
    assert first_match(rules, good) is not None
    for change in (
        {"method": "POST"},
        {"host": "example.org"},
        {"headers": (("x-tenant", "other"),)},
        {"query": (("v", "3"),)},
        {"source_ip": "198.51.100.1"},
        {"source_ip": "not-an-ip"},
    ):
        bad = HttpRequest(**{**good.__dict__, **change})
        assert first_match(rules, bad) is None, change


def test_an_unknown_condition_never_matches() -> None:
    rules = [parse_rule(rule("1", {"Field": "something-new", "Values": ["x"]}))]
    assert first_match(rules, HttpRequest("GET", "/")) is None


def test_the_switch_keeps_other_actions_and_weights_several_groups() -> None:
    actions = [
        {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": {"Issuer": "x"}},
        {"Type": "forward", "Order": 2, "TargetGroupArn": "wake"},
    ]
    switched = forward_actions(actions, ["a", "b"])
    assert switched[0] == actions[0]
    assert switched[1] == {
        "Type": "forward",
        "Order": 2,
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": "a", "Weight": 1},
                {"TargetGroupArn": "b", "Weight": 1},
            ]
        },
    }
    assert forward_targets(switched) == ("a", "b")
    assert forward_actions(actions, ["a"])[1] == {
        "Type": "forward",
        "Order": 2,
        "TargetGroupArn": "a",
    }


def test_a_long_hostile_path_matches_in_linear_time() -> None:
    rules = [parse_rule(rule("1", path("/*a*b*c*d*e*f*g*h*x")))]
    assert first_match(rules, HttpRequest("GET", "/" + "abcdefgh" * 1000)) is None
