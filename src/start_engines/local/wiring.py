"""The hooks that let a deployed stack run on moto: each fills one gap, named below, and is
patched onto moto's classes while installed (the moto server runs in this process).

- Lambda Invoke: moto runs a function in Docker. Here Invoke reaches the function's worker
  (workers.py): RequestResponse answers with its result or FunctionError; Event queues.
- EventBridge Lambda targets: moto matches a rule's pattern, then raises NotImplementedError
  for a Lambda target. Here the event (or the target's Input, InputPath, InputTransformer)
  goes to the function's worker asynchronously, as EventBridge invokes.
- Schedule rules: moto delivers every PutEvents to rules with a ScheduleExpression (their
  pattern is empty, so it matches everything) and never fires them. Here they take no events;
  schedules.py fires them on the emulator's clock through `deliver_scheduled`.
- Disabled rules: moto delivers to them. Here they deliver nothing.
- Step Functions: moto's ASL interpreter runs only with its `execute_state_machine` setting;
  its Lambda tasks call Invoke on localhost:5000 (MOTO_PORT); its Retry intervals and Wait
  states sleep in real time. Here the setting is on while installed, Lambda tasks reach this
  emulator, and both waits run on the emulator's clock (`sfn_waits` keeps them).
"""

from __future__ import annotations

import copy
import json
import logging
import types
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from start_engines.clock import Clock
    from start_engines.local.workers import Workers

logger = logging.getLogger(__name__)


