"""An ALB request to a sleeping engine (a Lambda target's event) becomes a WakeRequest.

Nothing of the request is trusted: every field is checked for its type and size, and a request
that does not parse is a BadEvent (400) or RequestTooLarge (413). The body is never kept: its
size is all that matters, since it is never forwarded or replayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from start_engines.errors import BadEvent, RequestTooLarge
from start_engines.rules import HttpRequest

MAX_BODY_BYTES = 1024 * 1024  # ALB's limit for a Lambda target's request
MAX_PATH = 8192
MAX_HEADERS = 200
MAX_HEADER_TEXT = 16384
HEALTH_CHECKER = "ELB-HealthChecker"
LOOP_COOKIE = "start-engines-wake"  # set on our 307: a second one in a row would be a loop


@dataclass(frozen=True)
class WakeRequest:
    """An HTTP request the ALB sent to the wake target group."""

    kind: ClassVar[Literal["wake"]] = "wake"

    http: HttpRequest
    target_group_arn: str
    multi_value: bool = False  # answer with multiValueHeaders
    wants_html: bool = False
    health_check: bool = False
    redirected: bool = False  # it follows our own 307

    @property
    def replayable(self) -> bool:
        """Only GET and HEAD may be sent back to the same URL: a body is never replayed."""
        return self.http.method in ("GET", "HEAD")


def uses_multi_value(event: object) -> bool:
    return isinstance(event, Mapping) and isinstance(event.get("multiValueHeaders"), Mapping)


def parse_alb(event: Mapping[str, Any]) -> WakeRequest:
    elb = event["requestContext"]["elb"]
    group = elb.get("targetGroupArn", "") if isinstance(elb, Mapping) else ""
    method, path = event.get("httpMethod"), event.get("path")
    if not isinstance(method, str) or not method.isalpha() or len(method) > 16:
        raise BadEvent("the request has no valid method", field="httpMethod")
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadEvent("the request has no valid path", field="path")
    if len(path) > MAX_PATH:
        raise RequestTooLarge(f"the path is longer than {MAX_PATH} characters", field="path")
    if _has_control(path):
        raise BadEvent("the path has control characters", field="path")
    multi = uses_multi_value(event)
    headers = _pairs(event, "multiValueHeaders" if multi else "headers", lower=True)
    query = _pairs(
        event, "multiValueQueryStringParameters" if multi else "queryStringParameters", lower=False
    )
    if any(_has_control(k) or _has_control(v) for k, v in query):
        raise BadEvent("the query string has control characters", field="queryStringParameters")
    if _body_bytes(event) > MAX_BODY_BYTES:
        raise RequestTooLarge("the request body is larger than 1 MB", field="body")
    http = HttpRequest(
        method=method.upper(),
        path=path,
        host=next((v for k, v in headers if k == "host"), ""),
        headers=headers,
        query=query,
        source_ip=_client_ip(headers),
    )
    agent = " ".join(http.header("user-agent"))
    return WakeRequest(
        http=http,
        target_group_arn=group if isinstance(group, str) else "",
        multi_value=multi,
        wants_html="text/html" in " ".join(http.header("accept")).lower(),
        health_check=agent.startswith(HEALTH_CHECKER),
        redirected=any(
            part.strip().startswith(f"{LOOP_COOKIE}=")
            for cookie in http.header("cookie")
            for part in cookie.split(";")
        ),
    )


def _pairs(event: Mapping[str, Any], key: str, *, lower: bool) -> tuple[tuple[str, str], ...]:
    """Name/value pairs of a headers or query object, single- or multi-valued."""
    raw = event.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or len(raw) > MAX_HEADERS:
        raise BadEvent(f"{key} must be an object of at most {MAX_HEADERS} entries", field=key)
    pairs: list[tuple[str, str]] = []
    for name, value in raw.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(name, str) or not isinstance(item, str):
                raise BadEvent(f"{key} must map names to strings", field=key)
            if len(name) + len(item) > MAX_HEADER_TEXT:
                raise RequestTooLarge(f"an entry of {key} is too long", field=key)
            pairs.append((name.lower() if lower else name, item))
    return tuple(pairs)


def _body_bytes(event: Mapping[str, Any]) -> int:
    body = event.get("body")
    if body is None:
        return 0
    if not isinstance(body, str):
        raise BadEvent("the request body must be a string", field="body")
    return (
        len(body) * 3 // 4
        if event.get("isBase64Encoded") is True
        else len(body.encode("utf-8", "surrogatepass"))
    )


def _client_ip(headers: tuple[tuple[str, str], ...]) -> str | None:
    """The client as ALB saw it: the last address it appended to X-Forwarded-For."""
    forwarded = [v for k, v in headers if k == "x-forwarded-for"]
    if not forwarded:
        return None
    return forwarded[-1].split(",")[-1].strip() or None


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)
