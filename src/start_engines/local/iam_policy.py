"""A small IAM policy evaluator: enough of AWS's logic to check a role's policies against the
calls its function makes (tests/integration/test_iam_proof.py).

As AWS decides within one account's identity policies: an explicit Deny wins, then any Allow;
nothing matching is the implicit deny. Actions match case-insensitively, resources
case-sensitively, both with the wildcards `*` and `?`. Conditions: only the operators the
template uses (and their twins); any other operator, a policy variable or an element this
evaluator does not know raises UnsupportedPolicy, so nothing is ever allowed by omission.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


class UnsupportedPolicy(ValueError):
    """The policy uses something this evaluator cannot decide on."""


class Decision(enum.Enum):
    ALLOW = "Allow"
    EXPLICIT_DENY = "ExplicitDeny"
    IMPLICIT_DENY = "ImplicitDeny"


@dataclass(frozen=True)
class Request:
    """One authorization: an action on one resource, with the request's condition keys."""

    action: str  # e.g. ecs:RunTask
    resource: str  # an ARN, or "*" for an action AWS authorizes on no resource
    context: tuple[tuple[str, str], ...] = ()  # condition key -> value

    def value(self, key: str) -> str | None:
        return next(iter(self.values(key)), None)

    def values(self, key: str) -> list[str]:
        """Every value of a key (a multivalued key such as dynamodb:LeadingKeys repeats)."""
        wanted = key.lower()  # condition key names are case-insensitive
        return [v for k, v in self.context if k.lower() == wanted]


@dataclass(frozen=True)
class StatementRef:
    policy: str
    index: int
    sid: str | None

    @property
    def label(self) -> str:
        return f"{self.policy}/{self.sid if self.sid is not None else self.index}"


@dataclass(frozen=True)
class Result:
    decision: Decision
    # what decided: the matching Deny statements, else the matching Allow ones; none for implicit
    statements: tuple[StatementRef, ...] = field(default_factory=tuple)

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


def evaluate(policies: Mapping[str, Mapping[str, Any]], request: Request) -> Result:
    """The decision of `policies` (policy name -> document) on `request`."""
    allows: list[StatementRef] = []
    denies: list[StatementRef] = []
    for ref, statement in statements(policies):
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"{ref.label}: Effect must be Allow or Deny, got {effect!r}")
        if _applies(ref, statement, request):
            (allows if effect == "Allow" else denies).append(ref)
    if denies:
        return Result(Decision.EXPLICIT_DENY, tuple(denies))
    if allows:
        return Result(Decision.ALLOW, tuple(allows))
    return Result(Decision.IMPLICIT_DENY)


def statements(
    policies: Mapping[str, Mapping[str, Any]],
) -> Iterator[tuple[StatementRef, Mapping[str, Any]]]:
    """Every statement of every policy, with its reference."""
    for name, document in policies.items():
        listed = document.get("Statement", [])
        for index, statement in enumerate([listed] if isinstance(listed, dict) else listed):
            sid = statement.get("Sid")
            yield StatementRef(name, index, sid if isinstance(sid, str) else None), statement


KNOWN_ELEMENTS = frozenset(
    {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
)


def _applies(ref: StatementRef, statement: Mapping[str, Any], request: Request) -> bool:
    """Whether the statement matches; the whole statement is checked first, whether it
    matches or not, so an unsupported part fails every evaluation."""
    unknown = set(statement) - KNOWN_ELEMENTS
    if unknown:  # Principal, NotPrincipal: not in an identity policy
        raise UnsupportedPolicy(f"{ref.label}: unsupported elements {sorted(unknown)}")
    action = _exactly_one(ref, statement, "Action", "NotAction")
    resource = _exactly_one(ref, statement, "Resource", "NotResource")
    actions = _strings(ref, statement[action])
    resources = _strings(ref, statement[resource])
    for pattern in resources:
        if "${" in pattern:
            raise UnsupportedPolicy(f"{ref.label}: policy variable in {pattern!r}")
    conditions = _parsed_conditions(ref, statement.get("Condition", {}))
    matched = any(_glob(a, request.action, case=False) for a in actions)
    if matched != (action == "Action"):
        return False
    matched = any(_glob(r, request.resource, case=True) for r in resources)
    if matched != (resource == "Resource"):
        return False
    return all(test(expected, request.values(key)) for test, key, expected in conditions)


def _exactly_one(ref: StatementRef, statement: Mapping[str, Any], one: str, other: str) -> str:
    if (one in statement) == (other in statement):
        raise UnsupportedPolicy(f"{ref.label}: needs exactly one of {one} and {other}")
    return one if one in statement else other


def _strings(ref: StatementRef, value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise UnsupportedPolicy(f"{ref.label}: {item!r} is not a string")
    return [str(item) for item in values]


Test = Callable[[str, str], bool]  # (the policy's value, the request's) -> holds
KeyTest = Callable[[list[str], list[str]], bool]  # (the policy's values, the request's)


def _single(test: Test) -> KeyTest:
    """A single-valued key: present, and any of the policy's values matches it."""
    return lambda expected, actual: bool(actual) and any(test(e, actual[0]) for e in expected)


def _for_all_values(test: Test) -> KeyTest:
    """ForAllValues: every value of the request matches one of the policy's. As AWS does, a
    request without the key matches too (the set of its values is empty)."""
    return lambda expected, actual: all(any(test(e, a) for e in expected) for a in actual)


def _for_any_value(test: Test) -> KeyTest:
    """ForAnyValue: some value of the request matches one of the policy's."""
    return lambda expected, actual: any(test(e, a) for e in expected for a in actual)


def _parsed_conditions(ref: StatementRef, block: Any) -> list[tuple[KeyTest, str, list[str]]]:
    """(test, key, values) for each key of each operator. Every one must hold (AND); any value
    of a key may match (OR); a key the request does not carry matches nothing."""
    if not isinstance(block, dict):
        raise UnsupportedPolicy(f"{ref.label}: Condition must be an object")
    parsed: list[tuple[KeyTest, str, list[str]]] = []
    for operator, keys in block.items():
        qualifier, _, name = str(operator).rpartition(":")
        base = OPERATORS.get(name)
        set_test = SET_OPERATORS.get(qualifier)
        test = set_test(base) if base is not None and set_test is not None else None
        if test is None:
            raise UnsupportedPolicy(f"{ref.label}: condition operator {operator!r} unsupported")
        if not isinstance(keys, dict):
            raise UnsupportedPolicy(f"{ref.label}: {operator} must map keys to values")
        parsed.extend((test, key, _strings(ref, values)) for key, values in keys.items())
    return parsed


def _arn_like(pattern: str, arn: str) -> bool:
    """ArnLike and ArnEquals alike: each of the six colon-separated parts on its own."""
    expected, actual = pattern.split(":", 5), arn.split(":", 5)
    if len(expected) != 6 or len(actual) != 6:
        return False
    return all(_glob(e, a, case=True) for e, a in zip(expected, actual, strict=True))


OPERATORS: dict[str, Test] = {
    "StringEquals": lambda expected, actual: expected == actual,
    "StringLike": lambda expected, actual: _glob(expected, actual, case=True),
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
}
SET_OPERATORS: dict[str, Callable[[Test], KeyTest]] = {
    "": _single,
    "ForAllValues": _for_all_values,
    "ForAnyValue": _for_any_value,
}


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    return _compiled(pattern, case).fullmatch(value) is not None


@lru_cache(maxsize=1024)
def _compiled(pattern: str, case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL if case else re.DOTALL | re.IGNORECASE)
