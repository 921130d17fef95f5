"""Deploy infra/alb.yaml and template.yaml on the emulator's CloudFormation, as `sam deploy`
would: the code packed to S3, SAM translated, the ALB stack's outputs fed to the SAM stack.

samtranslator and cfn-lint come with the dev extra; they are imported only here, when a
stack is deployed. The templates are read from the source tree.

Three moto gaps are filled around CreateStack (README "Run the whole stack locally"):
- moto's CloudFormation creates a state machine without its DefinitionS3Location and
  DefinitionSubstitutions, and in the backend that moto's ASL interpreter does not read: the
  state machine is created again there, from the uploaded definition, substitutions made.
- moto's CloudFormation leaves a list parameter's default one string (`list_defaults`).
- moto's CloudFormation would run Custom::WakeTarget in Docker: the stack is created without
  it, and the function is registered in the wake target group as the custom resource does.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from start_engines.local.workers import FunctionSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from start_engines.aws import Clients
    from start_engines.local.provision import Provisioned

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
ALB_TEMPLATE = ROOT / "infra" / "alb.yaml"
STATE_MACHINE = ROOT / "statemachine" / "start-engine.asl.json"
CODE_BUCKET = "start-engines-code"
ENGINES = ("Auth", "Pdf", "Fa", "Users", "Batch")
FUNCTIONS = ("StartEnginesFunction", "TaskStateFunction")
ALB_STACK = "engines-alb"
SAM_STACK = "engines"


def task_roles(clients: Clients) -> list[str]:
    """The roles the engines' task definitions name (task and execution roles): what RunTask
    passes, and so what the TaskRoleArns parameter lets the start function pass."""
    from start_engines.config import SERVICE_MAPPINGS

    roles: set[str] = set()
    for spec in SERVICE_MAPPINGS.values():
        found = clients.ecs.describe_task_definition(taskDefinition=spec["taskDefinition"])
        definition = found["taskDefinition"]
        roles.update(
            r for r in (definition.get("taskRoleArn"), definition.get("executionRoleArn")) if r
        )
    return sorted(roles)


def load(path: Path) -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

    template: dict[str, Any] = json.loads(json.dumps(cfn_yaml.load(str(path))))
    return template


class NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def translated_sam(clients: Clients) -> dict[str, Any]:
    """template.yaml as `sam deploy` would send it: code in S3, SAM translated."""
    from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

    s3 = clients._client("s3")
    if CODE_BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        region = s3.meta.region_name
        s3.create_bucket(
            Bucket=CODE_BUCKET, CreateBucketConfiguration={"LocationConstraint": region}
        )
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        for path in (ROOT / "src" / "start_engines").rglob("*.py"):
            archive.write(path, path.relative_to(ROOT / "src"))
    s3.put_object(Bucket=CODE_BUCKET, Key="code.zip", Body=package.getvalue())
    s3.put_object(Bucket=CODE_BUCKET, Key="start-engine.asl.json", Body=STATE_MACHINE.read_bytes())

    template = load(TEMPLATE)
    template["Globals"]["Function"]["CodeUri"] = f"s3://{CODE_BUCKET}/code.zip"
    machine = template["Resources"]["StartEngineStateMachine"]["Properties"]
    machine["DefinitionUri"] = {"Bucket": CODE_BUCKET, "Key": "start-engine.asl.json"}
    os.environ.setdefault("AWS_DEFAULT_REGION", s3.meta.region_name)
    result: dict[str, Any] = transform(template, {}, NoManagedPolicies())
    return result


def deploy(
    clients: Clients, name: str, body: dict[str, Any], parameters: Mapping[str, str]
) -> dict[str, Any]:
    cfn = clients._client("cloudformation")
    given = {**list_defaults(body), **parameters}
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return stack


def list_defaults(body: Mapping[str, Any]) -> dict[str, str]:
    """The defaults of the list parameters (CommaDelimitedList, List<...>). moto's
    CloudFormation splits a list parameter's value only when it is passed: a default stays
    one string, and !Join over it joins its characters. Passed, they are lists, as on AWS."""
    return {
        name: str(parameter["Default"])
        for name, parameter in body.get("Parameters", {}).items()
        if "Default" in parameter
        and (
            parameter.get("Type") == "CommaDelimitedList"
            or parameter.get("Type", "").startswith("List<")
        )
    }


def resources(clients: Clients, name: str) -> dict[str, dict[str, Any]]:
    cfn = clients._client("cloudformation")
    summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r for r in summaries}


def outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


@dataclass(frozen=True)
class DeployedStack:
    alb: dict[str, Any]  # DescribeStacks of each
    sam: dict[str, Any]
    sam_template: dict[str, Any]  # as translated
    functions: dict[str, FunctionSpec]  # by logical id
    resources: dict[str, dict[str, Any]]  # the SAM stack's, by logical id

    @property
    def alb_outputs(self) -> dict[str, str]:
        return outputs(self.alb)

    @property
    def sam_outputs(self) -> dict[str, str]:
        return outputs(self.sam)

    def physical_id(self, logical_id: str) -> str:
        return str(self.resources[logical_id]["PhysicalResourceId"])


def deploy_both(
    clients: Clients,
    provisioned: Provisioned,
    wakeable: tuple[str, ...] = (),
    **parameters: str,
) -> DeployedStack:
    """The ALB stack, then the SAM stack fed by its outputs. `wakeable`: engines whose first
    request wakes them (WakeableEngines and <Engine>ListenerRuleArn). `parameters` override
    the SAM stack's."""
    certificate = clients._client("acm").request_certificate(DomainName="engines.example.com")[
        "CertificateArn"
    ]
    alb = deploy(
        clients,
        ALB_STACK,
        load(ALB_TEMPLATE),
        {
            "VpcId": provisioned.vpc_id,
            "PublicSubnets": ",".join(provisioned.subnets),
            "CertificateArn": certificate,
            "DeletionProtection": "false",
            "WakeableEngines": ",".join(wakeable),
        },
    )
    alb_outputs = outputs(alb)
    body = translated_sam(clients)
    without_custom = {k: v for k, v in body["Resources"].items() if k != "WakeTarget"}
    sam_parameters = {
        "Subnets": ",".join(provisioned.subnets),
        "SecurityGroups": provisioned.security_group,
        "TaskRoleArns": ",".join(task_roles(clients)),
        **{f"{e}TargetGroupArns": alb_outputs[f"{e}TargetGroupArns"] for e in ENGINES},
        **{
            f"{e}ListenerRuleArn": alb_outputs[f"{e}ListenerRuleArn"]
            for e in ENGINES
            if e.lower() in wakeable
        },
        **parameters,
    }
    if wakeable:
        sam_parameters.setdefault("WakeTargetGroupArn", alb_outputs["WakeTargetGroupArn"])
    sam = deploy(clients, SAM_STACK, {**body, "Resources": without_custom}, sam_parameters)
    created = resources(clients, SAM_STACK)
    awslambda = clients._client("lambda")
    functions = {
        logical: FunctionSpec.from_configuration(
            logical,
            awslambda.get_function_configuration(
                FunctionName=created[logical]["PhysicalResourceId"]
            ),
        )
        for logical in FUNCTIONS
    }
    deployed = DeployedStack(alb, sam, body, functions, created)
    if "StartEngineStateMachine" in created:
        recreate_state_machine(clients, deployed)
    wake = sam_parameters.get("WakeTargetGroupArn")
    if wake:  # what Custom::WakeTarget does (wake_target.py)
        clients.elbv2.register_targets(
            TargetGroupArn=wake, Targets=[{"Id": functions["StartEnginesFunction"].arn}]
        )
    return deployed


