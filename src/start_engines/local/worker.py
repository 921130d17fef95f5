"""One deployed function's execution environment: a process that imports the function's
handler once and answers invocations, warm, as Lambda's runtime does (`python -m` this module).

Its environment is the function's, from the stack, plus the emulator's endpoint and
credentials. It reads invocations, one JSON line each, from the file descriptor named by
WORKER_FDS and, once its handler is imported, writes READY, then one answer line per
invocation to the other: the handler's result, or
the error Lambda reports for an exception (errorType, errorMessage, stackTrace). Stdout and
stderr are the function's logs.

Time follows the emulator's clock (CLOCK_ENV): the handler's waits through the runtime the
module's `use_runtime` takes, and the context's remaining time. With RECORD_ENV set, every
AWS call the function makes is appended to that file as one JSON line, with the clock's
reading.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
import uuid
from typing import TYPE_CHECKING, Any

from start_engines.local.clock import CLOCK_ENV, clock_from_spec

if TYPE_CHECKING:
    from collections.abc import Callable

    from start_engines.clock import Clock

WORKER_FDS = "START_ENGINES_WORKER_FDS"
RECORD_ENV = "START_ENGINES_RECORD_FILE"
ARN_ENV = "START_ENGINES_FUNCTION_ARN"
READY = b'{"ready": true}'


class Context:
    """The Lambda context: the function's names and its remaining time on the shared clock."""

    def __init__(self, clock: Clock, timeout: float, arn: str, request_id: str) -> None:
        self._clock = clock
        self._ends_at = clock.now() + timeout
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.invoked_function_arn = arn
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends_at - self._clock.now()) * 1000))


def recorder(path: str, clock: Clock) -> Callable[..., None]:
    """A botocore `before-parameter-build` handler: one line per call, with its API params and
    the clock's reading."""

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        line = {
            "service": model.service_model.service_name,
            "operation": model.name,
            "params": params,
            "at": clock.now(),
        }
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, default=str) + "\n")

    return record


def install_runtime(module: Any, clock: Clock, record_file: str) -> None:
    """Give the handler's module the shared clock and, when recording, a session that records
    each call; production builds the same clients, on a session of its own."""
    use_runtime = getattr(module, "use_runtime", None)
    runtime_type = getattr(module, "Runtime", None)
    if use_runtime is None or runtime_type is None:
        return
    import botocore.session

    from start_engines.aws import Clients

    session = botocore.session.get_session()
    if record_file:
        session.register("before-parameter-build", recorder(record_file, clock))
    use_runtime(runtime_type(clients=Clients(session=session), clock=clock))


def answer(
    handler: Callable[[Any, Any], Any], request: dict[str, Any], clock: Clock, timeout: float
) -> dict[str, Any]:
    context = Context(
        clock, timeout, request.get("arn") or os.environ.get(ARN_ENV, ""), str(uuid.uuid4())
    )
    try:
        return {"payload": handler(request["event"], context)}
    except Exception as exc:
        return {
            "error": {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
        }


def main() -> None:
    read_fd, write_fd = (int(fd) for fd in os.environ.pop(WORKER_FDS).split(","))
    clock = clock_from_spec(os.environ.pop(CLOCK_ENV, "system"))
    record_file = os.environ.pop(RECORD_ENV, "")
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    timeout = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"))
    module = importlib.import_module(module_name)
    handler = getattr(module, function_name)
    install_runtime(module, clock, record_file)
    with os.fdopen(read_fd, "rb") as inbox, os.fdopen(write_fd, "wb", buffering=0) as outbox:
        outbox.write(READY + b"\n")  # the init phase is over: invocations are timed from here
        for line in inbox:
            reply = answer(handler, json.loads(line), clock, timeout)
            try:
                text = json.dumps(reply)
            except (TypeError, ValueError) as exc:
                text = json.dumps(
                    {"error": {"errorType": "Runtime.MarshalError", "errorMessage": str(exc)}}
                )
            sys.stdout.flush()
            outbox.write(text.encode("utf-8") + b"\n")


if __name__ == "__main__":
    main()
