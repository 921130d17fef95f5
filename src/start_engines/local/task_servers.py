"""A tiny HTTP server on loopback for each RUNNING task: the container behind a target's IP.

Each answers every method and path with 200 `{"engine", "taskId", "path"}`. A server starts
the first time a request needs its task while the task is RUNNING, and stops once a later
look finds the task no longer RUNNING.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from start_engines.local.provision import ENGINE_SPECS

if TYPE_CHECKING:
    from start_engines.local.lifecycle import Lifecycle


POLL_SECONDS = 0.05  # how soon shutdown() is seen (serve_forever's default is 0.5)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def serve_in_background(self, name: str) -> None:
        threading.Thread(
            target=self.serve_forever, args=(POLL_SECONDS,), name=name, daemon=True
        ).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer is not news


class _TaskServer(QuietServer):
    def __init__(self, engine: str, task_id: str) -> None:
        super().__init__(("127.0.0.1", 0), _TaskHandler)
        self.engine, self.task_id = engine, task_id
        self.serve_in_background(f"task-{task_id}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _TaskHandler(BaseHTTPRequestHandler):
    server: _TaskServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {"engine": self.server.engine, "taskId": self.server.task_id, "path": self.path}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TaskServers:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        self._servers: dict[str, _TaskServer] = {}
        self._lock = threading.Lock()

    def url_for_ip(self, ip: str) -> str | None:
        """The server of the task RUNNING at `ip` (started now if need be), or None."""
        self.sweep()
        task_arn = self._lifecycle.running_task_at(ip)
        if task_arn is None:
            return None
        with self._lock:
            server = self._servers.get(task_arn)
            if server is None:
                server = _TaskServer(engine_of(task_arn), task_arn.rsplit("/", 1)[-1])
                self._servers[task_arn] = server
            return server.url

    def url(self, task_arn: str) -> str | None:
        with self._lock:
            server = self._servers.get(task_arn)
            return server.url if server else None

    def sweep(self) -> None:
        """Stop the servers of tasks that no longer run."""
        with self._lock:
            gone = [a for a in self._servers if not self._lifecycle.is_running(a)]
            closing = [self._servers.pop(a) for a in gone]
        for server in closing:
            server.close()

    def close(self) -> None:
        with self._lock:
            closing = list(self._servers.values())
            self._servers.clear()
        for server in closing:
            server.close()


def engine_of(task_arn: str) -> str:
    """The engine whose cluster runs the task (`.../task/<cluster>/<id>`), else the cluster."""
    cluster = task_arn.rsplit("/", 2)[-2] if task_arn.count("/") >= 2 else ""
    return next((name for name, spec in ENGINE_SPECS.items() if spec[0] == cluster), cluster)
