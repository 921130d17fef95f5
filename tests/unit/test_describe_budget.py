from __future__ import annotations

from start_engines.engines.budget import DescribeBudget
from start_engines.local import ManualClock

ROUND = 0.7


def run(stages: dict[str, int], rounds: int, rate: float = 1.5) -> tuple[list[list[str]], float]:
    clock = ManualClock(start=0.0)
    budget = DescribeBudget(clock, rate)
    chosen = []
    for _ in range(rounds):
        chosen.append(budget.choose(stages))
        clock.advance(ROUND)
    return chosen, clock.now()


def test_one_cluster_is_polled_every_round_after_the_first() -> None:
    chosen, _ = run({"a": 1}, 20)
    # RunTask has just told the status; then 1 / 0.7 s = 1.43 calls per second
    assert chosen == [[]] + [["a"]] * 19


def test_five_clusters_share_the_rate() -> None:
    chosen, elapsed = run({c: 1 for c in "abcde"}, 100)
    calls = sum(len(c) for c in chosen)
    assert calls <= 1 + 1.5 * elapsed
    assert {c for round_ in chosen for c in round_} == set("abcde")  # nobody starves


def test_the_task_closest_to_running_goes_first() -> None:
    chosen, _ = run({"a": 1, "b": 3, "c": 2}, 6)
    assert sum(r.count("b") for r in chosen) >= 4


def test_no_cluster_waits_more_than_five_seconds_and_a_turn_of_the_others() -> None:
    clock = ManualClock(start=0.0)
    budget = DescribeBudget(clock, 1.5)
    last = {c: 0.0 for c in "abcde"}
    for _ in range(200):
        for cluster in budget.choose({"a": 3, "b": 1, "c": 1, "d": 1, "e": 1}):
            last[cluster] = clock.now()
        # starved clusters queue behind each other: at 1.5 calls/s, five take 5 / 1.5 s
        assert all(clock.now() - at <= 5.0 + 5 / 1.5 + ROUND for at in last.values())
        clock.advance(ROUND)


def test_a_clusters_first_look_is_free_then_it_spends_the_budget() -> None:
    clock = ManualClock()
    budget = DescribeBudget(clock, rate=1.0)
    assert budget.look("auth-cluster") is True  # never described by this invocation
    assert budget.look("auth-cluster") is False  # the budget starts empty
    clock.advance(1.0)
    assert budget.look("auth-cluster") is True
    assert budget.look("auth-cluster") is False
