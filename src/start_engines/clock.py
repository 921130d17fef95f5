"""Time as a dependency: every wait takes a Clock and a Deadline, so tests never sleep for real."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def wall(self) -> datetime:
        """The current UTC time, for ages, expiries and metric windows."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass(frozen=True)
class Deadline:
    """A point in time on a clock; waits stop there."""

    clock: Clock
    at: float

    @classmethod
    def after(cls, clock: Clock, seconds: float) -> Deadline:
        return cls(clock, clock.now() + max(0.0, seconds))

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock.now())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def within(self, seconds: float) -> Deadline:
        """The earlier of this deadline and `seconds` from now."""
        return Deadline(self.clock, min(self.at, self.clock.now() + max(0.0, seconds)))

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, but never past the deadline."""
        self.clock.sleep(min(seconds, self.remaining()))
