"""The embedded AWS: a moto server on a free loopback port, a task lifecycle, the five engines."""

from __future__ import annotations

import os
import queue
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from start_engines.aws import Clients
from start_engines.local.ecs_events import task_state_change
from start_engines.local.lifecycle import Lifecycle
from start_engines.local.provision import Provisioned, provision

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import botocore.session

    from start_engines.clock import Clock
    from start_engines.local.front_door import FrontDoor
    from start_engines.local.schedules import Schedules
    from start_engines.local.stack import DeployedStack
    from start_engines.local.wiring import Wiring
    from start_engines.local.workers import Workers

REGION = "us-east-2"
EVENTS_THREAD = "ecs-events"  # the threads delivering Task State Changes (see describe_log)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


class Emulator:
    """`start_seconds`: RunTask to RUNNING; `health_seconds`: ALB's registration delay, from
    RegisterTargets to a target's first health check (then one every HealthCheckIntervalSeconds
    of its group, see `alb_health`); `stop_seconds`: a stopping container's SIGTERM grace."""

    def __init__(
        self,
        clock: Clock | None = None,
        start_seconds: float = 3.0,
        health_seconds: float = 10.0,
        stop_seconds: float = 2.0,
    ) -> None:
        self.lifecycle = Lifecycle(clock, start_seconds, health_seconds, stop_seconds)
        self._server: Any = None
        self.endpoint_url = ""
        self.provisioned: Provisioned | None = None
        self._delivery: threading.Event | None = None
        self._deliverer: threading.Thread | None = None
        self._applied: set[str] = set()  # the environment apply_environ set
        # every DescribeTasks through clients(): (clock reading, calling thread's name), so a
        # figure can leave out the task-state function's own calls (EVENTS_THREAD)
        self.describe_log: list[tuple[float, str]] = []
        self._changed: queue.Queue[str] | None = None
        self._event_options = (False, False)
        self._held: list[dict[str, Any]] = []
        self._pumping = threading.Lock()
        self._pump_ecs: Any = None
        self.stack: DeployedStack | None = None
        self.workers: Workers | None = None
        self.wiring: Wiring | None = None
        self.schedules: Schedules | None = None

    def start(self) -> Emulator:
        from start_engines.local.moto_http import MotoHttpServer

        self._server = MotoHttpServer()
        self.endpoint_url = self._server.start()
        self.lifecycle.install()
        return self

    def watch_task_events(self, *, duplicate: bool = False, reorder: bool = False) -> None:
        """ECS emits an ECS Task State Change for each change of a task's lastStatus from now
        on; `pump_task_events` delivers them. `duplicate`: each twice (same id), as EventBridge
        may (at least once). `reorder`: each held back and delivered after the next one."""
        self._changed = queue.Queue()
        self._event_options = (duplicate, reorder)
        self._held = []
        self.lifecycle.on_change = self._changed.put

    def pump_task_events(self) -> int:
        """Tick the lifecycle (time passes for ECS) and deliver the events it emits: with a
        deployed stack, onto the default bus, where its aws.ecs rule takes them to
        TaskStateFunction; otherwise to task_state_handler in this process. Returns how many
        were delivered."""
        changed = self._changed
        if changed is None:
            raise RuntimeError("not watching task events: call watch_task_events() first")
        with self._pumping:
            self.lifecycle.tick()
            events = []
            if self._pump_ecs is None:  # one client for every pump: building one costs 50 ms
                self._pump_ecs = self.clients().ecs
            ecs = self._pump_ecs
            while not changed.empty():
                arn = changed.get_nowait()
                cluster = arn.rsplit("/", 2)[-2]
                found = ecs.describe_tasks(cluster=cluster, tasks=[arn], include=["TAGS"])
                wall = self.lifecycle.time.wall()
                events += [task_state_change(dict(t), at=wall) for t in found.get("tasks", [])]
            duplicate, reorder = self._event_options
            if duplicate:
                events = [event for event in events for _ in (1, 2)]
            if reorder:  # each held back until the next one, then delivered after it
                swapped = []
                for event in events:
                    if self._held:
                        swapped += [event, self._held.pop()]
                    else:
                        self._held.append(event)
                events = swapped
            if self.wiring is None and not (duplicate or reorder) and len(events) > 1:
                # EventBridge invokes the function once per event, concurrently
                with ThreadPoolExecutor(10, thread_name_prefix=EVENTS_THREAD) as pool:
                    list(pool.map(self._deliver_task_event, events))
            else:
                for event in events:
                    self._deliver_task_event(event)
            return len(events)

    def _deliver_task_event(self, event: dict[str, Any]) -> None:
        if self.wiring is not None:
            self.wiring.put_service_event(event)
            return
        from start_engines import lambda_function
        from start_engines.local.context import LambdaContext

        lambda_function.task_state_handler(event, LambdaContext(self.lifecycle.time, 60))

    def deliver_task_events(
        self, every: float = 0.5, *, duplicate: bool = False, reorder: bool = False
    ) -> None:
        """What a deployed stack has: each ECS Task State Change reaches the task-state entry
        point (see pump_task_events), so an asynchronous start gets registered with nobody
        polling. The lifecycle is ticked every `every` real seconds, in a thread."""
        self.watch_task_events(duplicate=duplicate, reorder=reorder)
        stop = self._delivery = threading.Event()

        def deliver() -> None:
            while not stop.wait(every) and self._changed is not None:
                self.pump_task_events()

        self._deliverer = threading.Thread(target=deliver, name=EVENTS_THREAD, daemon=True)
        self._deliverer.start()

    def stop_delivering(self) -> None:
        """Stop delivering, once the delivery under way (if any) is done."""
        if self._delivery is not None:
            self._delivery.set()
            self._delivery = None
        if self._deliverer is not None and self._deliverer is not threading.current_thread():
            self._deliverer.join(timeout=30)
        self._deliverer = None
        self.lifecycle.on_change = None
        self._changed = None

    # --- the deployed stack ----------------------------------------------------------------

    def deploy_stack(
        self,
        record_dir: Path | None = None,
        wakeable: tuple[str, ...] = (),
        **parameters: str,
    ) -> DeployedStack:
        """Deploy infra/alb.yaml and template.yaml (local/stack.py) and run them: each function
        in a warm worker process (workers.py), reached through Invoke, EventBridge rules,
        schedules (`self.schedules`) and Step Functions (wiring.py). `record_dir`: each
        function's AWS calls, one JSON line each, in <record_dir>/<logical id>.jsonl."""
        from start_engines.local.clock import clock_spec
        from start_engines.local.schedules import Schedules
        from start_engines.local.stack import deploy_both
        from start_engines.local.wiring import Wiring
        from start_engines.local.workers import Workers

        if self.provisioned is None:
            raise RuntimeError("provision first: the stacks deploy into its VPC and clusters")
        if self.stack is not None:
            raise RuntimeError("a stack is deployed already")
        workers = Workers({}, self.aws_environ(), clock_spec(self.lifecycle.time))
        self.wiring = Wiring(workers, self.lifecycle.time, self.endpoint_url)
        self.wiring.install()  # before CreateStack: its state machine goes to the interpreter
        try:
            stack = deploy_both(self.clients(), self.provisioned, wakeable, **parameters)
        except Exception:
            workers.stop()
            self.undeploy()
            raise
        self.workers = Workers(
            stack.functions.values(),
            self.aws_environ(),
            clock_spec(self.lifecycle.time),
            record_dir,
        ).start()
        self.wiring.workers = self.workers
        workers.stop()  # the placeholder that served while CloudFormation ran
        self.schedules = Schedules(self.lifecycle.time, self.wiring)
        self.schedules.arm()
        self.stack = stack
        return stack

    def undeploy(self) -> None:
        """Stop the workers and the hooks; the stacks' resources stay (see reset). ECS events
        stop too: nothing in this process takes the deployed functions' place."""
        self.stop_delivering()
        if self.schedules is not None:
            self.schedules.stop()
            self.schedules = None
        if self.wiring is not None:
            self.wiring.uninstall()
            self.wiring = None
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
        self.stack = None

    def stop(self) -> None:
        self.stop_delivering()
        self.undeploy()
        self.lifecycle.uninstall()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def aws_environ(self) -> dict[str, str]:
        """What a process needs to talk to this emulator through boto3's own settings."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, **CREDENTIALS}

    def apply_environ(self) -> None:
        """This process's environment points at the emulator and what it provisioned; what an
        earlier call set and the current provisioning does not (an engine that was wakeable
        before a reset) is removed."""
        for key in self._applied:
            os.environ.pop(key, None)
        applied = {**self.aws_environ(), **(self.provisioned.environ() if self.provisioned else {})}
        os.environ.update(applied)
        self._applied = set(applied)

    def clients(self, hook: Callable[[botocore.session.Session], None] | None = None) -> Clients:
        """Clients of a session of their own; `hook` gets it first (iam_calls records calls)."""
        import botocore.session

        session = botocore.session.get_session()
        if hook is not None:
            hook(session)
        session.set_config_variable("region", REGION)
        session.set_credentials(
            CREDENTIALS["AWS_ACCESS_KEY_ID"],
            CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            CREDENTIALS["AWS_SESSION_TOKEN"],
        )

        def log(**_: object) -> None:
            name = threading.current_thread().name
            self.describe_log.append((self.lifecycle.clock(), name))

        session.register("before-call.ecs.DescribeTasks", log)
        return Clients(session=session, endpoint_url=self.endpoint_url)

    def provision(self, wakeable: tuple[str, ...] = ()) -> Provisioned:
        self.provisioned = provision(self.clients(), wakeable=wakeable)
        self.lifecycle.mutations.clear()  # what follows sees its own changes, not these
        return self.provisioned

    def front_door(
        self,
        listener_arn: str | None = None,
        invoke: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    ) -> FrontDoor:
        """An HTTP listener on loopback acting as the ALB's (default: the deployed stack's HTTPS
        listener, else the provisioned one). With a deployed stack, a Lambda target is reached
        through the Lambda API's Invoke, as ALB does; otherwise lambda_handler runs in this
        process. Not started: `with emulator.front_door() as door:` or `.start()`."""
        from start_engines.local.front_door import FrontDoor

        if listener_arn is None and self.stack is not None:
            from start_engines.local.stack import ALB_STACK, resources

            listener = resources(self.clients(), ALB_STACK)["HttpsListener"]
            listener_arn = str(listener["PhysicalResourceId"])
        if listener_arn is None:
            if self.provisioned is None:
                raise RuntimeError("nothing provisioned: pass a listener ARN")
            listener_arn = self.provisioned.listener_arn
        if invoke is None and self.stack is not None:
            invoke = self.invoke_through_api
        return FrontDoor(self, listener_arn, invoke)

    def invoke_through_api(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Invoke (RequestResponse) the function the context names, through the Lambda API;
        a FunctionError raises, as it makes ALB answer 502."""
        import json

        answer = (
            self.clients()
            ._client("lambda")
            .invoke(FunctionName=context.invoked_function_arn, Payload=json.dumps(event))
        )
        payload = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise RuntimeError(f"the function failed: {payload}")
        result: dict[str, Any] = payload
        return result

    def reset(self, wakeable: tuple[str, ...] = ()) -> Provisioned:
        """Forget every resource and provision the five engines again."""
        self.undeploy()
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        self.lifecycle.clear()
        from moto.moto_api import state_manager

        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**12})
        return self.provision(wakeable)
