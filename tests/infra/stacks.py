"""Load the templates, translate SAM, and deploy both stacks to the emulator's CloudFormation."""

from __future__ import annotations

import ast
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform

from start_engines.local import Emulator

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ALB_TEMPLATE = ROOT / "infra" / "alb.yaml"
CODE_BUCKET = "start-engines-code"


def load(path: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads(json.dumps(cfn_yaml.load(str(path))))
    return template


class NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def translated_sam(emulator: Emulator) -> dict[str, Any]:
    """template.yaml as `sam deploy` would send it: code in S3, SAM translated."""
    s3 = emulator.clients()._client("s3")
    if CODE_BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(
            Bucket=CODE_BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-east-2"}
        )
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        for path in (ROOT / "src" / "start_engines").rglob("*.py"):
            archive.write(path, path.relative_to(ROOT / "src"))
    s3.put_object(Bucket=CODE_BUCKET, Key="code.zip", Body=package.getvalue())
    asl = (ROOT / "statemachine" / "start-engine.asl.json").read_bytes()
    s3.put_object(Bucket=CODE_BUCKET, Key="start-engine.asl.json", Body=asl)

    template = load(TEMPLATE)
    template["Globals"]["Function"]["CodeUri"] = f"s3://{CODE_BUCKET}/code.zip"
    machine = template["Resources"]["StartEngineStateMachine"]["Properties"]
    machine["DefinitionUri"] = {"Bucket": CODE_BUCKET, "Key": "start-engine.asl.json"}
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-2")
    result: dict[str, Any] = transform(template, {}, NoManagedPolicies())
    return result


def deploy(
    emulator: Emulator, name: str, body: dict[str, Any], parameters: dict[str, str]
) -> dict[str, Any]:
    cfn = emulator.clients()._client("cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return stack


def resources(emulator: Emulator, name: str) -> dict[str, dict[str, Any]]:
    cfn = emulator.clients()._client("cloudformation")
    summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r for r in summaries}


def role_policies(emulator: Emulator, stack: str, role: str) -> dict[str, dict[str, Any]]:
    """The inline policies of the stack's role `role` (logical ID) as IAM holds them: every
    intrinsic resolved by CloudFormation. Policy name -> document."""
    iam = emulator.clients()._client("iam")
    name = resources(emulator, stack)[role]["PhysicalResourceId"]
    documents: dict[str, dict[str, Any]] = {}
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        documents[policy] = _document(document)
    return documents


def _document(document: Any) -> dict[str, Any]:
    """IAM's answer is the document; moto's CloudFormation stores a Python repr of it."""
    if isinstance(document, dict):
        return document
    try:
        parsed: dict[str, Any] = json.loads(document)
    except json.JSONDecodeError:
        parsed = ast.literal_eval(document)
    return parsed
