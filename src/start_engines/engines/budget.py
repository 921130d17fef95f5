"""How often one invocation may call DescribeTasks, and which cluster goes first."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from start_engines.clock import Clock

STAGES = {"PROVISIONING": 1, "PENDING": 2, "ACTIVATING": 3}
CONFIRMING = 4  # registered tasks awaiting their confirming look go first
STARVED_AFTER = 5.0  # seconds; a cluster not polled for this long goes first


class DescribeBudget:
    """At most `rate` DescribeTasks per second for the whole invocation (ECS throttles the
    account, not the caller). Each round spends what has accrued on the clusters whose tasks
    are closest to RUNNING, then on those polled longest ago; none waits much more than
    STARVED_AFTER (starved clusters take turns). One cluster is polled every round; five share the same rate. It starts
    empty: RunTask has just told the status, so the first poll waits a round."""

    def __init__(self, clock: Clock, rate: float) -> None:
        self.clock = clock
        self.rate = rate
        self.tokens = 0.0
        self.at = clock.now()
        self.polled: dict[str, float] = {}

    def choose(self, stages: dict[str, int]) -> list[str]:
        now = self.clock.now()
        self.tokens = min(max(1.0, len(stages)), self.tokens + self.rate * (now - self.at))
        self.at = now

        for cluster in stages:
            self.polled.setdefault(cluster, now)  # a new cluster's tasks were just described

        def priority(cluster: str) -> tuple[bool, int, float]:
            waited = now - self.polled[cluster]
            return (waited >= STARVED_AFTER, stages[cluster], waited)

        chosen = sorted(stages, key=priority, reverse=True)[: int(self.tokens)]
        self.tokens -= len(chosen)
        for cluster in chosen:
            self.polled[cluster] = now
        return chosen

    def look(self, cluster: str) -> bool:
        """May one DescribeTasks of `cluster` go now? Its first look is free (nothing told
        this invocation its tasks' status yet); later ones spend the budget."""
        if cluster not in self.polled:
            self.polled[cluster] = self.clock.now()
            return True
        return bool(self.choose({cluster: 0}))
