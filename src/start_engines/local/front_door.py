"""The emulated ALB's listener on loopback: real HTTP in, routed by the listener's rules.

Each request reads the rules afresh (DescribeRules), takes the first match (rules.py) or the
listener's default actions, and acts: a fixed response, a redirect, or a forward. A forward
to a `lambda` group invokes the function with ALB's event; to an `ip` group it proxies to the
loopback server of the RUNNING task that owns the target's IP (task_servers.py).
"""

from __future__ import annotations

import http.client
import logging
import secrets
import threading
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from start_engines.local.alb_lambda import (
    MAX_LAMBDA_BYTES,
    MULTI_VALUE_ATTRIBUTE,
    Incoming,
    Reply,
    error_reply,
    forwarded_headers,
    lambda_event,
    lambda_reply,
    raw_query_pairs,
)
from start_engines.local.task_servers import QuietServer, TaskServers
from start_engines.rules import HttpRequest, Rule, first_match, parse_rule

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from start_engines.local.emulator import Emulator

    Invoke = Callable[[dict[str, Any], Any], dict[str, Any]]

logger = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length")
)
TERMINAL = ("fixed-response", "redirect", "forward")
PROXY_TIMEOUT = 30.0
LAMBDA_TIMEOUT = 30.0


class FrontDoor:
    def __init__(self, emulator: Emulator, listener_arn: str, invoke: Invoke | None = None) -> None:
        self.listener_arn = listener_arn
        self._lifecycle = emulator.lifecycle
        clients = emulator.clients()
        self._elbv2 = clients.elbv2
        self._cloudwatch = clients.cloudwatch
        self._invoke = invoke
        self._tasks = TaskServers(emulator.lifecycle)
        self._server: _DoorServer | None = None
        self._turns: dict[str, int] = {}  # round-robin counters
        self._target_types: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- running ---------------------------------------------------------------------------

    def start(self) -> FrontDoor:
        if self._server is None:
            self._server = _DoorServer(self)
            self._server.serve_in_background("front-door")
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the front door is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._tasks.close()

    def __enter__(self) -> FrontDoor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def task_server_url(self, task_arn: str) -> str | None:
        """The loopback server standing in for the task's container, if one runs now."""
        return self._tasks.url(task_arn)

    # --- routing ---------------------------------------------------------------------------

    def handle(self, incoming: Incoming) -> Reply:
        rule = first_match(self._rules(), _http_request(incoming))
        actions = rule.actions if rule else self._default_actions()
        action = _terminal(actions)
        kind = action.get("Type") if action else None
        if action is None or kind not in TERMINAL:
            return error_reply(503)
        if kind == "fixed-response":
            return _fixed(action.get("FixedResponseConfig") or {})
        if kind == "redirect":
            return _redirect(action.get("RedirectConfig") or {}, incoming)
        group = self._pick_group(action)
        return error_reply(503) if group is None else self._forward(group, incoming)

    def _rules(self) -> list[Rule]:
        rules: list[Rule] = []
        marker = ""
        while True:
            page = (
                self._elbv2.describe_rules(ListenerArn=self.listener_arn, Marker=marker)
                if marker
                else self._elbv2.describe_rules(ListenerArn=self.listener_arn)
            )
            rules += [parse_rule(r) for r in page.get("Rules", [])]
            marker = page.get("NextMarker", "")
            if not marker:
                return rules

    def _default_actions(self) -> tuple[Mapping[str, Any], ...]:
        found = self._elbv2.describe_listeners(ListenerArns=[self.listener_arn])["Listeners"]
        return tuple(found[0].get("DefaultActions", [])) if found else ()

    def _pick_group(self, action: Mapping[str, Any]) -> str | None:
        """The forward's group; of a weighted forward, one with weight and targets, taken in
        turn by weight."""
        config = action.get("ForwardConfig") or {}
        weighted = [
            (str(g["TargetGroupArn"]), int(g.get("Weight", 1)))
            for g in config.get("TargetGroups") or ()
            if g.get("TargetGroupArn")
        ]
        if not weighted:
            arn = action.get("TargetGroupArn")
            return str(arn) if arn else None
        if len(weighted) == 1:
            return weighted[0][0]
        live = [(arn, w) for arn, w in weighted if w > 0 and self._targets(arn)]
        turn = self._turn("|".join(arn for arn, _ in weighted)) % max(1, sum(w for _, w in live))
        for arn, weight in live:
            if turn < weight:
                return arn
            turn -= weight
        return None

    def _forward(self, group_arn: str, incoming: Incoming) -> Reply:
        targets = self._targets(group_arn)
        if not targets:
            return error_reply(503)
        kind = self._target_type(group_arn)
        if kind == "lambda":
            return self._to_lambda(group_arn, str(targets[0]["Target"]["Id"]), incoming)
        if kind == "ip":
            return self._to_ip(group_arn, targets, incoming)
        return error_reply(503)  # instance and alb targets are not emulated

    # --- lambda targets --------------------------------------------------------------------

    def _to_lambda(self, group_arn: str, function_arn: str, incoming: Incoming) -> Reply:
        if len(incoming.body) > MAX_LAMBDA_BYTES:
            return error_reply(413)
        multi_value = self._multi_value(group_arn)
        event = lambda_event(incoming, group_arn, self._trace_id(incoming), multi_value)
        try:
            return lambda_reply(self._call(event, function_arn), multi_value)
        except Exception:  # the function failed or answered nonsense: ALB says 502
            logger.info("lambda target %s failed", function_arn, exc_info=True)
            return error_reply(502)

    def _call(self, event: dict[str, Any], function_arn: str) -> Any:
        from start_engines.local.context import LambdaContext

        context = LambdaContext(self._lifecycle.time, LAMBDA_TIMEOUT)
        context.invoked_function_arn = function_arn
        if self._invoke is not None:
            return self._invoke(event, context)
        from start_engines import lambda_function

        return lambda_function.lambda_handler(event, context)

    def _multi_value(self, group_arn: str) -> bool:
        found = self._elbv2.describe_target_group_attributes(TargetGroupArn=group_arn)
        attributes = {a.get("Key"): a.get("Value") for a in found.get("Attributes", [])}
        return str(attributes.get(MULTI_VALUE_ATTRIBUTE, "false")).lower() == "true"

    # --- ip targets ------------------------------------------------------------------------

    def _to_ip(
        self, group_arn: str, targets: Sequence[Mapping[str, Any]], incoming: Incoming
    ) -> Reply:
        chosen = _routable(targets)
        if not chosen:
            return error_reply(503)
        target = chosen[self._turn(group_arn) % len(chosen)]
        url = self._tasks.url_for_ip(str(target["Target"]["Id"]))
        self._count(group_arn)
        if url is None:  # nothing listens at that IP: connection refused
            return error_reply(502)
        return _proxy(url, incoming, self._trace_id(incoming))

    def _count(self, group_arn: str) -> None:
        """ALB's RequestCount of the group, per request, on the emulator's clock: what the
        reaper reads to tell an idle engine from a busy one."""
        balancer = self.listener_arn.split(":listener/", 1)[-1].rsplit("/", 1)[0]
        self._cloudwatch.put_metric_data(
            Namespace="AWS/ApplicationELB",
            MetricData=[
                {
                    "MetricName": "RequestCount",
                    "Dimensions": [
                        {"Name": "TargetGroup", "Value": group_arn.split(":", 5)[5]},
                        {"Name": "LoadBalancer", "Value": balancer},
                    ],
                    "Timestamp": self._lifecycle.time.wall(),
                    "Value": 1.0,
                    "Unit": "Count",
                }
            ],
        )

    # --- small reads -----------------------------------------------------------------------

    def _targets(self, group_arn: str) -> list[Mapping[str, Any]]:
        found = self._elbv2.describe_target_health(TargetGroupArn=group_arn)
        return list(found.get("TargetHealthDescriptions", []))

    def _target_type(self, group_arn: str) -> str:
        if group_arn not in self._target_types:  # a group's target type never changes
            found = self._elbv2.describe_target_groups(TargetGroupArns=[group_arn])
            self._target_types[group_arn] = found["TargetGroups"][0].get("TargetType", "")
        return self._target_types[group_arn]

    def _turn(self, key: str) -> int:
        with self._lock:
            turn = self._turns.get(key, 0)
            self._turns[key] = turn + 1
            return turn

    def _trace_id(self, incoming: Incoming) -> str:
        given = incoming.header("x-amzn-trace-id")
        if given:
            return given
        seconds = int(self._lifecycle.time.wall().timestamp())
        return f"Root=1-{seconds:08x}-{secrets.token_hex(12)}"


