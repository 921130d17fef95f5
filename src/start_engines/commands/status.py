"""StatusRequest: report engines' tasks and targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal


@dataclass(frozen=True)
class StatusRequest:
    """Report engines' tasks and targets."""

    kind: ClassVar[Literal["status"]] = "status"

    services: tuple[str, ...] | None
