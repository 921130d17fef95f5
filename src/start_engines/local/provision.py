"""Provision the five engines on the emulator, the way they look on a real account.

A VPC with two subnets and a security group; one ALB whose listener routes /api/<engine>/* to
five ip target groups, and the Lambda target group that sleeping engines' rules forward to; five clusters and five Fargate task definitions with the diagram's
names and ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from start_engines.config import SERVICE_MAPPINGS, env_prefix
from start_engines.rules import forward_actions

if TYPE_CHECKING:
    from start_engines.aws import Clients

ACCOUNT_ROLE = "arn:aws:iam::123456789012:role/{}"
LEASE_TABLE = "start-engines-leases"
# The function as deployed; here the front door calls lambda_handler in-process for it.
FUNCTION_ARN = "arn:aws:lambda:us-east-2:123456789012:function:start-engines-start"
HEALTH_CHECK_INTERVAL = 5  # the engines' groups' HealthCheckIntervalSeconds
DEREGISTRATION_DELAY = 10  # seconds a deregistered target of the engines' groups drains
ENGINE_SPECS = {
    name: (spec["cluster"], spec["taskDefinition"], int(spec["port"]))
    for name, spec in SERVICE_MAPPINGS.items()
}


@dataclass(frozen=True)
class Provisioned:
    vpc_id: str
    subnets: tuple[str, ...]
    security_group: str
    load_balancer_arn: str
    listener_arn: str
    target_groups: dict[str, str]
    rules: dict[str, str]  # engine -> its listener rule's ARN
    wake_target_group: str  # the Lambda target group, our function registered in it
    wakeable: tuple[str, ...] = ()  # engines whose rules start on the wake target group
    lease_table: str = LEASE_TABLE

    def environ(self) -> dict[str, str]:
        """The seed's environment contract, pointing at what was provisioned."""
        env = {
            "SUBNETS": ",".join(self.subnets),
            "SECURITY_GROUPS": self.security_group,
            "LEASE_TABLE": self.lease_table,
            "WAKE_TARGET_GROUP_ARN": self.wake_target_group,
        }
        for engine, arn in self.target_groups.items():
            env[f"{env_prefix(engine)}_TARGET_GROUP_ARN"] = arn
        for engine in self.wakeable:
            env[f"{env_prefix(engine)}_LISTENER_RULE_ARN"] = self.rules[engine]
        return env


def provision(
    clients: Clients,
    health_check_interval: int = HEALTH_CHECK_INTERVAL,
    wakeable: tuple[str, ...] = (),
) -> Provisioned:
    """The five engines; those in `wakeable` sleep behind the wake target group, as
    infra/alb.yaml's WakeableEngines deploys them."""
    ec2, elbv2, ecs = clients.ec2, clients.elbv2, clients.ecs
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    region = ec2.meta.region_name
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{region}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for cidr, zone in (("10.0.1.0/24", "a"), ("10.0.2.0/24", "b"))
    )
    security_group = ec2.create_security_group(
        GroupName="engines", Description="start-engines tasks", VpcId=vpc_id
    )["GroupId"]

    load_balancer_arn = elbv2.create_load_balancer(
        Name="engines-alb",
        Subnets=list(subnets),
        SecurityGroups=[security_group],
        Scheme="internal",
    )["LoadBalancers"][0]["LoadBalancerArn"]
    listener_arn = elbv2.create_listener(
        LoadBalancerArn=load_balancer_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain"},
            }
        ],
    )["Listeners"][0]["ListenerArn"]

    target_groups: dict[str, str] = {}
    rules: dict[str, str] = {}
    for priority, (engine, (cluster, family, port)) in enumerate(ENGINE_SPECS.items(), start=1):
        arn = elbv2.create_target_group(
            Name=f"{engine}-tg",
            Protocol="HTTP",
            Port=port,
            VpcId=vpc_id,
            TargetType="ip",
            HealthCheckPath="/health",
            HealthCheckIntervalSeconds=health_check_interval,
            HealthyThresholdCount=2,
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[
                {"Key": "deregistration_delay.timeout_seconds", "Value": str(DEREGISTRATION_DELAY)}
            ],
        )
        rules[engine] = elbv2.create_rule(
            ListenerArn=listener_arn,
            Priority=priority * 10,
            Conditions=[{"Field": "path-pattern", "Values": [f"/api/{engine}/*"]}],
            Actions=[{"Type": "forward", "TargetGroupArn": arn}],
        )["Rules"][0]["RuleArn"]
        target_groups[engine] = arn

        ecs.create_cluster(clusterName=cluster)
        ecs.register_task_definition(
            family=family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            executionRoleArn=ACCOUNT_ROLE.format("ecsTaskExecutionRole"),
            taskRoleArn=ACCOUNT_ROLE.format(f"{engine}-task-role"),
            containerDefinitions=[
                {
                    "name": f"{engine}-app",
                    "image": f"123456789012.dkr.ecr.{region}.amazonaws.com/{engine}:latest",
                    "memory": 512,  # moto needs a container-level memory for awsvpc
                    "essential": True,
                    "portMappings": [{"containerPort": port, "protocol": "tcp"}],
                }
            ],
        )
    wake_target_group = elbv2.create_target_group(
        Name="start-engines-wake", TargetType="lambda", HealthCheckEnabled=False
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=wake_target_group, Targets=[{"Id": FUNCTION_ARN}])
    for engine in wakeable:  # asleep: to the function, the engine's group kept at weight 0
        elbv2.modify_rule(
            RuleArn=rules[engine],
            Actions=forward_actions([], [wake_target_group], [target_groups[engine]]),  # type: ignore[arg-type]
        )
    create_lease_table(clients)
    return Provisioned(
        vpc_id=vpc_id,
        subnets=subnets,
        security_group=security_group,
        load_balancer_arn=load_balancer_arn,
        listener_arn=listener_arn,
        target_groups=target_groups,
        rules=rules,
        wake_target_group=wake_target_group,
        wakeable=wakeable,
    )


def create_lease_table(clients: Clients, name: str = LEASE_TABLE) -> None:
    """The lease table as template.yaml declares it: key `pk`, TTL on `expiresAt`."""
    dynamodb = clients.dynamodb
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
    )
