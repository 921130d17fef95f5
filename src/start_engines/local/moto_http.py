"""moto's endpoint over HTTP/1.1 with keep-alive, as AWS's endpoints keep a connection open.
moto's own server (werkzeug's) closes each connection after one response: every AWS call then
pays a new connection, and the server a new thread, work no caller of AWS does."""

from __future__ import annotations

import logging
import threading
from typing import Any

THREADS = 48  # requests served at once: starts, task-state invocations and workers together
CONNECTIONS = 2000  # every client's pool keeps its connections open
IDLE_SECONDS = 60  # an unused connection is closed after this long


class MotoHttpServer:
    """moto's WSGI application behind waitress, on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            create_backend_app,
        )
        from waitress.server import create_server

        logging.getLogger("waitress").setLevel(logging.ERROR)
        app = DomainDispatcherApplication(create_backend_app)
        self._server: Any = create_server(
            app,
            host="127.0.0.1",
            port=0,
            threads=THREADS,
            connection_limit=CONNECTIONS,
            channel_timeout=IDLE_SECONDS,
            ident="moto",
        )
        self._thread = threading.Thread(target=self._server.run, name="moto-http", daemon=True)

    def start(self) -> str:
        """Serve in a thread; returns the endpoint URL."""
        self._thread.start()
        return f"http://127.0.0.1:{self._server.effective_port}"

    def stop(self) -> None:
        """Close the listening socket and every open connection, then the request threads."""
        server = self._server
        server.close()
        while server._map:  # the loop's channels: closing them all ends the loop
            for channel in list(server._map.values()):
                channel.handle_close()
        server.task_dispatcher.shutdown()
        self._thread.join(timeout=10)
