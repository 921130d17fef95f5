"""What an ALB sends a Lambda target and how it reads the answer, as AWS documents it.

The event carries the path and the query as received (not URL-decoded), lower-case header
names, and the body as text or, when binary, base64. With `lambda.multi_value_headers.enabled`
headers and query parameters are lists (`multiValue...`); without it the last value wins.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

MAX_LAMBDA_BYTES = 1024 * 1024  # request body, and the response JSON, for a Lambda target
MULTI_VALUE_ATTRIBUTE = "lambda.multi_value_headers.enabled"


@dataclass(frozen=True)
class Incoming:
    """A request as the listener received it. `target` is path and query, undecoded."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]  # names as sent, in order
    body: bytes
    client_ip: str
    listener_port: int

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def raw_query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        name = name.lower()
        found = [value for key, value in self.headers if key.lower() == name]
        return found[-1] if found else None


@dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    reason: str = ""


class BadAnswer(ValueError):
    """The function's answer is not one ALB can turn into a response (ALB answers 502)."""


def raw_query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """`a=1&b&c=x%20y` -> [("a", "1"), ("b", ""), ("c", "x%20y")], nothing decoded."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


def forwarded_headers(incoming: Incoming, trace_id: str) -> list[tuple[str, str]]:
    """The request's headers, lower case, with the ones ALB adds (X-Forwarded-*, trace id)."""
    added = {"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto", "x-amzn-trace-id"}
    headers = [(k.lower(), v) for k, v in incoming.headers if k.lower() not in added]
    before = incoming.header("x-forwarded-for")
    client = f"{before}, {incoming.client_ip}" if before else incoming.client_ip
    headers += [
        ("x-amzn-trace-id", trace_id),
        ("x-forwarded-for", client),
        ("x-forwarded-port", str(incoming.listener_port)),
        ("x-forwarded-proto", "http"),
    ]
    return headers


def lambda_event(
    incoming: Incoming, target_group_arn: str, trace_id: str, multi_value: bool
) -> dict[str, Any]:
    headers = forwarded_headers(incoming, trace_id)
    query = raw_query_pairs(incoming.raw_query)
    try:
        body, encoded = incoming.body.decode("utf-8"), False
    except UnicodeDecodeError:
        body, encoded = base64.b64encode(incoming.body).decode("ascii"), True
    event: dict[str, Any] = {
        "requestContext": {"elb": {"targetGroupArn": target_group_arn}},
        "httpMethod": incoming.method,
        "path": incoming.path,
    }
    if multi_value:
        event["multiValueQueryStringParameters"] = _lists(query)
        event["multiValueHeaders"] = _lists(headers)
    else:
        event["queryStringParameters"] = dict(query)  # the last value wins
        event["headers"] = dict(headers)
    event["body"] = body
    event["isBase64Encoded"] = encoded
    return event


def lambda_reply(answer: Any, multi_value: bool) -> Reply:
    """The HTTP response for a function's answer; BadAnswer where ALB would answer 502."""
    if not isinstance(answer, dict):
        raise BadAnswer("the answer is not an object")
    status = answer.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise BadAnswer("statusCode is not an HTTP status")
    try:
        size = len(json.dumps(answer).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise BadAnswer("the answer is not JSON") from exc
    if size > MAX_LAMBDA_BYTES:
        raise BadAnswer("the answer is over 1 MB")
    headers: list[tuple[str, str]] = []
    if multi_value:
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            if not isinstance(values, list):
                raise BadAnswer("a multiValueHeaders entry is not a list")
            headers += [(str(name), str(v)) for v in values]
    else:
        headers = [(str(k), str(v)) for k, v in (answer.get("headers") or {}).items()]
    body = answer.get("body") or ""
    if not isinstance(body, str):
        raise BadAnswer("body is not a string")
    if answer.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise BadAnswer("body is not base64") from exc
    else:
        data = body.encode("utf-8")
    description = str(answer.get("statusDescription") or "")
    reason = description.partition(" ")[2] if description[:3] == str(status) else description
    return Reply(status, tuple(headers), data, reason or _phrase(status))


def error_reply(status: int) -> Reply:
    """ALB's own error page (502, 503, 413...)."""
    title = f"{status} {_phrase(status)}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return Reply(status, (("Content-Type", "text/html"),), page.encode("ascii"))


def _lists(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in pairs:
        found.setdefault(key, []).append(value)
    return found


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
