"""The emulator's moto endpoint on the wire (local/moto_http.py): S3 keys that need the raw
path, HEAD, malformed and cut-off bodies, HTTP/1.0 and pipelining, the application failing,
and servers started and stopped many times. From a review; each test runs its own server."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from start_engines.local.moto_http import MotoHttpServer
from tests.integration.helpers import endpoint_client


@pytest.mark.parametrize("key", ["100%41", "a%2Fb", "x?y=1", "p+q", "sp ace", "h#sh"])
def test_s3_key_round_trip(key: str) -> None:
    """moto's S3 reads RAW_URI (core/request.py raw_path) and unquotes it itself."""
    srv = MotoHttpServer()
    url = srv.start()
    kind = "ours"
    try:
        s3 = endpoint_client(url, "s3", "us-east-1")
        bucket = f"adv2-{kind}-{abs(hash(key))}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=b"hello")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert keys == [key]
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"hello"
    finally:
        srv.stop()


def test_head_object_content_length(moto_server: Any) -> None:
    _, url = moto_server
    s3 = endpoint_client(url, "s3", "us-east-1")
    s3.create_bucket(Bucket="adv2h")
    s3.put_object(Bucket="adv2h", Key="k", Body=b"x" * 100)
    assert s3.head_object(Bucket="adv2h", Key="k")["ContentLength"] == 100


def raw(url: str, data: bytes, wait: float = 2.0, shut: bool = False) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


@pytest.mark.parametrize("length", ["abc", "-5", "99999999999999999999999", "1e3"])
def test_bad_content_length_gets_400(moto_server: Any, length: str) -> None:
    _, url = moto_server
    req = (
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()
    out = raw(url, req)
    assert out.startswith(b"HTTP/1.1 400"), out[:200]


def test_truncated_body_is_not_processed(moto_server: Any) -> None:
    """A body cut off (a client that sends half of it and goes away), or a chunk of negative
    size, is never passed to moto."""
    _, url = moto_server
    seen: list[bytes] = []
    started, _ = moto_server
    app = started._server.app

    def spy(environ: Any, start_response: Any) -> Any:
        seen.append(environ["wsgi.input"].read())
        return app(environ, start_response)

    started._server.app = spy
    raw(url, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", shut=True)
    raw(
        url,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n0123",
        shut=True,
    )
    negative = raw(
        url, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n0123"
    )  # the connection left open: the answer must not wait for its end
    assert negative.startswith(b"HTTP/1.1 400"), negative[:200]
    time.sleep(0.3)
    assert seen == [], seen


def test_http10_close_pipelined_head(moto_server: Any) -> None:
    _, url = moto_server
    get = b"GET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00\r\n\r\n"
    out = raw(
        url,
        get
        + get
        + b"GET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00\r\nConnection: close\r\n\r\n",
        wait=3,
    )
    assert out.count(b"HTTP/1.1 200") == 3, out[:300]
    out = raw(
        url,
        b"GET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.0\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00\r\n\r\n",
        wait=3,
    )
    assert out.startswith(b"HTTP/1.1 200") or out.startswith(b"HTTP/1.0 200"), out[:200]
    out = raw(
        url,
        b"HEAD /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00\r\nConnection: close\r\n\r\n",
        wait=3,
    )
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"\r\n\r\n"), out[-200:]


def test_app_exception_gives_500_and_server_survives(moto_server: Any) -> None:
    started, url = moto_server
    app = started._server.app

    def boom(environ: Any, start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        if environ["PATH_INFO"] == "/late":
            start_response("200 OK", [("Content-Type", "text/plain")])

            def gen():
                yield b"part"
                raise RuntimeError("late")

            return gen()
        if environ["PATH_INFO"] == "/nocontent":
            start_response("204 No Content", [])
            return [b""]
        return app(environ, start_response)

    started._server.app = boom
    assert raw(url, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 500")
    assert raw(url, b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 500")
    out = raw(
        url,
        b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\nGET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00\r\nConnection: close\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 204") and out.count(b"HTTP/1.1 200") == 1, out[:400]


def test_many_servers_leak_no_threads_or_fds() -> None:
    import os

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    s = MotoHttpServer()
    u = s.start()
    endpoint_client(u, "sts", "us-east-1").get_caller_identity()
    s.stop()
    time.sleep(0.3)
    before_t, before_f = threading.active_count(), fds()
    for _ in range(20):
        s = MotoHttpServer()
        u = s.start()
        c = endpoint_client(u, "sts", "us-east-1")
        c.get_caller_identity()
        c.get_caller_identity()
        s.stop()
        c.close()
    time.sleep(0.5)
    assert threading.active_count() <= before_t + 1, threading.enumerate()
    assert fds() <= before_f + 3, (before_f, fds())


def test_stop_with_request_in_flight() -> None:
    s = MotoHttpServer()
    u = s.start()
    app = s._server.app
    gate = threading.Event()

    def slow(environ: Any, start_response: Any) -> Any:
        gate.wait(5)
        return app(environ, start_response)

    s._server.app = slow
    out: list[Any] = []
    t = threading.Thread(
        target=lambda: out.append(
            raw(
                u,
                b"GET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00\r\n\r\n",
                wait=3,
            )
        )
    )
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    s.stop()
    took = time.monotonic() - t0
    gate.set()
    t.join(6)
    assert took < 1.0, took
