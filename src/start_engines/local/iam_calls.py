"""Every AWS call a function makes, recorded, and what IAM authorizes for it.

The record: one JSON line per call in `<dir>/<FunctionLogicalId>.jsonl`, with the botocore
service name, the operation and the API parameters (`{"service": "ecs", "operation": "RunTask",
"params": {...}}`). `CallRecorder.install` writes it from a botocore session's
`before-parameter-build` event (once per API call, before retries, with the caller's
parameters); any process may write the same lines, and `read_calls` reads them back.

`authorizations` turns a call into the IAM requests AWS evaluates for it: the action, each
resource ARN, and the condition keys the template relies on. RunTask is several: the task
definition, iam:PassRole for each role it passes, and ecs:TagResource when it tags the task it
creates. An operation it does not know raises UnmappedCall: a new call gets a mapping first.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from start_engines.local.iam_policy import Request

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

    import botocore.session
    from mypy_boto3_ecs import ECSClient

ECS_TASKS = "ecs-tasks.amazonaws.com"


@dataclass(frozen=True)
class Call:
    """One AWS API call as the code made it."""

    service: str  # botocore's service name: ecs, elbv2, dynamodb, events, ...
    operation: str  # e.g. RunTask
    params: Mapping[str, Any]

    def to_json(self) -> str:
        record = {"service": self.service, "operation": self.operation, "params": self.params}
        return json.dumps(record, default=str, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Call:
        record = json.loads(line)
        return cls(str(record["service"]), str(record["operation"]), dict(record["params"]))


class CallRecorder:
    """Appends each call made through a hooked session to `<directory>/<function>.jsonl`."""

    def __init__(self, directory: Path, function: str) -> None:
        self.path = directory / f"{function}.jsonl"
        self._lock = threading.Lock()

    def install(self, session: botocore.session.Session) -> None:
        """Record every call of the clients `session` creates from now on."""
        session.register("before-parameter-build", self._on_call)

    def record(self, call: Call) -> None:
        line = call.to_json() + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)

    def _on_call(self, **event: Any) -> None:
        # a copy as JSON sees it: botocore fills in idempotency tokens afterwards
        copied = json.loads(json.dumps(event["params"], default=str))
        model = event["model"]
        self.record(Call(model.service_model.service_name, model.name, copied))


def read_calls(directory: Path) -> dict[str, list[Call]]:
    """Function logical ID -> its calls, in order, from every `*.jsonl` in `directory`."""
    calls: dict[str, list[Call]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        calls[path.stem] = [Call.from_json(line) for line in lines if line.strip()]
    return calls


# --- what IAM authorizes ---------------------------------------------------------------


class UnmappedCall(ValueError):
    """A call this module does not know how IAM authorizes."""


@dataclass(frozen=True)
class Account:
    region: str
    account_id: str
    partition: str = "aws"
    # table name -> its partition key attribute, for dynamodb:LeadingKeys (default "pk")
    partition_keys: Mapping[str, str] = field(default_factory=dict)

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account_id}:{resource}"


@dataclass(frozen=True)
class TaskDefinition:
    arn: str  # with its revision
    task_role: str | None
    execution_role: str | None


class TaskDefinitions(Protocol):
    def resolve(self, reference: str) -> TaskDefinition: ...


class EcsTaskDefinitions:
    """Resolves a RunTask's `taskDefinition` (family, family:revision or ARN) through ECS, as
    ECS does before authorizing: the revision it runs and the roles it passes."""

    def __init__(self, ecs: ECSClient) -> None:
        self._ecs = ecs
        self._known: dict[str, TaskDefinition] = {}

    def resolve(self, reference: str) -> TaskDefinition:
        if reference not in self._known:
            found = self._ecs.describe_task_definition(taskDefinition=reference)
            definition = found["taskDefinition"]
            self._known[reference] = TaskDefinition(
                definition["taskDefinitionArn"],
                definition.get("taskRoleArn"),
                definition.get("executionRoleArn"),
            )
        return self._known[reference]


Mapper = Callable[[Call, Account, TaskDefinitions], list[Request]]


def authorizations(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
    """The IAM requests AWS evaluates for `call`."""
    mapper = MAPPERS.get((call.service, call.operation))
    if mapper is None:
        raise UnmappedCall(f"no IAM mapping for {call.service} {call.operation}")
    return mapper(call, account, definitions)


Context = tuple[tuple[str, str], ...]


def _key(name: str, value: str) -> Context:
    """A request's one condition key."""
    return ((name, value),)


