"""moto's endpoint over HTTP/1.1 with keep-alive, as AWS's endpoints keep a connection open.
moto's own server (werkzeug's) closes each connection after one response: every AWS call then
pays a new connection, and the server a new thread, work no caller of AWS does. Here, as there,
each connection has a thread of its own, so a request that waits for another (an Invoke whose
function calls back) never starves the server."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

logger = logging.getLogger(__name__)

IDLE_SECONDS = 120  # an unused connection's thread ends after this long
NO_BODY = {204, 304}
MAX_BODY = 1 << 30  # bytes: more is a malformed request, not an upload


class MotoHttpServer:
    """moto's WSGI application on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            create_backend_app,
        )

        self._server = _Server(DomainDispatcherApplication(create_backend_app))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="moto-http", daemon=True
        )

    def start(self) -> str:
        """Serve in a thread; returns the endpoint URL."""
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop accepting, close every open connection (their threads then end)."""
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=10)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, app: Any) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection cut mid-request (the emulator stopping, a client gone): no traceback."""
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):  # closed meanwhile
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection serves request after request
    disable_nagle_algorithm = True  # headers and body go as two writes
    timeout = IDLE_SECONDS
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet, as moto's own server is in the emulator."""

    def do_any(self) -> None:
        try:
            body = self._body()
        except (ValueError, EOFError, OverflowError, MemoryError):
            self.close_connection = True  # the stream's framing is lost: nothing more on it
            self.send_error(400, "bad or cut-off request body")
            return
        try:
            status, headers, payload = self._call(body)
        except Exception:
            logger.exception("moto failed on %s %s", self.command, self.path)
            self.send_error(500)
            self.close_connection = True
            return
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        given = False
        for name, value in headers:
            lower = name.lower()
            if lower in ("connection", "keep-alive", "transfer-encoding"):
                continue  # this server frames the response itself
            given = given or lower == "content-length"
            self.send_header(name, value)
        if not given and int(code) not in NO_BODY:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_any

    def _body(self) -> bytes:
        """The request's whole body, read before the application runs (so none is left on the
        connection). ValueError for a malformed length, EOFError for a body cut off."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise EOFError("chunked body cut off")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                parts.append(self._exactly(size))
                self.rfile.readline(2)
            while (trailer := self.rfile.readline(1024)) not in (b"\r\n", b"\n"):
                if not trailer:
                    raise EOFError("chunked body cut off")
            return b"".join(parts)
        given = self.headers.get("Content-Length", "0").strip() or "0"
        if not given.isdigit() or int(given) > MAX_BODY:
            raise ValueError(f"Content-Length {given[:20]!r}")
        return self._exactly(int(given))

    def _exactly(self, size: int) -> bytes:
        if not 0 <= size <= MAX_BODY:
            raise ValueError(f"a chunk of {size} bytes")
        data = self.rfile.read(size) if size else b""
        if len(data) < size:
            raise EOFError("body cut off")
        return data

    def _call(self, body: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
        """The application's answer to this request: status, headers, the whole body."""
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path).encode().decode("latin-1"),  # WSGI's bytes-as-latin-1
            "QUERY_STRING": query,
            "REQUEST_URI": self.path.encode().decode("latin-1"),  # moto's S3 reads the raw path
            "RAW_URI": self.path.encode().decode("latin-1"),
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": self.client_address[1],
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in self.headers.items():
            if "_" in name:
                continue  # as werkzeug: X_Foo must not pass for X-Foo
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ[key] = value
            elif key not in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                key = f"HTTP_{key}"
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        answer: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
            answer[:] = [status, headers]
            return chunks.append

        result = self.server.app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = answer
        return status, headers, b"".join(chunks)
