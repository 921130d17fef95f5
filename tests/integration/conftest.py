"""Fixtures the integration tests share beyond tests/conftest.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from start_engines.engines.wake import forget_rules
from start_engines.local import Emulator
from start_engines.local.moto_http import MotoHttpServer
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


@pytest.fixture
def moto_server() -> Iterator[tuple[MotoHttpServer, str]]:
    """A moto endpoint of the test's own (local/moto_http.py) on moto's in-process backends:
    a broken server does not take the session's emulator down. Yields it and its URL."""
    started = MotoHttpServer()
    url = started.start()
    yield started, url
    started.stop()
