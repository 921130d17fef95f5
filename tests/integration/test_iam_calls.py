"""Recording AWS calls through a botocore hook, and mapping each to what IAM authorizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from start_engines.local import Emulator
from start_engines.local.emulator import REGION
from start_engines.local.iam_calls import (
    Account,
    Call,
    CallRecorder,
    EcsTaskDefinitions,
    UnmappedCall,
    authorizations,
    read_calls,
)
from start_engines.local.iam_policy import Request

ACCOUNT = Account(REGION, "123456789012")
ECS = "arn:aws:ecs:us-east-2:123456789012"
ROLE = "arn:aws:iam::123456789012:role/{}"
BUS = "arn:aws:events:us-east-2:123456789012:event-bus"


@pytest.fixture
def definitions(aws: Emulator) -> EcsTaskDefinitions:
    return EcsTaskDefinitions(aws.clients().ecs)


def requests(call: Call, definitions: EcsTaskDefinitions) -> list[Request]:
    return authorizations(call, ACCOUNT, definitions)


def test_a_hooked_session_records_each_call_and_another_process_can_too(
    aws: Emulator, tmp_path: Path
) -> None:
    assert aws.provisioned is not None
    group = aws.provisioned.target_groups["auth"]
    recorded = aws.clients(hook=CallRecorder(tmp_path, "StartEnginesFunction").install)
    recorded.ecs.list_tasks(cluster="auth-cluster", startedBy="start-engines")
    recorded.elbv2.describe_target_health(TargetGroupArn=group)
    aws.clients().ecs.list_tasks(cluster="pdf-cluster")  # clients of another session: not recorded
    # a worker process writes the same lines, for its own function
    line = {"service": "dynamodb", "operation": "GetItem", "params": {"TableName": "t"}}
    (tmp_path / "TaskStateFunction.jsonl").write_text(json.dumps(line) + "\n")
    assert read_calls(tmp_path) == {
        "StartEnginesFunction": [
            Call("ecs", "ListTasks", {"cluster": "auth-cluster", "startedBy": "start-engines"}),
            Call("elbv2", "DescribeTargetHealth", {"TargetGroupArn": group}),
        ],
        "TaskStateFunction": [Call("dynamodb", "GetItem", {"TableName": "t"})],
    }


def test_run_task_is_its_task_definition_the_roles_it_passes_and_its_tags(
    aws: Emulator, definitions: EcsTaskDefinitions
) -> None:
    revision = aws.clients().ecs.describe_task_definition(taskDefinition="auth-api-task")[
        "taskDefinition"
    ]["taskDefinitionArn"]
    call = Call(
        "ecs",
        "RunTask",
        {"cluster": "auth-cluster", "taskDefinition": "auth-api-task", "tags": [{"key": "k"}]},
    )
    cluster = (("ecs:cluster", f"{ECS}:cluster/auth-cluster"),)
    passed = (("iam:PassedToService", "ecs-tasks.amazonaws.com"),)
    assert requests(call, definitions) == [
        Request("ecs:RunTask", revision, cluster),
        Request("iam:PassRole", ROLE.format("auth-task-role"), passed),
        Request("iam:PassRole", ROLE.format("ecsTaskExecutionRole"), passed),
        Request(
            "ecs:TagResource", f"{ECS}:task/auth-cluster/*", (("ecs:CreateAction", "RunTask"),)
        ),
    ]
    overridden = Call(
        "ecs",
        "RunTask",
        {
            "cluster": f"{ECS}:cluster/auth-cluster",
            "taskDefinition": revision,
            "overrides": {"taskRoleArn": ROLE.format("other")},
        },
    )
    assert requests(overridden, definitions) == [
        Request("ecs:RunTask", revision, cluster),
        Request("iam:PassRole", ROLE.format("ecsTaskExecutionRole"), passed),
        Request("iam:PassRole", ROLE.format("other"), passed),  # instead of the definition's
    ]


def test_tasks_are_named_in_their_cluster(definitions: EcsTaskDefinitions) -> None:
    cluster = (("ecs:cluster", f"{ECS}:cluster/pdf-cluster"),)
    describe = Call(
        "ecs",
        "DescribeTasks",
        {"cluster": "pdf-cluster", "tasks": ["abc", f"{ECS}:task/pdf-cluster/d"]},
    )
    assert requests(describe, definitions) == [
        Request("ecs:DescribeTasks", f"{ECS}:task/pdf-cluster/abc", cluster),
        Request("ecs:DescribeTasks", f"{ECS}:task/pdf-cluster/d", cluster),
    ]
    stop = Call("ecs", "StopTask", {"cluster": "pdf-cluster", "task": "abc"})
    assert requests(stop, definitions) == [
        Request("ecs:StopTask", f"{ECS}:task/pdf-cluster/abc", cluster)
    ]
    listed = Call("ecs", "ListTasks", {"cluster": "pdf-cluster", "desiredStatus": "RUNNING"})
    assert requests(listed, definitions) == [Request("ecs:ListTasks", "*", cluster)]
    default = Call("ecs", "ListTasks", {})
    assert requests(default, definitions) == [
        Request("ecs:ListTasks", "*", (("ecs:cluster", f"{ECS}:cluster/default"),))
    ]
    tag = Call("ecs", "UntagResource", {"resourceArn": f"{ECS}:task/pdf-cluster/d", "tagKeys": []})
    assert requests(tag, definitions) == [Request("ecs:UntagResource", f"{ECS}:task/pdf-cluster/d")]


def test_load_balancer_lease_and_event_calls(definitions: EcsTaskDefinitions) -> None:
    group = "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/auth-tg/0123"
    table = "arn:aws:dynamodb:us-east-2:123456789012:table/leases"
    cases = [
        (
            Call("elbv2", "RegisterTargets", {"TargetGroupArn": group, "Targets": []}),
            [Request("elasticloadbalancing:RegisterTargets", group)],
        ),
        (
            Call("elbv2", "DescribeTargetHealth", {"TargetGroupArn": group}),
            [Request("elasticloadbalancing:DescribeTargetHealth", "*")],
        ),
        (
            Call("dynamodb", "PutItem", {"TableName": "leases", "Item": {}}),
            [Request("dynamodb:PutItem", table)],
        ),
        (  # the partition key's value: dynamodb:LeadingKeys
            Call(
                "dynamodb",
                "PutItem",
                {"TableName": "leases", "Item": {"pk": {"S": "task#t1"}, "v": {"N": "2"}}},
            ),
            [Request("dynamodb:PutItem", table, (("dynamodb:LeadingKeys", "task#t1"),))],
        ),
        (
            Call("dynamodb", "UpdateItem", {"TableName": "leases", "Key": {"pk": {"S": "a"}}}),
            [Request("dynamodb:UpdateItem", table, (("dynamodb:LeadingKeys", "a"),))],
        ),
        (
            Call(
                "dynamodb",
                "BatchGetItem",
                {
                    "RequestItems": {
                        "leases": {"Keys": [{"pk": {"S": "task#1"}}, {"pk": {"S": "task#2"}}]},
                        table + "2": {},
                    }
                },
            ),
            [
                Request(
                    "dynamodb:BatchGetItem",
                    table,
                    (("dynamodb:LeadingKeys", "task#1"), ("dynamodb:LeadingKeys", "task#2")),
                ),
                Request("dynamodb:BatchGetItem", table + "2"),
            ],
        ),
        (
            Call(
                "dynamodb",
                "TransactWriteItems",
                {
                    "TransactItems": [
                        {"Put": {"TableName": "leases"}},
                        {"Delete": {"TableName": "x"}},
                    ]
                },
            ),
            [
                Request("dynamodb:PutItem", table),
                Request("dynamodb:DeleteItem", table.replace("leases", "x")),
            ],
        ),
        (
            Call(
                "events", "PutEvents", {"Entries": [{"Source": "s"}, {"EventBusName": "engines"}]}
            ),
            [
                Request("events:PutEvents", f"{BUS}/default"),
                Request("events:PutEvents", f"{BUS}/engines"),
            ],
        ),
        (
            Call(
                "sqs",
                "SendMessage",
                {
                    "QueueUrl": "https://sqs.us-east-2.amazonaws.com/123456789012/dlq",
                    "MessageBody": "",
                },
            ),
            [Request("sqs:SendMessage", "arn:aws:sqs:us-east-2:123456789012:dlq")],
        ),
    ]
    for call, expected in cases:
        assert requests(call, definitions) == expected, call


def test_a_call_without_a_mapping_fails_loudly(definitions: EcsTaskDefinitions) -> None:
    with pytest.raises(UnmappedCall, match="ecs DeleteCluster"):
        requests(Call("ecs", "DeleteCluster", {"cluster": "auth-cluster"}), definitions)
