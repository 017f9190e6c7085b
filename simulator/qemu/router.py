"""The virtual router of the QEMU mini-cloud, run inside the guests' namespace.

It answers on every gateway address what a CloudStack virtual router answers: metadata on
port 80 (each guest only its own, by source address), the password server on 8080; and,
our addition for clouds with no way out, an artifact mirror on 8090 serving one folder.
Its own process, so the guests keep a router between CLI invocations of the embedded
simulator; it reads the VMs from the simulator's state file. Every request is one line
in `router.log`: who asked for what, and the answer's status.

    ip netns exec NS python -m stackfleet.simulator.qemu.router --state S --log L [--mirror D]
"""

from __future__ import annotations

import argparse
import functools
import signal
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from stackfleet.simulator.metadata import (
    MetadataHandler,
    MetadataServer,
    PasswordHandler,
    vm_by_address,
)
from stackfleet.simulator.state import Store

METADATA_PORT = 80
PASSWORD_PORT = 8080
MIRROR_PORT = 8090


class _Log:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def line(self, service: str, client: str, path: str, status: int) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            self._stream.write(f"{stamp} {service} {client} GET {path} {status}\n")
            self._stream.flush()


def _logged(base: type[Any], service: str, log: _Log) -> Any:
    class Logged(base):
        def send_response(self, code: int, message: str | None = None) -> None:
            log.line(service, self.client_address[0], self.path, code)
            super().send_response(code, message)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Logged


class _MirrorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(state: Path, log_path: Path, mirror: Path | None) -> None:
    store = Store(state)
    lookup = vm_by_address(store)
    log = _Log(log_path.open("a", buffering=1))
    metadata = _logged(MetadataHandler, "metadata", log)
    password = _logged(PasswordHandler, "password", log)
    servers: list[ThreadingHTTPServer] = [
        MetadataServer(("0.0.0.0", METADATA_PORT), lookup, metadata),
        MetadataServer(("0.0.0.0", PASSWORD_PORT), lookup, password),
    ]
    if mirror is not None:
        handler = functools.partial(
            _logged(SimpleHTTPRequestHandler, "mirror", log), directory=str(mirror)
        )
        servers.append(_MirrorServer(("0.0.0.0", MIRROR_PORT), handler))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    done.wait()
    for server in servers:
        server.shutdown()
    store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="stackfleet.simulator.qemu.router")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--mirror", type=Path, default=None)
    args = parser.parse_args(argv)
    serve(args.state, args.log, args.mirror)


if __name__ == "__main__":
    main()
