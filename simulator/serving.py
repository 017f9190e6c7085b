"""What both simulators' HTTP fronts share (CloudStack's /client/api, exoscale's /v2): the
request handler's plumbing, the threaded server holding a backend, serving it on a thread,
the URL a client is given, and the JSONL request log's file.

Each simulator keeps what is its own: routing, signatures, answers and what a log line holds.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

BackendT = TypeVar("BackendT")


class ApiRequestHandler(BaseHTTPRequestHandler):
    """Answers through `_handle(method)`; GET and POST here, a subclass adds other methods."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, delayed ACKs cost 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the JSONL request log replaces the stderr access log

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        raise NotImplementedError

    def _send_raw(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class BackendServer(ThreadingHTTPServer, Generic[BackendT]):
    """A server whose handlers (`handler_class`) all answer from one shared backend."""

    daemon_threads = True
    allow_reuse_address = True
    handler_class: ClassVar[type[BaseHTTPRequestHandler]]

    def __init__(self, address: tuple[str, int], backend: BackendT) -> None:
        self.backend = backend
        super().__init__(address, self.handler_class)


def serve_in_thread(server: ThreadingHTTPServer, name: str) -> threading.Thread:
    """Serve on a daemon thread (checking for shutdown every 50 ms); the thread, started."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True, name=name)
    thread.start()
    return thread


def url(server: ThreadingHTTPServer, path: str) -> str:
    """The server's URL with this path (an IPv6 host in brackets)."""
    host, port = server.server_address[:2]
    host = str(host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


class StopOnExit:
    """`with X.start(...) as sim:` stops the simulator when the block ends."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class JsonLines:
    """An append-only JSONL file (0600: what an account asked for is its own business),
    written whole lines at a time from the handler threads; no path, no log."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path is not None:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, entry: dict[str, Any], started: float) -> None:
        """One line: `entry`, the time now and how long since `started` (monotonic)."""
        if self._fd is None:
            return
        line = {
            "ts": round(time.time(), 3),
            "duration_ms": round((time.monotonic() - started) * 1000, 2),
            **entry,
        }
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
