"""The templates' deployment on the emulator, from local/stack.py, for an Emulator."""

from __future__ import annotations

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
