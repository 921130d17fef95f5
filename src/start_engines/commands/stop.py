"""StopRequest: stop engines, or one task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

DEFAULT_STOP_REASON = "stopped by start-engines"


@dataclass(frozen=True)
class StopRequest:
    """Stop engines (all of them with None), or one task."""

    kind: ClassVar[Literal["stop"]] = "stop"

    services: tuple[str, ...] | None  # None: every engine
    task_id: str | None = None
    include_foreign: bool = False
    wait_for_draining: bool = False
    reason: str = DEFAULT_STOP_REASON
