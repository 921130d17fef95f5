"""A Lambda context whose remaining time runs on a given clock."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from start_engines.clock import Clock


class LambdaContext:
    function_name = "start-engines-local"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-2:123456789012:function:start-engines-local"

    def __init__(self, clock: Clock, timeout_seconds: float = 900.0) -> None:
        self._clock = clock
        self._ends_at = clock.now() + timeout_seconds
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends_at - self._clock.now()) * 1000))
