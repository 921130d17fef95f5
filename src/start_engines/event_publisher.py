"""Outgoing events: how a caller learns the outcome of an asynchronous start.

EventBridge PutEvents only; ClientError stops here. A failed publish is logged, never raised:
the operation it reports has already happened.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from start_engines.aws import AWS_ERRORS

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

logger = logging.getLogger(__name__)

SOURCE = "start-engines"
ENGINE_READY = "Engine Ready"
ENGINE_START_FAILED = "Engine Start Failed"
ENGINE_STOPPED = "Engine Stopped"
MAX_DETAIL_BYTES = 200_000  # PutEvents takes 256 KiB per entry


class EventPublisher:
    def __init__(self, events: EventBridgeClient, bus: str) -> None:
        self._events = events
        self.bus = bus

    def publish(self, detail_type: str, detail: dict[str, Any]) -> bool:
        text = json.dumps(detail, default=str)
        if len(text.encode()) > MAX_DETAIL_BYTES:
            text = json.dumps({"service": detail.get("service"), "truncated": True})
        entry = {
            "Source": SOURCE,
            "DetailType": detail_type,
            "Detail": text,
            "EventBusName": self.bus,
        }
        try:
            response = self._events.put_events(Entries=[entry])  # type: ignore[list-item]
        except AWS_ERRORS as exc:
            logger.warning("could not publish %s to %s: %s", detail_type, self.bus, exc)
            return False
        if response.get("FailedEntryCount", 0):
            logger.warning("EventBridge refused %s: %s", detail_type, response.get("Entries"))
            return False
        logger.info("published %s for %s on %s", detail_type, detail.get("service"), self.bus)
        return True