# --- actions -------------------------------------------------------------------------------


def _http_request(incoming: Incoming) -> HttpRequest:
    return HttpRequest(
        method=incoming.method,
        path=incoming.path,
        host=incoming.header("host") or "",
        headers=tuple((k.lower(), v) for k, v in incoming.headers),
        query=tuple((unquote(k), unquote(v)) for k, v in raw_query_pairs(incoming.raw_query)),
        source_ip=incoming.client_ip,
    )


def _terminal(actions: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The action that answers: the first, by Order, that is not an authenticate-* step."""
    ordered = sorted(enumerate(actions), key=lambda p: (int(p[1].get("Order", 0)), p[0]))
    return next((a for _, a in ordered if a.get("Type") in TERMINAL), None)


def _fixed(config: Mapping[str, Any]) -> Reply:
    body = str(config.get("MessageBody") or "").encode("utf-8")
    content_type = str(config.get("ContentType") or "text/plain")
    return Reply(int(config.get("StatusCode", 200)), (("Content-Type", content_type),), body)


def _redirect(config: Mapping[str, Any], incoming: Incoming) -> Reply:
    """Location from RedirectConfig; #{protocol}, #{host}, #{port}, #{path} (without its
    leading slash) and #{query} are the request's. The port is the one it came in on."""
    host = (incoming.header("host") or "127.0.0.1").rsplit(":", 1)[0]
    values = {
        "#{protocol}": "HTTP",
        "#{host}": host,
        "#{port}": str(incoming.listener_port),
        "#{path}": incoming.path.lstrip("/"),
        "#{query}": incoming.raw_query,
    }

    def part(key: str, default: str) -> str:
        text = str(config.get(key) or default)
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    scheme = part("Protocol", "#{protocol}").lower()
    port = part("Port", "#{port}")
    default_port = {"http": "80", "https": "443"}.get(scheme)
    location = f"{scheme}://{part('Host', '#{host}')}"
    location += "" if port == default_port else f":{port}"
    location += part("Path", "/#{path}")
    query = part("Query", "#{query}")
    location += f"?{query}" if query else ""
    status = int(str(config.get("StatusCode", "HTTP_302")).removeprefix("HTTP_"))
    return Reply(status, (("Location", location),))


