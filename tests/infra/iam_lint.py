"""parliament, the IAM policy linter, behind a small typed interface.

Each statement is linted on its own, so that a finding names its statement; the whole document
is linted too, for what only a document can get wrong (a duplicate Sid, say)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import parliament  # type: ignore[import-untyped]  # no stubs


@dataclass(frozen=True)
class Finding:
    policy: str
    statement: str  # its Sid, or its index in the policy
    issue: str  # parliament's finding, e.g. RESOURCE_STAR
    subject: str  # the action it is about, when parliament names one
    detail: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.statement, self.issue, self.subject)


def _analyze(document: dict[str, Any]) -> list[Any]:
    findings: list[Any] = parliament.analyze_policy_string(json.dumps(document)).findings
    return findings


def lint(policies: dict[str, dict[str, Any]]) -> list[Finding]:
    """Every finding of every statement of `policies` (policy name -> document)."""
    found: list[Finding] = []
    for name, document in policies.items():
        statements = document["Statement"]
        statements = [statements] if isinstance(statements, dict) else statements
        per_statement: Counter[str] = Counter()
        for index, statement in enumerate(statements):
            label = str(statement.get("Sid", index))
            single = {"Version": document.get("Version"), "Statement": [statement]}
            for finding in _analyze(single):
                per_statement[finding.issue] += 1
                found.extend(
                    Finding(name, label, finding.issue, subject, detail)
                    for subject, detail in _split(finding.detail)
                )
        whole = Counter(finding.issue for finding in _analyze(document))
        for issue, count in (whole - per_statement).items():
            found.extend(Finding(name, "(document)", issue, "", "") for _ in range(count))
    return found


def _split(detail: Any) -> list[tuple[str, str]]:
    """(action, detail) for each action a finding names: RESOURCE_STAR lists action names,
    RESOURCE_MISMATCH dicts with an "action" each."""
    if isinstance(detail, list) and detail:
        if all(isinstance(d, str) for d in detail):
            return [(d, d) for d in detail]
        if all(isinstance(d, dict) and "action" in d for d in detail):
            by_action: dict[str, list[Any]] = {}
            for d in detail:
                by_action.setdefault(d["action"], []).append(d)
            return [(a, json.dumps(ds, sort_keys=True)) for a, ds in by_action.items()]
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str, sort_keys=True)
    return [("", text)]
