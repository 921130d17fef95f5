"""StartRequest: start one or more engines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal


@dataclass(frozen=True)
class StartRequest:
    """Start one or more engines."""

    kind: ClassVar[Literal["start"]] = "start"

    services: tuple[str, ...]
    wait_for_healthy: bool = False
    event_id: str | None = None
    count: int | None = None
    force: bool = False
    listed: bool = False  # asked with `services`: answer with one result per engine
    asynchronous: bool = False  # answer 202 once RunTask succeeds; reconcile registers
    wait_budget: float | None = None  # with asynchronous: wait at most this long first
    overrides: tuple[tuple[str, Any], ...] = ()  # validated shape; the engine decides if allowed
    requester: str | None = None  # who asks, as the caller says (words of a refusal only)
