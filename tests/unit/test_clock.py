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
