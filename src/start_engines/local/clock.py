"""Clocks for the emulator: a clock that moves only when someone sleeps on it (tests wait
without waiting), and clocks worker processes share (SharedClock, ScaledClock)."""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import tempfile
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from start_engines.clock import SystemClock

if TYPE_CHECKING:
    from start_engines.clock import Clock

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


# --- clocks other processes can share (the deployed stack's function workers) -----------------

CLOCK_ENV = "START_ENGINES_LOCAL_CLOCK"
_SLOT = struct.Struct("d")


class SharedClock(ManualClock):
    """A ManualClock whose reading lives in a small file mapped into memory: worker processes
    attach to it by `spec()` and read and move the same time. A sleep anywhere moves it for
    everyone, at once, as ManualClock's does."""

    def __init__(self, start: float = 1000.0, path: str | None = None) -> None:
        super().__init__(start)
        self.owner = path is None
        if path is None:
            fd, path = tempfile.mkstemp(prefix="start-engines-clock-")
            os.write(fd, _SLOT.pack(start))
            os.close(fd)
            weakref.finalize(self, _unlink, path)
        self.path = path
        self._file = open(path, "r+b")  # noqa: SIM115 - mapped for the clock's whole life
        self._map = mmap.mmap(self._file.fileno(), _SLOT.size)

    def spec(self) -> str:
        return f"manual:{self.path}"

    def now(self) -> float:
        value: float = _SLOT.unpack_from(self._map, 0)[0]
        return value

    def advance(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            try:
                _SLOT.pack_into(self._map, 0, self.now() + seconds)
            finally:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self.sleeps.append(seconds)


class ScaledClock:
    """Real time, `factor` times faster: emulated = origin + real elapsed x factor. Shared by
    `spec()` (CLOCK_MONOTONIC is one clock for every process on Linux); `make demo` can run
    an accelerated day with it."""

    def __init__(
        self,
        factor: float = 1.0,
        origin: float | None = None,
        start: float = 1000.0,
        wall_start: datetime | None = None,
    ) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = factor
        self.origin = time.monotonic() if origin is None else origin
        self.start = start
        self.wall_start = wall_start or datetime.now(UTC)

    def spec(self) -> str:
        wall = self.wall_start.timestamp()
        return f"scaled:{self.factor!r}:{self.origin!r}:{self.start!r}:{wall!r}"

    def now(self) -> float:
        return self.start + (time.monotonic() - self.origin) * self.factor

    def wall(self) -> datetime:
        return self.wall_start + timedelta(seconds=self.now() - self.start)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.factor)


_SPEED = struct.Struct("ddd")  # emulated reading, monotonic reading, speed


class VariableClock:
    """Real time at a speed that can change while it runs: emulated = e0 + (real - r0) x speed,
    where (e0, r0, speed) live in a small mapped file that every process attached by `spec()`
    reads on each call. `make demo` runs the interesting minutes at 1x and fast-forwards the
    idle ones."""

    def __init__(
        self, speed: float = 1.0, start: float = 1000.0, wall_start: datetime | None = None
    ) -> None:
        fd, path = tempfile.mkstemp(prefix="start-engines-clock-")
        os.write(fd, _SPEED.pack(start, time.monotonic(), _positive(speed)))
        os.close(fd)
        weakref.finalize(self, _unlink, path)
        self._attach(path, start, wall_start or datetime.now(UTC))

    @classmethod
    def attached(cls, path: str, start: float, wall_start: datetime) -> VariableClock:
        clock = cls.__new__(cls)
        clock._attach(path, start, wall_start)
        return clock

    def _attach(self, path: str, start: float, wall_start: datetime) -> None:
        self.path, self.start, self.wall_start = path, start, wall_start
        self._file = open(path, "r+b")  # noqa: SIM115 - mapped for the clock's whole life
        self._map = mmap.mmap(self._file.fileno(), _SPEED.size)

    def spec(self) -> str:
        return f"variable:{self.start!r}:{self.wall_start.timestamp()!r}:{self.path}"

    @property
    def speed(self) -> float:
        speed: float = _SPEED.unpack_from(self._map, 0)[2]
        return speed

    def set_speed(self, speed: float) -> None:
        """From now on, `speed` emulated seconds per real second (for every process)."""
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        try:
            now = self.now()
            _SPEED.pack_into(self._map, 0, now, time.monotonic(), _positive(speed))
        finally:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    def now(self) -> float:
        emulated, real, speed = _SPEED.unpack_from(self._map, 0)
        return float(emulated + (time.monotonic() - real) * speed)

    def wall(self) -> datetime:
        return self.wall_start + timedelta(seconds=self.now() - self.start)

    def sleep(self, seconds: float) -> None:
        """Sleep until the clock has moved `seconds`, whatever its speed does meanwhile."""
        wake = self.now() + seconds
        while (left := wake - self.now()) > 0:
            time.sleep(min(left / self.speed, 0.05))


def _positive(speed: float) -> float:
    if speed <= 0:
        raise ValueError("speed must be positive")
    return speed


def clock_spec(clock: Clock) -> str:
    """How another process rebuilds `clock` (clock_from_spec); "system" for real time."""
    spec = getattr(clock, "spec", None)
    if callable(spec):
        return str(spec())
    if isinstance(clock, SystemClock):
        return "system"
    raise ValueError(f"{type(clock).__name__} cannot be shared with other processes")


def clock_from_spec(spec: str) -> Clock:
    kind, _, rest = spec.partition(":")
    if kind == "manual":
        return SharedClock(path=rest)
    if kind == "scaled":
        factor, origin, start, wall = (float(part) for part in rest.split(":"))
        return ScaledClock(factor, origin, start, datetime.fromtimestamp(wall, UTC))
    if kind == "variable":
        began, wall_began, path = rest.split(":", 2)
        wall_start = datetime.fromtimestamp(float(wall_began), UTC)
        return VariableClock.attached(path, float(began), wall_start)
    if kind == "system":
        return SystemClock()
    raise ValueError(f"unknown clock spec {spec!r}")


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