def _routable(targets: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The healthy targets; if none is healthy, ALB fails open to every one still in use."""
    healthy = [t for t in targets if _state(t) == "healthy"]
    return healthy or [t for t in targets if _state(t) not in ("draining", "unused")]


def _state(target: Mapping[str, Any]) -> str:
    return str((target.get("TargetHealth") or {}).get("State", ""))


def _proxy(url: str, incoming: Incoming, trace_id: str) -> Reply:
    host, _, port = url.removeprefix("http://").partition(":")
    headers = [(k, v) for k, v in forwarded_headers(incoming, trace_id) if k not in HOP_BY_HOP]
    connection = http.client.HTTPConnection(host, int(port), timeout=PROXY_TIMEOUT)
    try:
        connection.putrequest(incoming.method, incoming.target, skip_accept_encoding=True)
        has_host = any(k == "host" for k, _ in headers)
        if not has_host:
            connection.putheader("Host", f"{host}:{port}")
        for key, value in headers:
            connection.putheader(key, value)
        connection.putheader("Content-Length", str(len(incoming.body)))
        connection.endheaders(incoming.body or None)
        response = connection.getresponse()
        body = response.read()
        kept = tuple((k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP)
        return Reply(response.status, kept, body, response.reason)
    except (OSError, http.client.HTTPException):
        return error_reply(502)
    finally:
        connection.close()


# --- the HTTP server -----------------------------------------------------------------------


class _DoorServer(QuietServer):
    def __init__(self, door: FrontDoor) -> None:
        super().__init__(("127.0.0.1", 0), _DoorHandler)
        self.door = door


class _DoorHandler(BaseHTTPRequestHandler):
    server: _DoorServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        incoming = Incoming(
            method=self.command,
            target=self.path,
            headers=tuple(self.headers.items()),
            body=body,
            client_ip=str(self.client_address[0]),
            listener_port=int(self.server.server_address[1]),
        )
        try:
            reply = self.server.door.handle(incoming)
        except Exception:
            logger.exception("front door: %s %s", self.command, self.path)
            reply = error_reply(500)
        self.send_response_only(reply.status, reply.reason or None)
        names = {k.lower() for k, _ in reply.headers}
        if "server" not in names:
            self.send_header("Server", "awselb/2.0")
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        for key, value in reply.headers:
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
        self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass
