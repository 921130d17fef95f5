"""Schedule expressions as EventBridge reads them, and clocks shared across processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from start_engines.local.clock import ScaledClock, SharedClock, VariableClock, clock_from_spec
from start_engines.local.schedules import last_due

MONDAY = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def test_rate_comes_due_once_per_period_counted_from_the_last() -> None:
    assert last_due("rate(5 minutes)", MONDAY, MONDAY + timedelta(minutes=4, seconds=59)) is None
    assert last_due("rate(5 minutes)", MONDAY, MONDAY + timedelta(minutes=5)) == MONDAY + timedelta(
        minutes=5
    )
    # a jump over three periods: the latest one
    assert last_due("rate(1 hour)", MONDAY, MONDAY + timedelta(hours=3, minutes=1)) == (
        MONDAY + timedelta(hours=3)
    )


def test_cron_weekdays_in_utc() -> None:
    morning = "cron(0 7 ? * MON-FRI *)"
    assert last_due(morning, MONDAY, MONDAY + timedelta(minutes=59)) is None
    assert last_due(morning, MONDAY, MONDAY + timedelta(hours=1)) == MONDAY.replace(hour=7)
    saturday = datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
    assert last_due(morning, saturday, saturday + timedelta(days=2)) is None  # the weekend
    assert last_due(morning, saturday, saturday + timedelta(days=2, hours=7)) == datetime(
        2026, 1, 12, 7, 0, tzinfo=UTC
    )
    assert last_due("cron(*/15 * * * ? *)", MONDAY, MONDAY + timedelta(minutes=31)) == (
        MONDAY + timedelta(minutes=30)
    )


@pytest.mark.parametrize("expression", ["rate(5)", "cron(0 7 * *)", "every day"])
def test_a_bad_expression_is_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="expression"):
        last_due(expression, MONDAY, MONDAY + timedelta(days=1))


def test_a_shared_clock_moves_for_every_holder() -> None:
    clock = SharedClock(start=50.0)
    other = clock_from_spec(clock.spec())
    other.sleep(7.5)
    assert clock.now() == other.now() == 57.5
    assert clock.wall() == other.wall()


def test_a_scaled_clock_is_rebuilt_from_its_spec() -> None:
    clock = ScaledClock(factor=60.0, origin=0.0, start=10.0, wall_start=MONDAY)
    copy = clock_from_spec(clock.spec())
    assert isinstance(copy, ScaledClock)
    assert (copy.factor, copy.origin, copy.start, copy.wall_start) == (60.0, 0.0, 10.0, MONDAY)
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(factor=0)


def test_a_variable_clock_changes_speed_for_every_holder() -> None:
    clock = VariableClock(speed=1.0, start=10.0, wall_start=MONDAY)
    copy = clock_from_spec(clock.spec())
    assert isinstance(copy, VariableClock)
    assert copy.now() >= 10.0
    clock.set_speed(60.0)  # the copy reads the new speed from the shared file
    assert copy.speed == 60.0
    first, second = clock.now(), copy.now()
    assert 0 <= second - first < 60.0  # one timeline: apart by the calls' own microseconds
    assert copy.wall() >= MONDAY + timedelta(seconds=second - 10.0)
    with pytest.raises(ValueError, match="positive"):
        clock.set_speed(0)
