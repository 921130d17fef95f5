from __future__ import annotations

from start_engines.clock import Deadline
from start_engines.local import ManualClock


def test_deadline_never_sleeps_past_itself() -> None:
    clock = ManualClock(start=0.0)
    deadline = Deadline.after(clock, 2.0)
    deadline.sleep(5.0)
    assert clock.now() == 2.0
    assert deadline.expired()
    assert deadline.remaining() == 0.0


def test_within_takes_the_earlier() -> None:
    clock = ManualClock(start=0.0)
    deadline = Deadline.after(clock, 10.0)
    assert deadline.within(3.0).at == 3.0
    assert deadline.within(30.0).at == 10.0


def test_negative_budget_is_already_expired() -> None:
    assert Deadline.after(ManualClock(), -5.0).expired()


def test_a_stepped_clock_moves_only_when_every_worker_sleeps() -> None:
    import threading

    from start_engines.local.clock import SteppedClock

    clock = SteppedClock(start=0.0)
    woke: dict[str, float] = {}
    first_asleep = threading.Event()

    def sleeper(name: str, seconds: float, started: threading.Event | None = None) -> None:
        with clock.worker():
            if started is not None:
                started.set()
            clock.sleep(seconds)
            woke[name] = clock.now()

    with clock.worker():  # a third worker, busy: time must not move while it runs
        a = threading.Thread(target=sleeper, args=("a", 2.0, first_asleep))
        b = threading.Thread(target=sleeper, args=("b", 5.0))
        a.start()
        b.start()
        first_asleep.wait(5)
        assert clock.now() == 0.0
    a.join(5)
    b.join(5)
    assert woke == {"a": 2.0, "b": 5.0}  # each woke at its own time on one timeline
