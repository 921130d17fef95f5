"""EventBridge schedule rules, fired on the emulator's clock (moto never fires them).

`fire_due()` fires each enabled rule whose rate(...) or cron(...) came due since it last
fired (or since the rule was first seen) on the clock's wall time, and says which. A rule
that came due several times since (the clock jumped) fires once: a jump stands for time
nobody watched, not for a backlog. Tests call `fire_due()` after moving the clock; the demo
calls it from a thread (`start`).
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from start_engines.clock import Clock
    from start_engines.local.wiring import Wiring

logger = logging.getLogger(__name__)

UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
MAX_CRON_MINUTES = 366 * 24 * 60  # how far a cron expression is searched


class Schedules:
    def __init__(self, clock: Clock, wiring: Wiring) -> None:
        self._clock = clock
        self._wiring = wiring
        self._last: dict[str, datetime] = {}
        self._stop: threading.Event | None = None
        self.fired: list[tuple[datetime, str]] = []  # (due time, rule name)
        self.skipped: set[str] = set()  # rules whose expression is not emulated

    def arm(self) -> None:
        """Start counting every schedule rule from now."""
        now = self._clock.wall()
        for rule in _schedule_rules():
            self._last.setdefault(rule.arn, now)

    def fire_due(self) -> list[str]:
        now = self._clock.wall()
        fired = []
        for rule in _schedule_rules():
            last = self._last.setdefault(rule.arn, now)
            try:
                due = last_due(rule.scheduled_expression, last, now)
            except ValueError:  # valid on AWS perhaps (L, W, #), not here: skip that rule only
                if rule.arn not in self.skipped:
                    self.skipped.add(rule.arn)
                    logger.warning(
                        "schedule %s: %r not emulated", rule.name, rule.scheduled_expression
                    )
                continue
            if due is None:
                continue
            self._last[rule.arn] = due
            if rule.state != "ENABLED":
                continue
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": rule.account_id,
                "time": due.timestamp(),
                "region": rule.region_name,
                "resources": [rule.arn],
                "detail": {},
            }
            self.fired.append((due, rule.name))
            fired.append(rule.name)
            self._wiring.deliver_scheduled(rule, event)
        return fired

    def start(self, every: float = 1.0) -> None:
        """Fire due schedules every `every` real seconds, in a thread, until `stop()`."""
        stop = self._stop = threading.Event()

        def run() -> None:
            while not stop.wait(every):
                self.fire_due()

        threading.Thread(target=run, name="schedules", daemon=True).start()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None


def last_due(expression: str, after: datetime, until: datetime) -> datetime | None:
    """The latest time in (after, until] the schedule comes due, None if none."""
    rate = re.fullmatch(r"rate\((\d+) (\w+)\)", expression.strip())
    if rate:
        period = int(rate.group(1)) * UNITS[rate.group(2)]
        count = int((until - after).total_seconds() // period)
        return after + timedelta(seconds=count * period) if count else None
    cron = re.fullmatch(r"cron\((.+)\)", expression.strip())
    if not cron:
        raise ValueError(f"not a schedule expression: {expression!r}")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ValueError(f"a cron expression has six fields: {expression!r}")
    at = until.replace(second=0, microsecond=0)
    for _ in range(MAX_CRON_MINUTES):
        if at <= after:
            return None
        if cron_matches(fields, at):
            return at
        at -= timedelta(minutes=1)
    return None


def cron_matches(fields: list[str], at: datetime) -> bool:
    """EventBridge cron fields: minutes hours day-of-month month day-of-week year (UTC).
    Supported: *, ?, numbers, names, ranges, lists and /steps (not L, W or #)."""
    minute, hour, day, month, weekday, year = fields
    iso_weekday = at.isoweekday() % 7 + 1  # SUN=1 ... SAT=7, as EventBridge counts
    return (
        _field(minute, at.minute, 0, 59)
        and _field(hour, at.hour, 0, 23)
        and _field(day, at.day, 1, 31)
        and _field(month, at.month, 1, 12, MONTHS)
        and _field(weekday, iso_weekday, 1, 7, DAYS)
        and _field(year, at.year, 1970, 2199)
    )


def _field(spec: str, value: int, low: int, high: int, names: dict[str, int] | None = None) -> bool:
    for part in spec.upper().split(","):
        if part in ("*", "?"):
            return True
        base, _, step = part.partition("/")
        if base in ("*", ""):
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = _number(first, names), _number(last, names)
        else:
            start = _number(base, names)
            end = high if step else start
        if start <= value <= end and (value - start) % int(step or 1) == 0:
            return True
    return False


def _number(text: str, names: dict[str, int] | None) -> int:
    return (names or {}).get(text) or int(text)


def _schedule_rules() -> list[Any]:
    from moto.events.models import events_backends

    return [
        rule
        for accounts in events_backends.values()
        for backend in accounts.values()
        for bus in backend.event_buses.values()
        for rule in list(bus.rules.values())
        if rule.scheduled_expression
    ]
