"""The emulator's moto endpoint (local/moto_http.py): keep-alive, a thread per connection (a
request waiting for another never starves the server), bodies on the wire, and stop(). Each
test runs a server of its own on moto's in-process backends."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import urllib3.connection

from start_engines.local.moto_http import MotoHttpServer
from tests.integration.helpers import endpoint_client

BURST = 60  # more than any fixed pool of request threads we would size
AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-2/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=00"
)


def test_fd_above_1023_keeps_the_server_serving(moto_server: Any) -> None:
    """Connections whose file descriptors are above select()'s 1023 are served: both ends of
    every kept-alive connection live in this process, so a few hundred of them get there."""
    _, url = moto_server
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    errors: list[BaseException] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)  # type: ignore[assignment]
    try:
        ddb = endpoint_client(url, "dynamodb", read_timeout=5, connect_timeout=5)
        ddb.list_tables()
        ddb.list_tables()
    finally:
        threading.excepthook = previous
        for fd in held:
            os.close(fd)
    assert not errors, errors


def test_a_burst_of_nested_invokes_does_not_starve_the_server(
    moto_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wiring._invoke serves Lambda Invoke inside a request and waits for the function's worker,
    which runs one invocation at a time and makes its AWS calls to the same server. A burst of
    Invokes (ALB requests through the deployed stack's front door) all wait for the worker,
    whose own calls must still be served: with a fixed pool of request threads they would
    wait for a free one forever."""
    from start_engines.local.wiring import Wiring
    from start_engines.local.workers import Invocation

    _, url = moto_server
    inner = endpoint_client(
        url, "dynamodb", read_timeout=3, connect_timeout=3, max_pool_connections=5
    )
    lock = threading.Lock()
    failed: list[str] = []

    class FakeWorker:
        def invoke(self, event: Any, arn: str | None = None) -> Invocation:
            with lock:  # one invocation at a time, as Worker.invoke
                try:
                    inner.list_tables()  # the function's AWS call, to the same server
                except Exception as exc:
                    failed.append(type(exc).__name__)
                    return Invocation({"errorType": type(exc).__name__}, "Unhandled")
                return Invocation({"ok": True})

    class FakeWorkers:
        def find(self, _arn: str) -> FakeWorker:
            return FakeWorker()

    iam = endpoint_client(url, "iam")
    name = f"adv-{os.getpid()}-{time.monotonic_ns()}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = endpoint_client(url, "lambda", read_timeout=30, max_pool_connections=BURST)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("f.py", "def h(e, c):\n    return e\n")
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="f.h",
        Code={"ZipFile": buffer.getvalue()},
    )
    wiring = Wiring(FakeWorkers(), None, url)  # type: ignore[arg-type]
    wiring.install()
    try:
        began = time.monotonic()
        with ThreadPoolExecutor(BURST) as pool:
            answers = list(
                pool.map(
                    lambda i: json.loads(
                        lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()
                    ),
                    range(BURST),
                )
            )
        took = time.monotonic() - began
    finally:
        wiring.uninstall()
    assert not failed, f"{len(failed)} nested calls failed ({set(failed)}) in {took:.1f} s"
    assert answers == [{"ok": True}] * (BURST)


def raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    if status == 100:
        return read_response_from(sock, rest)
    length = next(
        (
            int(v)
            for k, _, v in (line.partition(b":") for line in lines[1:])
            if k.lower() == b"content-length"
        ),
        0,
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, rest[:length]


def read_response_from(sock: socket.socket, already: bytes) -> tuple[int, bytes]:
    class Prefixed:
        def __init__(self) -> None:
            self.buf = already

        def recv(self, n: int) -> bytes:
            if self.buf:
                out, self.buf = self.buf, b""
                return out
            return sock.recv(n)

    return read_response(Prefixed())  # type: ignore[arg-type]


def ddb_request(body: bytes, extra: str = "", chunked: bool = False) -> bytes:
    head = (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {AUTH}\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n" + extra
    )
    if chunked:
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + (
            f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        )
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_wire_chunked_expect_continue_and_unread_bodies(moto_server: Any) -> None:
    _, url = moto_server
    sock = raw(url)
    # chunked
    sock.sendall(ddb_request(b"{}", chunked=True))
    status, body = read_response(sock)
    assert status == 200 and "TableNames" in json.loads(body), body
    # Expect: 100-continue, body sent only after the interim answer
    head, _, payload = ddb_request(b"{}", "Expect: 100-continue\r\n").partition(b"\r\n\r\n")
    sock.sendall(head + b"\r\n\r\n")
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 100"), first
    sock.sendall(payload)
    status, body = read_response(sock)
    assert status == 200 and "TableNames" in json.loads(body), body
    # a body the app has no use for, then a request on the same connection
    junk = b"x" * 200_000
    sock.sendall(
        f"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(junk)}\r\n\r\n".encode()
        + junk
    )
    status, _ = read_response(sock)
    sock.sendall(ddb_request(b"{}"))
    status, body = read_response(sock)
    assert status == 200 and "TableNames" in json.loads(body), body
    sock.close()


def test_a_kept_alive_connection_serves_call_after_call(moto_server: Any, monkeypatch: Any) -> None:
    """As with AWS's endpoints: twenty calls, one connection."""
    _, url = moto_server
    opened: list[object] = []
    new_conn = urllib3.connection.HTTPConnection._new_conn

    def counted(self: Any) -> Any:
        opened.append(self)
        return new_conn(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", counted)
    ddb = endpoint_client(url, "dynamodb")
    for _ in range(20):
        ddb.list_tables()
    assert len(opened) == 1


def test_stop_ends_open_connections_at_once() -> None:
    """stop() with a kept-alive connection idle: it returns at once, and the connection is
    closed (the client's next call fails to connect rather than hang)."""
    started = MotoHttpServer()
    url = started.start()
    ddb = endpoint_client(url, "dynamodb", read_timeout=5, connect_timeout=2)
    ddb.list_tables()
    began = time.monotonic()
    started.stop()
    assert time.monotonic() - began < 1.0
    with pytest.raises(Exception, match=r"Connect|connect|closed|reset|aborted"):
        ddb.list_tables()
