"""TargetGroupHandler: ELBv2 calls only (register, deregister, health). ClientError stops here."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from start_engines.aws import AWS_ERRORS, has_code, translate
from start_engines.errors import RegistrationFailed, StartTimeout, TargetGroupNotFound

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client

    from start_engines.clock import Deadline

logger = logging.getLogger(__name__)

NOT_FOUND = {
    "TargetGroupNotFound": TargetGroupNotFound,
    "TargetGroupNotFoundException": TargetGroupNotFound,
}


@dataclass(frozen=True)
class TargetHealth:
    target_group_arn: str
    ip: str
    port: int
    state: str
    reason: str | None = None


@dataclass(frozen=True)
class TargetGroupInfo:
    arn: str
    target_type: str
    protocol: str
    port: int
    load_balancer_arns: tuple[str, ...]
    vpc_id: str = ""


class TargetGroupHandler:
    def __init__(self, elbv2: ElasticLoadBalancingv2Client) -> None:
        self._elbv2 = elbv2

    def describe_target_group(self, arn: str) -> TargetGroupInfo | None:
        """The group, or None if it does not exist."""
        try:
            groups = self._elbv2.describe_target_groups(TargetGroupArns=[arn]).get(
                "TargetGroups", []
            )
        except AWS_ERRORS as exc:
            if has_code(exc, *NOT_FOUND):
                return None
            raise translate(exc, f"DescribeTargetGroups {arn}") from exc
        if not groups:
            return None
        group = groups[0]
        return TargetGroupInfo(
            arn=arn,
            target_type=group.get("TargetType", "instance"),
            protocol=group.get("Protocol", ""),
            port=int(group.get("Port", 0)),
            load_balancer_arns=tuple(group.get("LoadBalancerArns", [])),
            vpc_id=group.get("VpcId", ""),
        )

    def served_zones(self, load_balancer_arns: Sequence[str]) -> set[str]:
        """The Availability Zones these load balancers have nodes in."""
        if not load_balancer_arns:
            return set()
        try:
            balancers = self._elbv2.describe_load_balancers(
                LoadBalancerArns=list(load_balancer_arns)
            ).get("LoadBalancers", [])
        except AWS_ERRORS as exc:
            raise translate(exc, "DescribeLoadBalancers") from exc
        return {
            zone["ZoneName"]
            for balancer in balancers
            for zone in balancer.get("AvailabilityZones", [])
            if "ZoneName" in zone
        }

    def register_target(
        self, target_group_arns: Sequence[str], ip: str, port: int, service: str | None = None
    ) -> list[str]:
        """Register ip:port in each target group, in order; returns the groups done.

        On failure the error carries `registeredIn` (the groups done before it), so the
        caller can undo exactly those.
        """
        done: list[str] = []
        for arn in target_group_arns:
            try:
                self._elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": ip, "Port": port}])
            except AWS_ERRORS as exc:
                error = translate(
                    exc,
                    f"RegisterTargets {ip}:{port} in {arn}",
                    service=service,
                    codes=NOT_FOUND,
                    details={"targetGroupArn": arn, "registeredIn": list(done)},
                )
                if not isinstance(error, TargetGroupNotFound):
                    error = RegistrationFailed(
                        error.message, service=service, details=error.details
                    )
                raise error from exc
            done.append(arn)
            logger.info("registered %s:%s in %s", ip, port, arn)
        return done

    def deregister_target(
        self, target_group_arns: Sequence[str], ip: str, port: int, service: str | None = None
    ) -> list[str]:
        """Deregister ip:port from each group. Idempotent: a target or group already gone counts
        as done. Returns the groups it was deregistered from by this call."""
        removed: list[str] = []
        for arn in target_group_arns:
            try:
                self._elbv2.deregister_targets(
                    TargetGroupArn=arn, Targets=[{"Id": ip, "Port": port}]
                )
            except AWS_ERRORS as exc:
                if has_code(exc, "InvalidTarget", *NOT_FOUND):
                    continue
                raise translate(
                    exc, f"DeregisterTargets {ip}:{port} from {arn}", service=service
                ) from exc
            removed.append(arn)
            logger.info("deregistered %s:%s from %s", ip, port, arn)
        return removed

    def get_target_health(
        self, target_group_arn: str, service: str | None = None
    ) -> list[TargetHealth]:
        """Every target of the group with its health state."""
        try:
            response = self._elbv2.describe_target_health(TargetGroupArn=target_group_arn)
        except AWS_ERRORS as exc:
            raise translate(
                exc,
                f"DescribeTargetHealth {target_group_arn}",
                service=service,
                codes=NOT_FOUND,
                details={"targetGroupArn": target_group_arn},
            ) from exc
        return [
            TargetHealth(
                target_group_arn=target_group_arn,
                ip=d["Target"]["Id"],
                port=int(d["Target"].get("Port", 0)),
                state=d.get("TargetHealth", {}).get("State", "unknown"),
                reason=d.get("TargetHealth", {}).get("Reason"),
            )
            for d in response.get("TargetHealthDescriptions", [])
        ]

    def health_of(
        self, target_group_arns: Sequence[str], ip: str, port: int, service: str | None = None
    ) -> dict[str, str]:
        """The state of ip:port in each group ('unregistered' where it is absent)."""
        states: dict[str, str] = {}
        for arn in target_group_arns:
            match = [
                t for t in self.get_target_health(arn, service) if t.ip == ip and t.port == port
            ]
            states[arn] = match[0].state if match else "unregistered"
        return states

    def wait_for_healthy(
        self,
        target_group_arns: Sequence[str],
        ip: str,
        port: int,
        deadline: Deadline,
        *,
        interval: float,
        service: str | None = None,
    ) -> dict[str, str]:
        """Poll until ip:port is healthy in every group; StartTimeout at the deadline."""
        while True:
            states = self.health_of(target_group_arns, ip, port, service)
            if all(state == "healthy" for state in states.values()):
                return states
            if deadline.expired():
                raise StartTimeout(
                    f"target {ip}:{port} not healthy in time: {states}",
                    service=service,
                    details={"healthStatus": states},
                )
            deadline.sleep(interval)

    def wait_until_drained(
        self, targets: Sequence[tuple[str, str, int]], deadline: Deadline, *, interval: float
    ) -> bool:
        """Poll (group, ip, port) targets until none is `draining`; False at the deadline."""
        pending = list(targets)
        while pending:
            health = {arn: self.get_target_health(arn) for arn in {arn for arn, _, _ in pending}}
            pending = [
                (arn, ip, port)
                for arn, ip, port in pending
                if any(t.ip == ip and t.port == port and t.state == "draining" for t in health[arn])
            ]
            if not pending:
                break
            if deadline.expired():
                return False
            deadline.sleep(interval)
        return True
