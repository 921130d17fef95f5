"""The deployed functions' workers: one warm process per function (worker.py), reached by
whatever reaches the function on AWS (Invoke, an EventBridge target, Step Functions, ALB).

A function's worker runs one invocation at a time, as one Lambda execution environment does,
and is stopped (then started afresh) when one runs past the function's timeout in real time:
an upper bound, as the emulator's clocks run at least as fast as real time.
Asynchronous invocations (InvocationType=Event, EventBridge) queue to it and return at once;
`drain()` waits until every queue is empty. A failed asynchronous invocation is kept in
`failures` (Lambda would retry it and then send it to the dead-letter destination).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from start_engines.local.clock import CLOCK_ENV
from start_engines.local.worker import ARN_ENV, READY, RECORD_ENV, WORKER_FDS

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

logger = logging.getLogger(__name__)

# Lambda's init phase may take 10 s; a loaded test machine starting Python may take longer
INIT_TIMEOUT = 60.0
# what a process inherits from ours besides the function's own environment
INHERITED = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


@dataclass(frozen=True)
class FunctionSpec:
    """A deployed function as the Lambda API describes it."""

    logical_id: str  # its resource in the stack
    name: str
    arn: str
    handler: str
    environment: Mapping[str, str]
    timeout: float
    memory: int

    @classmethod
    def from_configuration(cls, logical_id: str, config: Mapping[str, Any]) -> FunctionSpec:
        return cls(
            logical_id=logical_id,
            name=str(config["FunctionName"]),
            arn=str(config["FunctionArn"]),
            handler=str(config["Handler"]),
            environment=dict(config.get("Environment", {}).get("Variables", {})),
            timeout=float(config.get("Timeout", 3)),
            memory=int(config.get("MemorySize", 128)),
        )


@dataclass(frozen=True)
class Invocation:
    """An invocation's answer as Invoke gives it: the payload, and FunctionError if it failed."""

    payload: Any
    function_error: str | None = None

    def body(self) -> bytes:
        return json.dumps(self.payload).encode("utf-8")


@dataclass
class _Job:
    event: Any
    arn: str
    done: threading.Event = field(default_factory=threading.Event)
    answer: Invocation | None = None


