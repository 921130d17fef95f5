from __future__ import annotations

from typing import Any

import pytest

from start_engines.errors import BadEvent
from start_engines.events import StartRequest, parse_event
from tests.conftest import load_event, start_event


def test_seed_event() -> None:
    command = parse_event(load_event("start-auth.json"))
    assert command == StartRequest(
        services=("auth",), wait_for_healthy=False, event_id="6a7e8feb-b491-4cf7-a9f1-bf3703467718"
    )


def test_wait_for_healthy() -> None:
    assert parse_event(load_event("start-auth-wait-healthy.json")).wait_for_healthy is True


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ([], "event"),
        ("auth", "event"),
        ({"source": "custom.app"}, "detail-type"),
        ({"detail-type": "Launch Missiles", "detail": {"service": "auth"}}, "detail-type"),
        ({"detail-type": 7, "detail": {"service": "auth"}}, "detail-type"),
        ({"detail-type": "Start ECS Task"}, "detail"),
        ({"detail-type": "Start ECS Task", "detail": "auth"}, "detail"),
        ({"detail-type": "Start ECS Task", "detail": ["auth"]}, "detail"),
        ({"detail-type": "Start ECS Task", "detail": None}, "detail"),
        (start_event(None), "detail.service"),
        (start_event(42), "detail.service"),
        (start_event(["auth"]), "detail.service"),
        (start_event(""), "detail.service"),
        (start_event("   "), "detail.service"),
        (start_event("a" * 65), "detail.service"),
        ({"detail-type": "Start ECS Task", "detail": {}}, "detail.service"),
        (start_event("auth", cluster="other"), "detail.cluster"),
        (start_event("auth", waitForHealthy="yes"), "detail.waitForHealthy"),
        ({**start_event(), "id": 12}, "id"),
    ],
)
def test_malformed_events_name_the_field(event: Any, field: str) -> None:
    with pytest.raises(BadEvent) as info:
        parse_event(event)
    assert info.value.field == field
    assert info.value.status_code == 400
    assert info.value.message


def test_a_task_state_change_names_a_task_of_its_own_cluster() -> None:
    """A task ARN of another cluster than clusterArn is refused by its field: the handler
    would otherwise look for it in the wrong cluster (a call the role denies)."""
    event = load_event("ecs-task-running.json")
    cluster = event["detail"]["clusterArn"].rsplit("/", 1)[-1]
    other = event["detail"]["taskArn"].replace(f"task/{cluster}/", "task/other-cluster/")
    assert other != event["detail"]["taskArn"]
    with pytest.raises(BadEvent) as info:
        parse_event({**event, "detail": {**event["detail"], "taskArn": other}})
    assert info.value.field == "detail.taskArn"
    old_format = event["detail"]["taskArn"].replace(f"task/{cluster}/", "task/")
    parsed = parse_event({**event, "detail": {**event["detail"], "taskArn": old_format}})
    assert parsed.task_arn == old_format  # type: ignore[union-attr]
