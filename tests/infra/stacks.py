"""The templates' deployment on the emulator, from local/stack.py, for an Emulator."""

from __future__ import annotations

import ast
import json
from typing import Any

from start_engines.local import Emulator, stack
from start_engines.local.stack import ALB_TEMPLATE, CODE_BUCKET, ROOT, TEMPLATE, load

__all__ = ["ALB_TEMPLATE", "CODE_BUCKET", "ROOT", "TEMPLATE", "deploy", "load", "resources"]


def translated_sam(emulator: Emulator) -> dict[str, Any]:
    return stack.translated_sam(emulator.clients())


def deploy(
    emulator: Emulator, name: str, body: dict[str, Any], parameters: dict[str, str]
) -> dict[str, Any]:
    return stack.deploy(emulator.clients(), name, body, parameters)


def resources(emulator: Emulator, name: str) -> dict[str, dict[str, Any]]:
    return stack.resources(emulator.clients(), name)


def role_policies(emulator: Emulator, stack_name: str, role: str) -> dict[str, dict[str, Any]]:
    """The inline policies of the stack's role `role` (logical ID) as IAM holds them: every
    intrinsic resolved by CloudFormation. Policy name -> document."""
    iam = emulator.clients()._client("iam")
    name = resources(emulator, stack_name)[role]["PhysicalResourceId"]
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
