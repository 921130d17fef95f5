"""How often one invocation may call DescribeTasks, and which cluster goes first."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from start_engines.clock import Clock

STAGES = {"PROVISIONING": 1, "PENDING": 2, "ACTIVATING": 3}
CONFIRMING = 4  # registered tasks awaiting their confirming look go first
STARVED_AFTER = 5.0  # seconds; a cluster not polled for this long goes first
HEAD_START = {2: 1.5, 3: 3.0}  # seconds of waiting a PENDING / ACTIVATING cluster is worth


class DescribeBudget:
    """At most `rate` DescribeTasks per second for the whole invocation, in any one second
    (ECS throttles the account, not the caller). Each round spends what has accrued: first on
    registered tasks awaiting their confirming look, then on the clusters polled longest ago
    (a status seen a while ago may well have moved on), a cluster nearer RUNNING counting as
    if it had waited longer (HEAD_START); none waits much more than STARVED_AFTER. It starts empty: RunTask has just told the status, so the first
    poll waits a round."""

    def __init__(self, clock: Clock, rate: float) -> None:
        self.clock = clock
        self.rate = rate
        self.tokens = 0.0
        self.at = clock.now()
        self.polled: dict[str, float] = {}
        self.recent: deque[float] = deque()  # the calls of the last second

    def choose(self, stages: dict[str, int]) -> list[str]:
        now = self.clock.now()
        # a burst never exceeds one second's worth: the rate holds in every second
        self.tokens = min(max(1.0, self.rate), self.tokens + self.rate * (now - self.at))
        self.at = now

        for cluster in stages:
            self.polled.setdefault(cluster, now)  # a new cluster's tasks were just described

        def priority(cluster: str) -> tuple[bool, bool, float]:
            waited = now - self.polled[cluster]
            # what was seen last ages: a task seen PENDING a while ago may be RUNNING by now;
            # a cluster nearer RUNNING counts as if it had waited longer
            return (
                stages[cluster] == CONFIRMING,
                waited >= STARVED_AFTER,
                waited + HEAD_START.get(stages[cluster], 0.0),
            )

        while self.recent and now - self.recent[0] >= 1.0:
            self.recent.popleft()
        room = math.ceil(self.rate) - len(self.recent)  # no second ever sees more than rate
        chosen = sorted(stages, key=priority, reverse=True)[: max(0, min(int(self.tokens), room))]
        self.tokens -= len(chosen)
        for cluster in chosen:
            self.polled[cluster] = now
            self.recent.append(now)
        return chosen

    def look(self, cluster: str) -> bool:
        """May one DescribeTasks of `cluster` go now? Its first look is free (nothing told
        this invocation its tasks' status yet); later ones spend the budget."""
        if cluster not in self.polled:
            self.polled[cluster] = self.clock.now()
            return True
        return bool(self.choose({cluster: 0}))
