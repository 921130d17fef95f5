"""One start in flight per engine, across invocations: a DynamoDB conditional-write lease.

Items (partition key `pk`, TTL attribute `expiresAt` in epoch seconds):
- `lease#<engine>`: held by the invocation that is starting the engine. `state` is `starting`,
  or `failed` for a short cooldown after a failed start so concurrent events do not retry in
  a storm.
- `event#<event id>#<engine>`: the tasks an event started, so a redelivered event (or one with
  `force`/`count`) never starts more.
DynamoDB calls only; ClientError stops here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from start_engines.aws import AWS_ERRORS, has_code, translate

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from mypy_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

EVENT_RECORD_SECONDS = 24 * 3600


@dataclass(frozen=True)
class LeaseHolder:
    owner: str
    state: str
    expires_at: float
    error: str | None = None


class Lease:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._dynamodb = dynamodb
        self.table = table

    def acquire(self, engine: str, owner: str, now: datetime, seconds: float) -> LeaseHolder | None:
        """Take the engine's lease. None if taken; else the holder that keeps it."""
        epoch = now.timestamp()
        try:
            self._dynamodb.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": f"lease#{engine}"},
                    "owner": {"S": owner},
                    "state": {"S": "starting"},
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
        )

    def release(self, engine: str, owner: str) -> None:
        try:
            self._dynamodb.delete_item(
                TableName=self.table,
                Key={"pk": {"S": f"lease#{engine}"}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except AWS_ERRORS as exc:
            if has_code(exc, "ConditionalCheckFailedException"):
                return  # expired and taken by another invocation: not ours to release
            raise translate(exc, f"DeleteItem lease#{engine}", service=engine) from exc

    def fail(self, engine: str, owner: str, error: str, now: datetime, cooldown: float) -> None:
        """Keep the lease for `cooldown` seconds, marked failed, so followers report it."""
        self._update_own(
            engine,
            owner,
            "SET #state = :failed, #error = :error, expiresAt = :until",
            {
                ":failed": {"S": "failed"},
                ":error": {"S": error[:1000]},
                ":until": {"N": f"{now.timestamp() + cooldown:.3f}"},
            },
            {"#state": "state", "#error": "error"},
        )

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

    def event_tasks(self, event_id: str, engine: str) -> tuple[str, ...]:
        item = self._get(f"event#{event_id}#{engine}", engine)
        return tuple(item.get("taskArns", {}).get("SS", [])) if item else ()

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
        try:
            self._dynamodb.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"lease#{engine}"}},
                UpdateExpression=expression,
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner", **(names or {})},
                ExpressionAttributeValues={":owner": {"S": owner}, **values},
            )
        except AWS_ERRORS as exc:
            if has_code(exc, "ConditionalCheckFailedException"):
                logger.warning("lease of %s is no longer held by %s", engine, owner)
                return
            raise translate(exc, f"UpdateItem lease#{engine}", service=engine) from exc
