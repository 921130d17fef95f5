"""One start in flight per engine, across invocations: a DynamoDB conditional-write lease.

Items (partition key `pk`, TTL attribute `expiresAt` in epoch seconds):
- `lease#<engine>`: the engine's one owner. `state` is `starting` (a start decides and runs
  tasks; `taskArns` names them once run), `stopping` (a reap decides and claims tasks), or
  `failed` for a short cooldown after a failed start so concurrent events do not retry in a
  storm. A live holder renews `expiresAt` (a heartbeat), never past its own Lambda deadline,
  so a dead holder blocks nobody for long. A start handed off to the task-state entry point
  keeps its claim until its task is registered or the claim expires. A stop sets `preempted`
  on a `starting` claim: that start must not answer with its tasks.
- `wake#<engine>`: when the first request woke the engine, until its rule is switched.
- `event#<event id>#<engine>`: the tasks an event started, so a redelivered event (or one with
  `force`/`count`) never starts more.
- `task#<task arn>`: a task's state as the task-state entry point last read it (pushed by
  its events), so a start learns it without DescribeTasks. Newer versions only.
DynamoDB calls only; ClientError stops here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from start_engines.aws import AWS_ERRORS, has_code, translate

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from mypy_boto3_dynamodb import DynamoDBClient

    from start_engines.ecs_handler import TaskInfo

logger = logging.getLogger(__name__)

EVENT_RECORD_SECONDS = 24 * 3600
WAKE_RECORD_SECONDS = 3600
TASK_RECORD_SECONDS = 3600
BATCH_GET_KEYS = 100  # BatchGetItem's limit


@dataclass(frozen=True)
class LeaseHolder:
    owner: str
    state: str
    expires_at: float
    error: str | None = None
    task_arns: tuple[str, ...] = ()
    preempted: bool = False
    handed_off: bool = False  # its start answered 202; its task's events end it
    requester: str | None = None  # a failed start's caller, as it said
    failed_at: float | None = None  # epoch seconds
    error_type: str | None = None


HELD, PREEMPTED, LOST = "held", "preempted", "lost"


@dataclass(frozen=True)
class TaskState:
    """A task as the task-state entry point read it. `seen_at` (epoch seconds) is when that
    DescribeTasks began: the state is at least that fresh."""

    arn: str
    last_status: str
    desired_status: str
    version: int
    seen_at: float
    private_ip: str | None = None
    stopping: str | None = None


class Lease:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._dynamodb = dynamodb
        self.table = table

    def acquire(
        self, engine: str, owner: str, now: datetime, seconds: float, state: str = "starting"
    ) -> LeaseHolder | None:
        """Take the engine's lease. None if taken; else the holder that keeps it."""
        epoch = now.timestamp()
        try:
            self._dynamodb.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": f"lease#{engine}"},
                    "owner": {"S": owner},
                    "state": {"S": state},
                    "expiresAt": {"N": f"{epoch + seconds:.3f}"},
                },
                ConditionExpression="attribute_not_exists(pk) OR expiresAt < :now",
                ExpressionAttributeValues={":now": {"N": f"{epoch:.3f}"}},
            )
        except AWS_ERRORS as exc:
            if has_code(exc, "ConditionalCheckFailedException"):
                return self.holder(engine)
            raise translate(exc, f"PutItem lease#{engine} in {self.table}", service=engine) from exc
        return None

    def holder(self, engine: str) -> LeaseHolder | None:
        item = self._get(f"lease#{engine}", engine)
        if item is None:
            return None
        return LeaseHolder(
            owner=item.get("owner", {}).get("S", ""),
            state=item.get("state", {}).get("S", "starting"),
            expires_at=float(item.get("expiresAt", {}).get("N", "0")),
            error=item.get("error", {}).get("S"),
            task_arns=tuple(item.get("taskArns", {}).get("SS", [])),
            preempted=bool(item.get("preempted", {}).get("BOOL", False)),
            handed_off=bool(item.get("handedOff", {}).get("BOOL", False)),
            requester=item.get("requester", {}).get("S"),
            failed_at=float(item["failedAt"]["N"]) if "failedAt" in item else None,
            error_type=item.get("errorType", {}).get("S"),
        )

    def renew(self, engine: str, owner: str, now: datetime, seconds: float) -> str:
        """Extend our claim (the heartbeat). HELD, PREEMPTED (a stop came), or LOST."""
        if self._write(
            engine,
            "UpdateItem",
            UpdateExpression="SET expiresAt = :until",
            ConditionExpression="#owner = :owner AND attribute_not_exists(preempted)",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":until": {"N": f"{now.timestamp() + seconds:.3f}"},
            },
        ):
            return HELD
        holder = self.holder(engine)
        return PREEMPTED if holder and holder.owner == owner and holder.preempted else LOST

    def record_tasks(self, engine: str, owner: str, task_arns: Sequence[str]) -> None:
        """Name the tasks our start runs or reuses, so followers and stops find them by ARN."""
        self._update_own(engine, owner, "SET taskArns = :arns", {":arns": {"SS": list(task_arns)}})

    def hand_off(self, engine: str, owner: str, now: datetime, seconds: float) -> None:
        """Keep the claim past our invocation, until the task-state entry point ends it."""
        self._update_own(
            engine,
            owner,
            "SET expiresAt = :until, handedOff = :yes",
            {":until": {"N": f"{now.timestamp() + seconds:.3f}"}, ":yes": {"BOOL": True}},
        )

    def preempt(self, engine: str, now: datetime) -> bool:
        """Flag a live `starting` claim: a stop came during that start. True if one was."""
        return self._write(
            engine,
            "UpdateItem",
            UpdateExpression="SET preempted = :yes",
            ConditionExpression="#state = :starting AND expiresAt > :now",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":yes": {"BOOL": True},
                ":starting": {"S": "starting"},
                ":now": {"N": f"{now.timestamp():.3f}"},
            },
        )

    def end_claim(self, engine: str, task_arn: str) -> bool:
        """End the claim of a handed-off start that names this task. A live holder's claim is
        never ended here: that start settles its own claim."""
        return self._write(
            engine,
            "DeleteItem",
            ConditionExpression="handedOff = :yes AND contains(taskArns, :arn)",
            ExpressionAttributeValues={":yes": {"BOOL": True}, ":arn": {"S": task_arn}},
        )

    def fail_claim(
        self,
        engine: str,
        task_arn: str,
        error: str,
        error_type: str,
        now: datetime,
        cooldown: float,
    ) -> bool:
        """A handed-off start's task failed: its claim becomes the failure cooldown."""
        epoch = now.timestamp()
        return self._write(
            engine,
            "UpdateItem",
            UpdateExpression=(
                "SET #state = :failed, #error = :error, errorType = :type, expiresAt = :until, "
                "failedAt = :at REMOVE handedOff"
            ),
            ConditionExpression="handedOff = :yes AND contains(taskArns, :arn)",
            ExpressionAttributeNames={"#state": "state", "#error": "error"},
            ExpressionAttributeValues={
                ":yes": {"BOOL": True},
                ":arn": {"S": task_arn},
                ":failed": {"S": "failed"},
                ":error": {"S": error[:1000]},
                ":type": {"S": error_type},
                ":until": {"N": f"{epoch + cooldown:.3f}"},
                ":at": {"N": f"{epoch:.3f}"},
            },
        )

    def release(self, engine: str, owner: str) -> None:
        """Give the claim up; one that expired and was taken since is not ours to release."""
        self._write(
            engine,
            "DeleteItem",
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}},
        )

    def release_unflagged(self, engine: str, owner: str) -> bool:
        """Give our claim up unless a stop flagged it (`preempted`). True if released."""
        return self._write(
            engine,
            "DeleteItem",
            ConditionExpression="#owner = :owner AND attribute_not_exists(preempted)",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}},
        )

    def fail(
        self,
        engine: str,
        owner: str,
        error: str,
        now: datetime,
        cooldown: float,
        requester: str | None = None,
        error_type: str = "StartFailed",
    ) -> None:
        """Keep the lease for `cooldown` seconds, marked failed, so followers report it."""
        values: dict[str, Any] = {
            ":failed": {"S": "failed"},
            ":error": {"S": error[:1000]},
            ":type": {"S": error_type},
            ":until": {"N": f"{now.timestamp() + cooldown:.3f}"},
            ":at": {"N": f"{now.timestamp():.3f}"},
        }
        expression = (
            "SET #state = :failed, #error = :error, errorType = :type, expiresAt = :until, "
            "failedAt = :at"
        )
        if requester:
            expression += ", requester = :requester"
            values[":requester"] = {"S": requester}
        self._update_own(engine, owner, expression, values, {"#state": "state", "#error": "error"})

    def remember_event(
        self, event_id: str, engine: str, task_arns: Sequence[str], now: datetime
    ) -> None:
        try:
            self._dynamodb.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": f"event#{event_id}#{engine}"},
                    "taskArns": {"SS": list(task_arns)},
                    "expiresAt": {"N": f"{now.timestamp() + EVENT_RECORD_SECONDS:.0f}"},
                },
            )
        except AWS_ERRORS as exc:
            raise translate(exc, f"PutItem event#{event_id}", service=engine) from exc

    def remember_wake(self, engine: str, now: datetime) -> None:
        """When the first request woke the engine (for the wake latency); later ones keep it."""
        epoch = now.timestamp()
        try:
            self._dynamodb.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": f"wake#{engine}"},
                    "at": {"N": f"{epoch:.3f}"},
                    "expiresAt": {"N": f"{epoch + WAKE_RECORD_SECONDS:.0f}"},
                },
                ConditionExpression="attribute_not_exists(pk) OR expiresAt < :now",
                ExpressionAttributeValues={":now": {"N": f"{epoch:.3f}"}},
            )
        except AWS_ERRORS as exc:
            if not has_code(exc, "ConditionalCheckFailedException"):
                raise translate(exc, f"PutItem wake#{engine}", service=engine) from exc

    def take_wake(self, engine: str) -> float | None:
        """The first request's time (epoch seconds), once: the record goes with it."""
        try:
            old = self._dynamodb.delete_item(
                TableName=self.table, Key={"pk": {"S": f"wake#{engine}"}}, ReturnValues="ALL_OLD"
            ).get("Attributes")
        except AWS_ERRORS as exc:
            raise translate(exc, f"DeleteItem wake#{engine}", service=engine) from exc
        return float(old["at"]["N"]) if old and "at" in old else None

    def event_tasks(self, event_id: str, engine: str) -> tuple[str, ...]:
        item = self._get(f"event#{event_id}#{engine}", engine)
        return tuple(item.get("taskArns", {}).get("SS", [])) if item else ()

    def events_tasks(self, event_id: str, engines: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """event_tasks for several engines in one read. An engine left out (throttled) is
        unknown, not "no tasks": its caller reads it alone."""
        prefix = f"event#{event_id}#"
        read = self._batch_get([f"{prefix}{engine}" for engine in engines], f"{prefix}*")
        found: dict[str, tuple[str, ...]] = {e: () for e in engines if f"{prefix}{e}" in read}
        for key, item in read.items():
            if item is not None:
                found[key.removeprefix(prefix)] = tuple(item.get("taskArns", {}).get("SS", []))
        return found

    def record_task_state(self, task: TaskInfo, seen_at: datetime, now: datetime) -> bool:
        """Record what a DescribeTasks that began at `seen_at` showed of the task, unless a
        newer look is recorded (events come out of order). True if written."""
        item: dict[str, Any] = {
            "pk": {"S": f"task#{task.arn}"},
            "lastStatus": {"S": task.last_status},
            "desiredStatus": {"S": task.desired_status},
            "version": {"N": str(task.version)},
            "seenAt": {"N": f"{math.floor(seen_at.timestamp() * 1000) / 1000:.3f}"},  # not later
            "writtenAt": {"N": f"{now.timestamp():.3f}"},
            "expiresAt": {"N": f"{now.timestamp() + TASK_RECORD_SECONDS:.0f}"},
        }
        if task.private_ip:
            item["privateIp"] = {"S": task.private_ip}
        if task.stopping:
            item["stopping"] = {"S": task.stopping}
        try:
            self._dynamodb.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression=(
                    "attribute_not_exists(pk) OR #version < :version "
                    "OR (#version = :version AND seenAt < :seen)"
                ),
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={":version": item["version"], ":seen": item["seenAt"]},
            )
        except AWS_ERRORS as exc:
            if has_code(exc, "ConditionalCheckFailedException"):
                return False
            raise translate(exc, f"PutItem task#{task.id}", service=task.engine) from exc
        return True

    def task_states(self, arns: Sequence[str]) -> dict[str, TaskState]:
        """The recorded states of these tasks (consistent reads), by ARN; absent if none."""
        found: dict[str, TaskState] = {}
        # throttled keys are simply not seen this round: the start polls them instead
        for item in self._batch_get([f"task#{arn}" for arn in arns], "task#*").values():
            state = _task_state(item) if item is not None else None
            if state is not None:
                found[state.arn] = state
        return found

    def _batch_get(self, keys: Sequence[str], what: str) -> dict[str, dict[str, Any] | None]:
        """Consistent reads of these items, by key: None for an item that does not exist; a
        key left out was not read (BatchGetItem's unprocessed keys, under throttling)."""
        read: dict[str, dict[str, Any] | None] = {}
        wanted = list(dict.fromkeys(keys))
        while wanted:
            batch, wanted = wanted[:BATCH_GET_KEYS], wanted[BATCH_GET_KEYS:]
            try:
                response = self._dynamodb.batch_get_item(
                    RequestItems={
                        self.table: {
                            "Keys": [{"pk": {"S": k}} for k in batch],
                            "ConsistentRead": True,
                        }
                    }
                )
            except AWS_ERRORS as exc:
                raise translate(exc, f"BatchGetItem {what} in {self.table}") from exc
            left: dict[str, Any] = response.get("UnprocessedKeys", {})
            skipped = {k.get("pk", {}).get("S") for k in left.get(self.table, {}).get("Keys", [])}
            read.update({k: None for k in batch if k not in skipped})
            for item in response.get("Responses", {}).get(self.table, []):
                key = item.get("pk", {}).get("S")
                if isinstance(key, str):
                    read[key] = item
        return read

    def _get(self, key: str, engine: str) -> dict[str, Any] | None:
        try:
            response = self._dynamodb.get_item(
                TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True
            )
        except AWS_ERRORS as exc:
            raise translate(exc, f"GetItem {key} in {self.table}", service=engine) from exc
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _update_own(
        self,
        engine: str,
        owner: str,
        expression: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> None:
        if not self._write(
            engine,
            "UpdateItem",
            UpdateExpression=expression,
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": "owner", **(names or {})},
            ExpressionAttributeValues={":owner": {"S": owner}, **values},
        ):
            logger.warning("lease of %s is no longer held by %s", engine, owner)

    def _write(self, engine: str, action: str, **request: Any) -> bool:
        """A conditional UpdateItem or DeleteItem of the engine's lease item: False when its
        condition does not hold, the project's error for anything else."""
        call = self._dynamodb.update_item if action == "UpdateItem" else self._dynamodb.delete_item
        try:
            call(TableName=self.table, Key={"pk": {"S": f"lease#{engine}"}}, **request)
        except AWS_ERRORS as exc:
            if has_code(exc, "ConditionalCheckFailedException"):
                return False
            raise translate(exc, f"{action} lease#{engine}", service=engine) from exc
        return True


def _task_state(item: dict[str, Any]) -> TaskState | None:
    """The record as written by record_task_state; None (no record) for anything else, so a
    start falls back to DescribeTasks."""
    try:
        return TaskState(
            arn=item["pk"]["S"].removeprefix("task#"),
            last_status=item["lastStatus"]["S"],
            desired_status=item["desiredStatus"]["S"],
            version=int(item["version"]["N"]),
            seen_at=float(item["seenAt"]["N"]),
            private_ip=item.get("privateIp", {}).get("S"),
            stopping=item.get("stopping", {}).get("S"),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        logger.warning("ignoring a malformed record %s", str(item.get("pk"))[:200])
        return None
