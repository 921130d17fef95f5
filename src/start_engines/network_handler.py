"""NetworkHandler: the EC2 reads the pre-flight check needs. ClientError stops here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from start_engines.aws import AWS_ERRORS, has_code, translate

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_ec2 import EC2Client


class NetworkHandler:
    def __init__(self, ec2: EC2Client) -> None:
        self._ec2 = ec2

    def missing_subnets(self, subnet_ids: Sequence[str]) -> list[str]:
        found: set[str] = set()
        for subnet_id in subnet_ids:  # one by one: a missing id fails the whole call
            try:
                subnets = self._ec2.describe_subnets(SubnetIds=[subnet_id]).get("Subnets", [])
            except AWS_ERRORS as exc:
                if has_code(exc, "InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"):
                    continue
                raise translate(exc, f"DescribeSubnets {subnet_id}") from exc
            found.update(s["SubnetId"] for s in subnets)
        return [s for s in subnet_ids if s not in found]

    def subnet_places(self, subnet_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(Availability Zone, VPC) of each subnet that exists."""
        if not subnet_ids:
            return {}
        try:
            subnets = self._ec2.describe_subnets(SubnetIds=list(subnet_ids)).get("Subnets", [])
        except AWS_ERRORS as exc:
            if has_code(exc, "InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"):
                return {}  # reported by missing_subnets
            raise translate(exc, "DescribeSubnets") from exc
        return {s["SubnetId"]: (s.get("AvailabilityZone", ""), s.get("VpcId", "")) for s in subnets}

    def missing_security_groups(self, group_ids: Sequence[str]) -> list[str]:
        found: set[str] = set()
        for group_id in group_ids:
            try:
                groups = self._ec2.describe_security_groups(GroupIds=[group_id]).get(
                    "SecurityGroups", []
                )
            except AWS_ERRORS as exc:
                if has_code(
                    exc,
                    "InvalidGroup.NotFound",
                    "InvalidGroupId.Malformed",
                    "InvalidGroupId.NotFound",
                ):
                    continue
                raise translate(exc, f"DescribeSecurityGroups {group_id}") from exc
            found.update(g["GroupId"] for g in groups)
        return [g for g in group_ids if g not in found]
