"""The HTTP front: /client/api over GET and POST, signature check, faults, rate limit."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from stackfleet.simulator import api_spec, errors, signing
from stackfleet.simulator import catalog as cat
from stackfleet.simulator.commands import EFFECTS, HANDLERS, Ctx, on_failure
from stackfleet.simulator.config import SimulatorConfig
from stackfleet.simulator.faults import Faults, RateLimiter
from stackfleet.simulator.jobs import settle
from stackfleet.simulator.requestlog import RequestLog
from stackfleet.simulator.serving import ApiRequestHandler, BackendServer
from stackfleet.simulator.state import Store


class Backend:
    """Everything a request needs; shared by the handler threads."""

    def __init__(
        self,
        config: SimulatorConfig,
        store: Store,
        api_key: str,
        secret: str,
        log: RequestLog,
    ) -> None:
        self.config = config
        self.store = store
        self.api_key = api_key
        self.secret = secret
        self.log = log
        with store.transaction() as tx:
            epoch = tx.counter("fault_epoch")
        self.faults = Faults(config.faults, epoch)
        self.limiter = RateLimiter(config.rate_limit)

    def authenticate(self, command: str | None, params: dict[str, str]) -> None:
        given_key = next((v for k, v in params.items() if k.lower() == "apikey"), None)
        if command not in HANDLERS or given_key != self.api_key:
            raise errors.auth_error()
        if not signing.verify(params, self.secret):
            raise errors.auth_error()

    def execute(self, command: str, params: dict[str, str], method: str) -> dict[str, Any]:
        lowered = {k.lower(): v for k, v in params.items()}
        api_spec.check(api_spec.load()[command], lowered)
        now = time.time()
        with self.store.transaction() as tx:
            settle(tx, EFFECTS, now, on_failure)
            ctx = Ctx(tx, command, lowered, method, now, self.config, self.faults)
            inner = HANDLERS[command](ctx)
        return {f"{command.lower()}response": inner}


class ApiHandler(ApiRequestHandler):
    server: ApiServer

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        backend = self.server.backend
        url = urlsplit(self.path)
        body = b""
        if method == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.rstrip("/") != "/client/api":
            self._send(404, {"errorresponse": {"errortext": "not found"}})
            return
        params: dict[str, str] = {}
        # The servlet merges query and form body; the first value of a name wins.
        for key, value in parse_qsl(url.query, keep_blank_values=True):
            params.setdefault(key, value)
        if body and "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                params.setdefault(key, value)
        command = params.get("command")
        client = self.client_address[0]
        if backend.config.rtt:
            time.sleep(backend.config.rtt)
        fault = backend.faults.on_request(command or "")
        if fault.drop:
            backend.log.write(method, command, params, 0, started, client, "fault: dropped")
            self._drop()
            return
        if fault.http5xx:
            backend.log.write(method, command, params, 503, started, client, "fault: http5xx")
            self._send_raw(
                503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html"
            )
            return
        name = command or "error"
        lost = backend.faults.answer_lost(command or "")
        try:
            backend.authenticate(command, params)
            assert command is not None
            retry_ms = backend.limiter.check(cat.ACCOUNT)
            if retry_ms is not None:
                raise errors.rate_limited(retry_ms)
            answer = backend.execute(command, params, method)
            status = 200
        except errors.ApiError as err:
            answer, status = err.body(name), err.code
        if lost is not None and status == 200:
            # Committed (the state and its jobs are written), then the answer is lost, as
            # behind a load balancer that gives up on a slow cloud.
            backend.log.write(
                method, command, params, status, started, client, f"fault: lost ({lost})"
            )
            if lost == "reset":
                self._drop()
            else:
                self._send_raw(
                    504, b"<html><body><h1>504 Gateway Time-out</h1></body></html>", "text/html"
                )
            return
        backend.log.write(method, command, params, status, started, client)
        self._send(status, answer)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json;charset=UTF-8")

    def _drop(self) -> None:
        # Reset, not a clean close: the client sees a dropped connection mid-request.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        self.close_connection = True
        self.connection.close()


class ApiServer(BackendServer[Backend]):
    handler_class = ApiHandler