class Wiring:
    def __init__(self, workers: Workers, clock: Clock, endpoint_url: str) -> None:
        self.workers = workers
        self.clock = clock
        self.endpoint_url = endpoint_url
        self.sfn_waits: list[float] = []  # Retry intervals and Wait states, in emulated seconds
        self.undelivered: list[tuple[str, Any]] = []  # (target ARN, event) with no worker
        self._saved: list[tuple[Any, str, Any]] = []
        self._sfn_config: dict[str, Any] | None = None

    def install(self) -> None:
        from moto.awslambda.models import LambdaBackend
        from moto.events.models import Rule
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
            lambda_eval_utils,
        )
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
            WaitFunction,
        )

        wiring = self

        def invoke(backend: Any, *args: Any, **kwargs: Any) -> Any:
            return wiring._invoke(original_invoke, backend, *args, **kwargs)

        def send_to_targets(rule: Any, event: Any, transform_input: bool = True) -> None:
            wiring._send_to_targets(original_send, rule, event, transform_input)

        def wait_interval(_function: Any, env: Any, wait_seconds: float) -> None:
            wiring._sleep(wait_seconds)

        original_invoke = LambdaBackend.invoke
        original_send = Rule.send_to_targets
        self._original_send = original_send
        self._patch(LambdaBackend, "invoke", invoke)
        self._patch(Rule, "send_to_targets", send_to_targets)
        self._patch(lambda_eval_utils, "boto_client_for", self._boto_client_for)
        self._patch(retrier_decl, "time", types.SimpleNamespace(sleep=self._sleep))
        self._patch(WaitFunction, "_wait_interval", wait_interval)
        from moto.core.config import default_user_config

        config: dict[str, Any] = default_user_config  # type: ignore[assignment]
        self._sfn_config = dict(config.get("stepfunctions", {}))
        config["stepfunctions"] = {**self._sfn_config, "execute_state_machine": True}

    def uninstall(self) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)
        if self._sfn_config is not None:
            from moto.core.config import default_user_config

            default_user_config["stepfunctions"] = self._sfn_config  # type: ignore[typeddict-item]
            self._sfn_config = None

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    # --- Lambda ----------------------------------------------------------------------------

    def _invoke(
        self,
        original: Callable[..., Any],
        backend: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> Any:
        function = backend.get_function(function_name, qualifier)  # unknown: 404, as AWS
        worker = self.workers.find(function.function_arn)
        if worker is None:
            return original(backend, function_name, qualifier, body, headers, response_headers)
        event = json.loads(body) if body else {}
        kind = headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        if kind == "DryRun":
            return b""
        if kind == "Event":
            worker.invoke_async(event)
            response_headers["Content-Length"] = "0"
            return b""
        answer = worker.invoke(event)
        if answer.function_error:
            response_headers["x-amz-function-error"] = answer.function_error
        payload = answer.body()
        response_headers["Content-Length"] = str(len(payload))
        return payload

    # --- EventBridge -----------------------------------------------------------------------

    def _send_to_targets(
        self, original: Callable[..., Any], rule: Any, event: Any, transform_input: bool
    ) -> None:
        if rule.state != "ENABLED" or rule.scheduled_expression:
            return  # a schedule rule takes no events; a disabled rule delivers nothing
        if not rule.event_pattern.matches_event(event):
            return
        self._deliver(original, rule, event, transform_input)

    def deliver_scheduled(self, rule: Any, event: dict[str, Any]) -> None:
        """A schedule rule's firing: its targets get the Scheduled Event (or their Input)."""
        if rule.state == "ENABLED":
            self._deliver(self._original_send, rule, event, True)

    def _deliver(
        self, original: Callable[..., Any], rule: Any, event: Any, transform_input: bool
    ) -> None:
        lambdas = [t for t in rule.targets if t["Arn"].split(":")[2] == "lambda"]
        others = [t for t in rule.targets if t not in lambdas]
        if others:
            rest = copy.copy(rule)
            rest.targets = others
            original(rest, event, transform_input)
        for target in lambdas:
            worker = self.workers.find(target["Arn"])
            payload = target_input(target, as_delivered(event))
            if worker is None:
                logger.warning("no function %s for rule %s", target["Arn"], rule.name)
                self.undelivered.append((target["Arn"], payload))
                continue
            worker.invoke_async(payload, target["Arn"])

    def put_service_event(self, event: dict[str, Any]) -> None:
        """An AWS service's event (ECS Task State Change) on its account's default bus."""
        from moto.events.models import events_backends

        backend = events_backends[event["account"]][event["region"]]
        message = dict(event)
        if isinstance(message.get("time"), str):
            parsed = datetime.strptime(message["time"], "%Y-%m-%dT%H:%M:%SZ")
            message["time"] = parsed.replace(tzinfo=UTC).timestamp()
        rules: list[Any] = list(backend.event_buses["default"].rules.values())
        for rule in rules:
            rule.send_to_targets(copy.deepcopy(message))

    # --- Step Functions --------------------------------------------------------------------

    def _boto_client_for(self, region: str, service: str, state_credentials: Any = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(  # type: ignore[call-overload]
            service,
            region_name=region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=60,
                read_timeout=900,
            ),
        )

    def _sleep(self, seconds: float) -> None:
        self.sfn_waits.append(seconds)
        self.clock.sleep(seconds)


def as_delivered(event: Any) -> Any:
    """moto's event message as EventBridge delivers it: `time` in ISO 8601, no ingestion-time."""
    if not isinstance(event, dict):
        return event
    delivered = {k: v for k, v in event.items() if k != "ingestion-time"}
    if isinstance(delivered.get("time"), int | float):
        stamp = datetime.fromtimestamp(float(delivered["time"]), UTC)
        delivered["time"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return delivered


def target_input(target: dict[str, Any], event: Any) -> Any:
    """What a target receives: its constant Input, the part at InputPath, the transformed
    event, or the event."""
    if target.get("Input"):
        return json.loads(target["Input"])
    path = target.get("InputPath")
    if path:
        found = event
        for key in path.removeprefix("$").strip(".").split("."):
            if key:
                found = found.get(key) if isinstance(found, dict) else None
        return found
    transformer = target.get("InputTransformer")
    if transformer:
        from moto.events.utils import EventTemplateParser

        text = EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )
        return json.loads(text) if isinstance(text, str) else text
    return event
