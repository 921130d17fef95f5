"""ALB health checks as the documentation describes them, computed lazily from the clock.

A target registered at clock reading r is first checked at r + `registration_delay`, then
every HealthCheckIntervalSeconds of its group (read as each check is computed): r + delay,
+ interval, + 2 intervals, ... A check passes when `serving(ip, at)` says the app listened
then (a RUNNING task owned the IP). States:

- a new target is `initial` (Elb.RegistrationInProgress) until its first check; it turns
  `healthy` on its first passing check, or `unhealthy` once UnhealthyThresholdCount checks in a
  row failed (in between: `initial`, Elb.InitialHealthChecking);
- afterwards HealthyThresholdCount passes in a row make an unhealthy target healthy, and
  UnhealthyThresholdCount failures in a row make a healthy one `unhealthy`
  (Target.FailedHealthChecks).

No threads: every check up to now is worked out when someone asks (DescribeTargetHealth),
so the answer on a manual clock is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

INITIAL, HEALTHY, UNHEALTHY = "initial", "healthy", "unhealthy"
EPSILON = 1e-6  # a check due within this of now has happened (clock sums are floats)


@dataclass(frozen=True)
class Verdict:
    state: str
    reason: str | None = None
    description: str | None = None


REGISTERING = Verdict(INITIAL, "Elb.RegistrationInProgress", "Target registration is in progress")
FIRST_CHECKS = Verdict(INITIAL, "Elb.InitialHealthChecking", "Initial health checking in progress")
FAILED = Verdict(UNHEALTHY, "Target.FailedHealthChecks", "Health checks failed")
PASSED = Verdict(HEALTHY)


@dataclass
class Checked:
    """One registered target's health-check history, as far as it was worked out."""

    registered: float
    state: str = INITIAL
    checks: int = 0
    passes: int = 0  # in a row
    failures: int = 0  # in a row
    last: float | None = None  # clock reading of the last check worked out
    healthy_at: float | None = None  # the check that first made it healthy


class HealthChecks:
    def __init__(self, registration_delay: float, serving: Callable[[str, float], bool]) -> None:
        self.registration_delay = registration_delay
        self.serving = serving
        self.targets: dict[tuple[str, str], Checked] = {}

    def register(self, group_arn: str, target_id: str, at: float) -> None:
        """A new registration starts over; the target's checks start `registration_delay` on."""
        self.targets[(group_arn, target_id)] = Checked(registered=at)

    def forget(self, group_arn: str, target_id: str) -> None:
        self.targets.pop((group_arn, target_id), None)

    def clear(self) -> None:
        self.targets.clear()

    def verdict(self, group: Any, target_id: str, now: float) -> Verdict:
        """The target's state at `now`, after every check due by then."""
        checked = self.catch_up(group, target_id, now)
        if checked is None:  # registered before the model was told: judge it now
            return PASSED if self.serving(target_id, now) else FAILED
        if checked.state == INITIAL:
            return REGISTERING if checked.checks == 0 else FIRST_CHECKS
        return PASSED if checked.state == HEALTHY else FAILED

    def catch_up(self, group: Any, target_id: str, now: float) -> Checked | None:
        """Work out the checks due by `now` with the group's current settings."""
        checked = self.targets.get((group.arn, target_id))
        if checked is None:
            return None
        interval = float(group.health_check_interval_seconds)
        healthy_after = int(group.healthy_threshold_count)
        unhealthy_after = int(group.unhealthy_threshold_count)
        while True:
            due = (
                checked.registered + self.registration_delay
                if checked.last is None
                else checked.last + interval
            )
            if due > now + EPSILON:
                return checked
            self._check(checked, self.serving(target_id, due), due, healthy_after, unhealthy_after)

    @staticmethod
    def _check(checked: Checked, passed: bool, at: float, healthy: int, unhealthy: int) -> None:
        checked.last = at
        checked.checks += 1
        checked.passes = checked.passes + 1 if passed else 0
        checked.failures = 0 if passed else checked.failures + 1
        needed = 1 if checked.state == INITIAL else healthy  # a new target needs one pass
        if checked.state != HEALTHY and checked.passes >= needed:
            checked.state = HEALTHY
        elif checked.state != UNHEALTHY and checked.failures >= unhealthy:
            checked.state = UNHEALTHY
        if checked.state == HEALTHY and checked.healthy_at is None:
            checked.healthy_at = at
