"""ListenerHandler: the ALB listener rules (DescribeRules, ModifyRule). ClientError stops here."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from start_engines.aws import AWS_ERRORS, has_code, translate
from start_engines.errors import ConfigError
from start_engines.rules import Rule, forward_actions, parse_rule

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client

logger = logging.getLogger(__name__)


def listener_of(rule_arn: str) -> str:
    """arn:...:listener-rule/app/lb/1/2/3 -> arn:...:listener/app/lb/1/2 (the rule's listener)."""
    head, _, path = rule_arn.partition(":listener-rule/")
    return f"{head}:listener/{path.rsplit('/', 1)[0]}"


class ListenerHandler:
    def __init__(self, elbv2: ElasticLoadBalancingv2Client) -> None:
        self._elbv2 = elbv2

    def rule(self, rule_arn: str, service: str | None = None) -> Rule:
        """One rule; a rule that does not exist is a configuration error of its engine."""
        try:
            found = self._elbv2.describe_rules(RuleArns=[rule_arn]).get("Rules", [])
        except AWS_ERRORS as exc:
            if has_code(exc, "RuleNotFound", "RuleNotFoundException"):
                found = []
            else:
                raise translate(exc, f"DescribeRules {rule_arn}", service=service) from exc
        if not found:
            raise ConfigError(
                f"engine '{service}': listener rule {rule_arn} does not exist",
                service=service,
                field="listenerRuleArn",
            )
        return parse_rule(found[0])

    def rules_of(self, listener_arn: str) -> list[Rule]:
        """Every rule of a listener, its default rule included."""
        rules: list[Rule] = []
        marker: str | None = None
        try:
            while True:
                page = (
                    self._elbv2.describe_rules(ListenerArn=listener_arn, Marker=marker)
                    if marker
                    else self._elbv2.describe_rules(ListenerArn=listener_arn)
                )
                rules += [parse_rule(r) for r in page.get("Rules", [])]
                marker = page.get("NextMarker")
                if not marker:
                    return rules
        except AWS_ERRORS as exc:
            raise translate(exc, f"DescribeRules {listener_arn}") from exc

    def forward(
        self,
        rule: Rule,
        target_groups: Sequence[str],
        service: str | None = None,
        standby: Sequence[str] = (),
    ) -> None:
        """Point the rule's forward at `target_groups`, `standby` at weight 0 (ModifyRule
        takes the whole action list)."""
        try:
            self._elbv2.modify_rule(
                RuleArn=rule.arn,
                Actions=forward_actions(rule.actions, target_groups, standby),  # type: ignore[arg-type]
            )
        except AWS_ERRORS as exc:
            raise translate(exc, f"ModifyRule {rule.arn}", service=service) from exc
        logger.info("listener rule %s now forwards to %s", rule.arn, list(target_groups))
