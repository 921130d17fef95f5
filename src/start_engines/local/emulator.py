"""The embedded AWS: a moto server on a free loopback port, a task lifecycle, the five engines."""

from __future__ import annotations

import logging
import os
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from start_engines.aws import Clients
from start_engines.local.lifecycle import Lifecycle
from start_engines.local.provision import Provisioned, provision

if TYPE_CHECKING:
    from collections.abc import Callable

    import botocore.session

    from start_engines.clock import Clock
    from start_engines.local.front_door import FrontDoor

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
        # every DescribeTasks through clients(): (clock reading, calling thread's name), so a
        # figure can leave out the task-state function's own calls (EVENTS_THREAD)
        self.describe_log: list[tuple[float, str]] = []

    def start(self) -> Emulator:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self.lifecycle.install()
        return self

    def deliver_task_events(self, every: float = 0.5) -> None:
        """What a deployed stack has: each ECS Task State Change reaches the task-state entry
        point (here, in this process), so an asynchronous start gets registered with nobody
        polling. The lifecycle is ticked every `every` seconds, as time passes for ECS."""
        import queue

        from start_engines import lambda_function
        from start_engines.local.context import LambdaContext
        from start_engines.local.ecs_events import task_state_change

        changed: queue.Queue[str] = queue.Queue()
        self.lifecycle.on_change = changed.put
        stop = self._delivery = threading.Event()

        ecs = self.clients().ecs

        def one(arn: str) -> None:
            cluster = arn.rsplit("/", 2)[-2]
            found = ecs.describe_tasks(cluster=cluster, tasks=[arn], include=["TAGS"])
            for task in found.get("tasks", []):
                context = LambdaContext(self.lifecycle.time, 60)
                lambda_function.task_state_handler(task_state_change(dict(task)), context)

        def deliver() -> None:
            # EventBridge invokes the function once per event, concurrently
            with ThreadPoolExecutor(10, thread_name_prefix=EVENTS_THREAD) as pool:
                while not stop.wait(every):
                    self.lifecycle.tick()
                    while not changed.empty():
                        pool.submit(one, changed.get_nowait())

        threading.Thread(target=deliver, name=EVENTS_THREAD, daemon=True).start()

    def stop_delivering(self) -> None:
        if self._delivery is not None:
            self._delivery.set()
            self._delivery = None
        self.lifecycle.on_change = None

    def stop(self) -> None:
        self.stop_delivering()
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
        os.environ.update(self.aws_environ())
        if self.provisioned:
            os.environ.update(self.provisioned.environ())

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
        return self.provisioned

    def front_door(
        self,
        listener_arn: str | None = None,
        invoke: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    ) -> FrontDoor:
        """An HTTP listener on loopback acting as the ALB's (default: the provisioned one).
        Not started: `with emulator.front_door() as door:` or `.start()`."""
        from start_engines.local.front_door import FrontDoor

        if listener_arn is None:
            if self.provisioned is None:
                raise RuntimeError("nothing provisioned: pass a listener ARN")
            listener_arn = self.provisioned.listener_arn
        return FrontDoor(self, listener_arn, invoke)

    def reset(self, wakeable: tuple[str, ...] = ()) -> Provisioned:
        """Forget every resource and provision the five engines again."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        self.lifecycle.clear()
        from moto.moto_api import state_manager

        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**12})
        return self.provision(wakeable)
