"""The answer to an ALB request, in ALB's Lambda format: a small waiting page for browsers,
JSON for everyone else. Every value on the page is escaped."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from start_engines.alb_request import LOOP_COOKIE, uses_multi_value

if TYPE_CHECKING:
    from start_engines.engines import Outcome

WAKE_HEADER = "X-Start-Engines-Wake"
JSON_KEYS = ("engine", "state", "retryAfterSeconds", "message", "taskStatus", "elapsedSeconds")
ERROR_KEYS = ("error", "errorType", "retryInSeconds", "field")


def alb_response(event: object, outcome: Outcome) -> dict[str, Any]:
    status, body = outcome.status_code, dict(outcome.body)
    if body.get("engine") is None:  # an error names its engine `service`
        body["engine"] = body.get("service")
    state = str(body.get("state") or ("bad-request" if status < 500 else "error"))
    retry = int(body.get("retryAfterSeconds") or 5)
    headers = {WAKE_HEADER: state, "Cache-Control": "no-store"}
    if status == 503:
        headers["Retry-After"] = str(retry)
    if status == 307:
        headers["Location"] = str(body.get("location", "/"))
        location = str(body.get("location", "/"))
        scope = location.split("?", 1)[0] if _cookie_safe(location) else "/"
        headers["Set-Cookie"] = f"{LOOP_COOKIE}=1; Max-Age=10; Path={scope}; HttpOnly; SameSite=Lax"
    if _wants_html(event) and status != 307:
        headers["Content-Type"] = "text/html; charset=utf-8"
        if status == 503:
            headers["Refresh"] = str(retry)
        content = page(status, state, body)
    else:
        headers["Content-Type"] = "application/json"
        shown = {k: body[k] for k in (*JSON_KEYS, *ERROR_KEYS) if body.get(k) is not None}
        content = json.dumps({"engine": None, "state": state, "retryAfterSeconds": retry, **shown})
    if _method(event) == "HEAD":
        content = ""
    answer: dict[str, Any] = {
        "statusCode": status,
        "statusDescription": f"{status} {_phrase(status)}",
        "body": content,
        "isBase64Encoded": False,
    }
    if uses_multi_value(event):
        answer["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    else:
        answer["headers"] = headers
    return answer


def page(status: int, state: str, body: Mapping[str, Any]) -> str:
    engine = html.escape(str(body.get("engine") or "this service"))
    retry = int(body.get("retryAfterSeconds") or 5)
    lines = [html.escape(str(body.get("message") or _phrase(status)))]
    if body.get("taskStatus"):
        lines.append(f"Task status: {html.escape(str(body['taskStatus']))}")
    if body.get("elapsedSeconds") is not None:
        lines.append(f"Elapsed: {int(body['elapsedSeconds'])} s")
    if body.get("error"):
        kind = html.escape(str(body.get("errorType") or "Error"))
        lines.append(f"{kind}: {html.escape(str(body['error']))}")
    if body.get("retryInSeconds") is not None:
        lines.append(f"Next try in {int(body['retryInSeconds'])} s")
    refresh = f'<meta http-equiv="refresh" content="{retry}">' if status == 503 else ""
    items = "".join(f"<p>{line}</p>" for line in lines)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"{refresh}<title>{engine}: {html.escape(state)}</title>"
        "<style>body{font:16px system-ui,sans-serif;margin:4em auto;max-width:36em;color:#222}"
        "h1{font-size:1.4em}.state{color:#555}</style></head><body>"
        f"<h1>{engine}</h1><p class=state id=state>{html.escape(state)}</p>{items}"
        + (f"<p>This page reloads every {retry} s.</p>" if status == 503 else "")
        + "</body></html>"
    )


def _wants_html(event: object) -> bool:
    if not isinstance(event, Mapping):
        return False
    for key in ("headers", "multiValueHeaders"):
        headers = event.get(key)
        if isinstance(headers, Mapping):
            for name, value in headers.items():
                values = value if isinstance(value, list) else [value]
                if str(name).lower() == "accept" and any("text/html" in str(v) for v in values):
                    return True
    return False


def _method(event: object) -> str:
    method = event.get("httpMethod") if isinstance(event, Mapping) else None
    return method.upper() if isinstance(method, str) else ""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _cookie_safe(path: str) -> bool:
    """A path a cookie's Path attribute can carry as it is."""
    return all(0x20 < ord(ch) < 0x7F and ch not in ";," for ch in path)
