"""A clock that moves only when someone sleeps on it: tests wait without waiting."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now())

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            if seconds > 0:
                self.sleeps.append(seconds)
                self._now += seconds


class SteppedClock(ManualClock):
    """A clock for several concurrent invocations, as a discrete-event simulation: a sleep
    blocks until the clock reaches its wake-up time, and the clock moves to the earliest
    wake-up only once every registered worker sleeps. Concurrent invocations then see one
    shared, consistent timeline, and "calls per second" means what it says."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(start)
        self._moved = threading.Condition(self._lock)
        self._workers = 0
        self._wakeups: list[float] = []

    def worker(self) -> _Worker:
        """`with clock.worker():` around each concurrent invocation."""
        return _Worker(self)

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._moved:
            wake = self._now + seconds
            self._wakeups.append(wake)
            self._step()
            while self._now < wake:
                self._moved.wait()
            self._wakeups.remove(wake)

    def _step(self) -> None:
        """With the lock held: if every worker sleeps, move to the earliest wake-up."""
        if self._workers and len(self._wakeups) >= self._workers:
            self._now = max(self._now, min(self._wakeups))
            self._moved.notify_all()

    def _join(self, change: int) -> None:
        with self._moved:
            self._workers += change
            self._step()


class _Worker:
    def __init__(self, clock: SteppedClock) -> None:
        self._clock = clock

    def __enter__(self) -> None:
        self._clock._join(1)

    def __exit__(self, *exc: object) -> None:
        self._clock._join(-1)
