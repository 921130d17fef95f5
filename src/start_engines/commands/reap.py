"""ReapRequest: stop idle engines and engines past their maximum lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal


@dataclass(frozen=True)
class ReapRequest:
    """Stop idle engines and engines past their maximum lifetime."""

    kind: ClassVar[Literal["reap"]] = "reap"

    services: tuple[str, ...] | None
    dry_run: bool = False
