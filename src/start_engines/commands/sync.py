"""SyncRequest: bring target groups in line with running tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal


@dataclass(frozen=True)
class SyncRequest:
    """Bring target groups in line with running tasks."""

    kind: ClassVar[Literal["sync"]] = "sync"

    services: tuple[str, ...] | None