def recreate_state_machine(clients: Clients, deployed: DeployedStack) -> None:
    """The state machine as Step Functions would hold it: its definition from S3 with
    DefinitionSubstitutions made, in the backend StartExecution reaches (see module doc)."""
    from moto.stepfunctions.models import stepfunctions_backends
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    arn = deployed.physical_id("StartEngineStateMachine")
    _, _, _, region, account, _, name = arn.split(":", 6)
    translated = deployed.sam_template["Resources"]["StartEngineStateMachine"]["Properties"]
    location = translated["DefinitionS3Location"]
    text = (
        clients._client("s3")
        .get_object(Bucket=location["Bucket"], Key=location["Key"])["Body"]
        .read()
        .decode("utf-8")
    )
    values = {"StartEnginesFunctionArn": deployed.functions["StartEnginesFunction"].arn}
    for key in translated.get("DefinitionSubstitutions", {}):
        text = text.replace("${" + key + "}", values[key])
    created = stepfunctions_backends[account][region].describe_state_machine(arn)
    created.definition = text
    parser = stepfunctions_parser_backends[account][region]
    if not any(m.arn == arn for m in parser.state_machines):
        parser.create_state_machine(name, text, created.roleArn)


def subscribe_queue(clients: Clients, name: str, detail_type: str) -> str:
    """An SQS queue that a rule on the default bus (the stack's outgoing events) feeds with
    start-engines' `detail_type` events, as a subscriber would set it up. Returns its URL."""
    sqs = clients._client("sqs")
    url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    pattern = {"source": ["start-engines"], "detail-type": [detail_type]}
    clients.events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    clients.events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
    return url


def queue_messages(clients: Clients, url: str) -> list[dict[str, Any]]:
    """The events waiting in the queue (up to 10), as EventBridge put them there."""
    found = clients._client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in found.get("Messages", [])]
