"""Listener rules as an ALB evaluates them: conditions, priority, and the forward action.

Pure functions over DescribeRules' shapes; the wake use case and the emulator's front door
both route with them. Within a condition any value may match; every condition must match.
Wildcards are `*` (any run of characters) and `?` (one character). Paths and methods compare
case-sensitively; hosts, header values and query strings do not, as ALB documents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_PRIORITY = 1_000_000  # the listener's default rule comes after every numbered one


@dataclass(frozen=True)
class HttpRequest:
    """What a rule looks at in a request. Header names are lower case."""

    method: str
    path: str
    host: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    source_ip: str | None = None

    def header(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True)
class Rule:
    arn: str
    priority: int
    conditions: tuple[Mapping[str, Any], ...]
    actions: tuple[Mapping[str, Any], ...]

    @property
    def forward_to(self) -> tuple[str, ...]:
        """The target groups its forward action sends traffic to (weight above 0)."""
        return forward_targets(self.actions)

    @property
    def attached(self) -> tuple[str, ...]:
        """Every group of its forward, weight 0 included: the load balancer uses them all."""
        return tuple(arn for arn, _ in forward_weights(self.actions))

    def matches(self, request: HttpRequest) -> bool:
        return all(_condition_matches(c, request) for c in self.conditions)


def parse_rule(described: Mapping[str, Any]) -> Rule:
    """A rule from DescribeRules."""
    priority = str(described.get("Priority", "default"))
    default = described.get("IsDefault") or not priority.isdigit()
    return Rule(
        arn=str(described.get("RuleArn", "")),
        priority=DEFAULT_PRIORITY if default else int(priority),
        conditions=tuple(described.get("Conditions") or ()),
        actions=tuple(described.get("Actions") or ()),
    )


def first_match(rules: Sequence[Rule], request: HttpRequest) -> Rule | None:
    """The rule that serves the request: the matching one of lowest priority."""
    for rule in sorted(rules, key=lambda r: r.priority):
        if rule.matches(request):
            return rule
    return None


def forward_weights(actions: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, int], ...]:
    """Each target group of the forward action with its weight (none without a forward)."""
    for action in actions:
        if action.get("Type") != "forward":
            continue
        config = action.get("ForwardConfig") or {}
        weighted = tuple(
            (str(g["TargetGroupArn"]), _weight(g.get("Weight", 1)))
            for g in config.get("TargetGroups") or ()
            if g.get("TargetGroupArn")
        )
        if weighted:
            return weighted
        if action.get("TargetGroupArn"):
            return ((str(action["TargetGroupArn"]), 1),)
    return ()


def forward_targets(actions: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The groups the forward sends traffic to: weight above 0."""
    return tuple(arn for arn, weight in forward_weights(actions) if weight > 0)


def forward_actions(
    actions: Sequence[Mapping[str, Any]],
    target_groups: Sequence[str],
    standby: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The whole action list for ModifyRule, its forward now to `target_groups` (a weighted
    forward, equal weights, when there are several), with `standby` groups at weight 0: they
    get no traffic but stay attached to the load balancer, which health-checks only the targets
    of groups a listener uses (others stay `unused`). Other actions, such as an
    authenticate-oidc before the forward, stay as they were, in their order."""
    if len(target_groups) == 1 and not standby:
        forward: dict[str, Any] = {"Type": "forward", "TargetGroupArn": target_groups[0]}
    else:
        groups = [{"TargetGroupArn": arn, "Weight": 1} for arn in target_groups]
        groups += [{"TargetGroupArn": arn, "Weight": 0} for arn in standby]
        forward = {"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}
    result: list[dict[str, Any]] = []
    for action in actions:
        if action.get("Type") == "forward":
            order = action.get("Order")
            result.append({**forward, "Order": order} if order is not None else dict(forward))
        else:
            result.append(dict(action))
    return result if any(a.get("Type") == "forward" for a in result) else [forward]


def _weight(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return 0


def _values(condition: Mapping[str, Any], config: str) -> list[Any]:
    nested = condition.get(config)
    if isinstance(nested, Mapping) and nested.get("Values") is not None:
        return list(nested["Values"])
    return list(condition.get("Values") or ())


def _condition_matches(condition: Mapping[str, Any], request: HttpRequest) -> bool:
    field = condition.get("Field")
    if field == "path-pattern":
        return any(
            glob_match(str(v), request.path, ignore_case=False)
            for v in _values(condition, "PathPatternConfig")
        )
    if field == "host-header":
        host = request.host.split(":", 1)[0]
        return any(
            glob_match(str(v), host, ignore_case=True)
            for v in _values(condition, "HostHeaderConfig")
        )
    if field == "http-request-method":
        return request.method in _values(condition, "HttpRequestMethodConfig")
    if field == "http-header":
        config = condition.get("HttpHeaderConfig") or {}
        found = request.header(str(config.get("HttpHeaderName", "")))
        patterns = [str(v) for v in config.get("Values") or ()]
        return any(glob_match(p, value, ignore_case=True) for p in patterns for value in found)
    if field == "query-string":
        pairs = (condition.get("QueryStringConfig") or {}).get("Values") or ()
        return any(_query_matches(pair, request.query) for pair in pairs)
    if field == "source-ip":
        return _source_matches(_values(condition, "SourceIpConfig"), request.source_ip)
    return False  # a condition this code does not know never routes a request to us


def _query_matches(pair: Mapping[str, Any], query: Sequence[tuple[str, str]]) -> bool:
    key, value = pair.get("Key"), str(pair.get("Value", ""))
    return any(
        glob_match(value, v, ignore_case=True)
        and (not key or glob_match(str(key), k, ignore_case=True))
        for k, v in query
    )


def _source_matches(cidrs: Sequence[str], source_ip: str | None) -> bool:
    if not source_ip:
        return False
    import ipaddress  # only for source-ip conditions: kept off the cold start

    try:
        address = ipaddress.ip_address(source_ip)
        return any(address in ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError:
        return False


def glob_match(pattern: str, text: str, *, ignore_case: bool) -> bool:
    """`*` and `?` wildcards, in O(len(pattern) x len(text)) at worst: a hostile path cannot
    make it backtrack exponentially, as a regular expression of several `.*` would."""
    if ignore_case:
        pattern, text = pattern.lower(), text.lower()
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]) and pattern[p] != "*":
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, t, p + 1
        elif star >= 0:
            mark += 1
            p, t = star + 1, mark
        else:
            return False
    return pattern[p:].strip("*") == ""