class Worker:
    """One function's process, started on first use and again if it dies."""

    def __init__(self, spec: FunctionSpec, environ: Mapping[str, str], log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.invocations: list[Any] = []  # every event it was given, in order
        self.answers: list[Invocation] = []  # each invocation's answer, in the same order
        self.failures: list[tuple[Any, Any]] = []  # failed asynchronous ones: (event, error)
        self._environ = dict(environ)
        self._process: subprocess.Popen[bytes] | None = None
        self._inbox: IO[bytes] | None = None
        self._outbox: IO[bytes] | None = None
        self._ready = False  # the process imported the handler (its init phase is over)
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(
            target=self._serve_queue, name=f"async-{spec.name}", daemon=True
        )
        self._thread.start()

    def start(self) -> None:
        with self._lock:
            self._ensure_started()

    def invoke(self, event: Any, arn: str | None = None) -> Invocation:
        with self._lock:
            return self._call(event, arn or self.spec.arn)

    def invoke_async(self, event: Any, arn: str | None = None) -> None:
        self._queue.put(_Job(event, arn or self.spec.arn))

    def drain(self, deadline: float) -> bool:
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        self._queue.put(None)
        with self._lock:
            self._close()

    # --- the process -----------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._close()
        to_worker, from_parent = os.pipe()
        to_parent, from_worker = os.pipe()
        spec = self.spec
        env = {
            **{k: os.environ[k] for k in INHERITED if k in os.environ},
            **spec.environment,
            **self._environ,
            "_HANDLER": spec.handler,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            ARN_ENV: spec.arn,
            WORKER_FDS: f"{to_worker},{from_worker}",
        }
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "start_engines.local.worker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(to_worker, from_worker),
            )
        os.close(to_worker)
        os.close(from_worker)
        self._ready = False
        self._inbox = os.fdopen(from_parent, "wb", buffering=0)
        self._outbox = os.fdopen(to_parent, "rb")

    @property
    def pid(self) -> int | None:
        """The process now serving (the same one while warm)."""
        return self._process.pid if self._process is not None else None

    def _call(self, event: Any, arn: str) -> Invocation:
        answer = self._answer(event, arn)
        self.invocations.append(event)
        self.answers.append(answer)
        return answer

    def _answer(self, event: Any, arn: str) -> Invocation:
        self._ensure_started()
        assert self._inbox is not None and self._outbox is not None
        if not self._ready:  # the init phase (imports) has a timeout of its own, as on Lambda
            ready, _, _ = select.select([self._outbox], [], [], INIT_TIMEOUT)
            self._ready = bool(ready) and self._outbox.readline().strip() == READY
            if not self._ready:
                self._close()
                return Invocation(
                    {"errorType": "Runtime.ExitError", "errorMessage": "the worker did not start"},
                    "Unhandled",
                )
        try:
            self._inbox.write(json.dumps({"event": event, "arn": arn}).encode("utf-8") + b"\n")
            # one answer line per invocation, so nothing is buffered while it runs
            answered, _, _ = select.select([self._outbox], [], [], self.spec.timeout)
            line = self._outbox.readline() if answered else None
        except OSError:
            line = b""
        if line is None:  # a hung function: stopped after its timeout, in real time
            self._close()
            message = f"Task timed out after {self.spec.timeout:.2f} seconds"
            return Invocation(
                {"errorType": "Sandbox.Timedout", "errorMessage": message}, "Unhandled"
            )
        if not line:  # the process died: Lambda reports it and starts a fresh one next time
            self._close()
            return Invocation(
                {"errorType": "Runtime.ExitError", "errorMessage": "the worker exited"},
                "Unhandled",
            )
        reply = json.loads(line)
        if "error" in reply:
            return Invocation(reply["error"], "Unhandled")
        return Invocation(reply["payload"])

    def _serve_queue(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                answer = self.invoke(job.event, job.arn)
                if answer.function_error:
                    logger.warning("%s failed: %s", self.spec.name, answer.payload)
                    self.failures.append((job.event, answer.payload))
            except Exception:
                logger.exception("asynchronous invocation of %s failed", self.spec.name)
            finally:
                self._queue.task_done()

    def _close(self) -> None:
        for stream in (self._inbox, self._outbox):
            if stream is not None:
                stream.close()
        self._inbox = self._outbox = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


class Workers:
    """The workers of a deployed stack's functions. `environ`: what each adds to its function's
    environment (the emulator's endpoint and credentials). `clock_spec`: the emulator's clock,
    shared (see local/clock.py). `record_dir`: each function's AWS calls, one JSON line each,
    in <record_dir>/<logical id>.jsonl."""

    def __init__(
        self,
        specs: Iterable[FunctionSpec],
        environ: Mapping[str, str],
        clock_spec: str,
        record_dir: Path | None = None,
    ) -> None:
        self.log_dir = Path(tempfile.mkdtemp(prefix="start-engines-functions-"))
        self.by_arn: dict[str, Worker] = {}
        for spec in specs:
            env = {**environ, CLOCK_ENV: clock_spec}
            if record_dir is not None:
                record_dir.mkdir(parents=True, exist_ok=True)
                env[RECORD_ENV] = str(record_dir / f"{spec.logical_id}.jsonl")
            log_path = self.log_dir / f"{spec.logical_id}.log"
            self.by_arn[spec.arn] = Worker(spec, env, log_path)

    def start(self) -> Workers:
        """Start every process now (their imports overlap): the first invocation finds it warm."""
        for worker in self.by_arn.values():
            worker.start()
        return self

    def find(self, function: str) -> Worker | None:
        """By name, ARN, or ARN with a version or alias."""
        for arn, worker in self.by_arn.items():
            if function in (arn, worker.spec.name) or function.startswith(arn + ":"):
                return worker
        return None

    def worker(self, logical_id: str) -> Worker:
        for worker in self.by_arn.values():
            if worker.spec.logical_id == logical_id:
                return worker
        raise KeyError(logical_id)

    def drain(self, timeout: float = 60.0) -> None:
        """Wait (real time, bounded) until no asynchronous invocation is queued or running."""
        deadline = time.monotonic() + timeout
        while any(w._queue.unfinished_tasks for w in self.by_arn.values()):
            for worker in self.by_arn.values():
                if not worker.drain(deadline):
                    raise TimeoutError(f"{worker.spec.name} still busy after {timeout} s")

    def stop(self) -> None:
        for worker in self.by_arn.values():
            worker.stop()
        shutil.rmtree(self.log_dir, ignore_errors=True)
