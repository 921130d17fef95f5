"""Fixtures the integration tests share beyond tests/conftest.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from start_engines.engines.wake import forget_rules
from start_engines.local import Emulator
from tests.integration.wake_helpers import forward

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def pdf_sleeps(aws: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """pdf wakes on requests: its rule forwards to the wake target group."""
    provisioned = aws.provisioned
    assert provisioned is not None
    monkeypatch.setenv("PDF_LISTENER_RULE_ARN", provisioned.rules["pdf"])
    forward(aws, "pdf", provisioned.wake_target_group)
    forget_rules()
    yield aws
    forward(aws, "pdf", provisioned.target_groups["pdf"])
    forget_rules()