def _unscoped(action: str) -> Mapper:
    """An action AWS authorizes on no resource: `*`."""
    return lambda call, account, definitions: [Request(action, "*")]


# ECS


def _cluster_arn(call: Call, account: Account) -> str:
    cluster = str(call.params.get("cluster") or "default")
    return cluster if cluster.startswith("arn:") else account.arn("ecs", f"cluster/{cluster}")


def _task_arn(task: str, cluster_arn: str, account: Account) -> str:
    if task.startswith("arn:"):
        return task
    return account.arn("ecs", f"task/{cluster_arn.rsplit('/', 1)[-1]}/{task}")


def _tasks(action: str, key: str) -> Mapper:
    """DescribeTasks, StopTask: each task ARN, in its cluster."""

    def mapper(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
        cluster = _cluster_arn(call, account)
        value = call.params.get(key, [])
        tasks = [value] if isinstance(value, str) else list(value)
        return [
            Request(action, _task_arn(str(task), cluster, account), _key("ecs:cluster", cluster))
            for task in tasks
        ]

    return mapper


def _list_tasks(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
    """A container instance when one is named; else `*`: Fargate has none."""
    cluster = _cluster_arn(call, account)
    instance = call.params.get("containerInstance")
    resource = "*"
    if instance:
        name = cluster.rsplit("/", 1)[-1]
        resource = (
            str(instance)
            if str(instance).startswith("arn:")
            else account.arn("ecs", f"container-instance/{name}/{instance}")
        )
    return [Request("ecs:ListTasks", resource, _key("ecs:cluster", cluster))]


def _run_task(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
    cluster = _cluster_arn(call, account)
    definition = definitions.resolve(str(call.params["taskDefinition"]))
    requests = [Request("ecs:RunTask", definition.arn, _key("ecs:cluster", cluster))]
    overrides = call.params.get("overrides") or {}  # a role there replaces the definition's
    roles = {
        overrides.get("taskRoleArn") or definition.task_role,
        overrides.get("executionRoleArn") or definition.execution_role,
    }
    requests += [
        Request("iam:PassRole", role, _key("iam:PassedToService", ECS_TASKS))
        for role in sorted(r for r in roles if r)
    ]
    tagged = call.params.get("tags") or call.params.get("propagateTags") == "TASK_DEFINITION"
    if tagged:  # the task it creates: its ID is not known yet
        name = cluster.rsplit("/", 1)[-1]
        task = account.arn("ecs", f"task/{name}/*")
        requests.append(Request("ecs:TagResource", task, _key("ecs:CreateAction", "RunTask")))
    return requests


def _resource_arn(action: str) -> Mapper:
    return lambda call, account, definitions: [Request(action, str(call.params["resourceArn"]))]


def _clusters(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
    names = call.params.get("clusters") or ["default"]
    return [
        Request("ecs:DescribeClusters", _cluster_arn(Call("ecs", "", {"cluster": n}), account))
        for n in names
    ]


# ELB, DynamoDB, EventBridge, SQS


def _param(action: str, key: str) -> Mapper:
    """The resource is the ARN in parameter `key`."""
    return lambda call, account, definitions: [Request(action, str(call.params[key]))]


def _table(name: str, account: Account) -> str:
    return name if name.startswith("arn:") else account.arn("dynamodb", f"table/{name}")


LEADING_KEYS = "dynamodb:LeadingKeys"


def _leading_keys(account: Account, table: str, keys: Iterable[Mapping[str, Any]]) -> Context:
    """dynamodb:LeadingKeys: the partition key value of each item (Key or Item) touched."""
    attribute = account.partition_keys.get(table.rsplit("/", 1)[-1], "pk")
    values = [next(iter(k[attribute].values())) for k in keys if attribute in k]
    return tuple((LEADING_KEYS, str(v)) for v in dict.fromkeys(values))


def _item(action: str) -> Mapper:
    def mapper(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
        table = str(call.params["TableName"])
        item = call.params.get("Key") or call.params.get("Item")
        keys = _leading_keys(account, table, [item] if item else [])
        return [Request(action, _table(table, account), keys)]

    return mapper


def _batch(action: str) -> Mapper:
    """BatchGetItem, BatchWriteItem: each table named in RequestItems."""

    def mapper(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
        requests = []
        for name, asked in call.params["RequestItems"].items():
            items = asked.get("Keys", []) if isinstance(asked, dict) else []
            keys = _leading_keys(account, str(name), items)
            requests.append(Request(action, _table(str(name), account), keys))
        return requests

    return mapper


def _transact(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
    """TransactWriteItems, TransactGetItems: each item's own action on its table."""
    actions = {
        "Put": "PutItem",
        "Update": "UpdateItem",
        "Delete": "DeleteItem",
        "ConditionCheck": "ConditionCheckItem",
        "Get": "GetItem",
    }
    requests = []
    for item in call.params["TransactItems"]:
        ((kind, body),) = item.items()
        requests.append(
            Request(f"dynamodb:{actions[kind]}", _table(str(body["TableName"]), account))
        )
    return requests


def _put_events(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
    buses = {str(entry.get("EventBusName") or "default") for entry in call.params["Entries"]}
    return [
        Request(
            "events:PutEvents",
            bus if bus.startswith("arn:") else account.arn("events", f"event-bus/{bus}"),
        )
        for bus in sorted(buses)
    ]


def _send_message(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
    owner, name = urlsplit(str(call.params["QueueUrl"])).path.strip("/").split("/")[-2:]
    return [
        Request("sqs:SendMessage", f"arn:{account.partition}:sqs:{account.region}:{owner}:{name}")
    ]


def _describe_stacks(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
    name = str(call.params.get("StackName") or "")
    if not name:
        return [Request("cloudformation:DescribeStacks", "*")]
    stack = name if name.startswith("arn:") else account.arn("cloudformation", f"stack/{name}/*")
    return [Request("cloudformation:DescribeStacks", stack)]


def _put_metric_data(call: Call, account: Account, definitions: TaskDefinitions) -> list[Request]:
    namespace = str(call.params["Namespace"])
    return [Request("cloudwatch:PutMetricData", "*", _key("cloudwatch:namespace", namespace))]


def _unscoped_all(
    service: str, prefix: str, operations: Iterable[str]
) -> dict[tuple[str, str], Mapper]:
    return {(service, op): _unscoped(f"{prefix}:{op}") for op in operations}


MAPPERS: dict[tuple[str, str], Mapper] = {
    ("ecs", "RunTask"): _run_task,
    ("ecs", "DescribeTasks"): _tasks("ecs:DescribeTasks", "tasks"),
    ("ecs", "StopTask"): _tasks("ecs:StopTask", "task"),
    ("ecs", "ListTasks"): _list_tasks,
    ("ecs", "TagResource"): _resource_arn("ecs:TagResource"),
    ("ecs", "UntagResource"): _resource_arn("ecs:UntagResource"),
    ("ecs", "DescribeClusters"): _clusters,
    **_unscoped_all("ecs", "ecs", ["DescribeTaskDefinition"]),
    ("elbv2", "RegisterTargets"): _param("elasticloadbalancing:RegisterTargets", "TargetGroupArn"),
    ("elbv2", "DeregisterTargets"): _param(
        "elasticloadbalancing:DeregisterTargets", "TargetGroupArn"
    ),
    ("elbv2", "ModifyRule"): _param("elasticloadbalancing:ModifyRule", "RuleArn"),
    **_unscoped_all(
        "elbv2",
        "elasticloadbalancing",
        [
            "DescribeTargetHealth",
            "DescribeTargetGroups",
            "DescribeLoadBalancers",
            "DescribeListeners",
            "DescribeRules",
        ],
    ),
    **_unscoped_all(
        "ec2",
        "ec2",
        ["DescribeNetworkInterfaces", "DescribeSubnets", "DescribeSecurityGroups", "DescribeVpcs"],
    ),
    **{
        ("dynamodb", op): _item(f"dynamodb:{op}")
        for op in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")
    },
    ("dynamodb", "BatchGetItem"): _batch("dynamodb:BatchGetItem"),
    ("dynamodb", "BatchWriteItem"): _batch("dynamodb:BatchWriteItem"),
    ("dynamodb", "TransactWriteItems"): _transact,
    ("dynamodb", "TransactGetItems"): _transact,
    ("events", "PutEvents"): _put_events,
    ("sqs", "SendMessage"): _send_message,
    ("cloudwatch", "PutMetricData"): _put_metric_data,
    ("cloudformation", "DescribeStacks"): _describe_stacks,
    **_unscoped_all("cloudwatch", "cloudwatch", ["GetMetricData", "GetMetricStatistics"]),
}
