"""The HTTP front of the exoscale simulator: /v2/..., signature check, schema checks, dispatch.

Order per request: route by the spec's paths, check the signature (403), parse and validate the
parameters and body against the spec's request schemas (400), settle due operations, run the
handler, validate the answer against the spec's 200 schema and log the verdict.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stackfleet.simulator.exoscale import openapi, operations, signing
from stackfleet.simulator.exoscale.call import Call
from stackfleet.simulator.exoscale.config import ExoscaleConfig
from stackfleet.simulator.exoscale.errors import ApiError, bad_request
from stackfleet.simulator.exoscale.requestlog import RequestLog
from stackfleet.simulator.exoscale.routes import HANDLERS, UNAUTHENTICATED
from stackfleet.simulator.serving import ApiRequestHandler, BackendServer
from stackfleet.simulator.state import Store


class Backend:
    """Everything a request needs; shared by the handler threads."""

    def __init__(
        self, config: ExoscaleConfig, store: Store, api_key: str, secret: str, log: RequestLog
    ) -> None:
        self.config = config
        self.store = store
        self.credentials = {api_key: secret}
        self.log = log
        # Answers that broke the spec's schema (a simulator bug); also in the request log.
        self.schema_failures = 0

    def dispatch(
        self, method: str, raw_path: str, query: dict[str, list[str]], body: bytes, auth: str | None
    ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """(status, answer, log fields)."""
        entry: dict[str, Any] = {"method": method, "path": raw_path}
        try:
            if not raw_path.startswith(openapi.API_PREFIX + "/"):
                raise ApiError(404, f"no such endpoint: {raw_path} (the API lives under /v2)")
            found = openapi.route(method, raw_path[len(openapi.API_PREFIX) :])
            if found is None:
                raise ApiError(404, f"no such endpoint: {method} {raw_path}")
            op, path_params = found
            entry["operation"] = op.id
            if not (op.id in UNAUTHENTICATED and auth is None):
                try:
                    signing.verify(auth, method, raw_path, body, query, self.credentials)
                except signing.SignatureError as exc:
                    raise ApiError(403, str(exc)) from None
            if op.id not in HANDLERS:
                raise ApiError(501, f"{op.id} is not simulated (see docs/simulator.md)")
            params = _parameters(op, path_params, query)
            entry["query"] = {k: v for k, v in params.items() if k not in path_params}
            entry["request_schema"] = "ok"  # parameters; _body() gives the body's verdict
            document = _body(op, body, entry)
            answer = self._execute(op.id, path_params, entry["query"], document)
        except ApiError as err:
            entry["note"] = err.message
            entry["response_schema"] = None
            return err.status, err.body(), entry
        verdict = openapi.problems(op.response_schema, answer) if op.response_schema else []
        if verdict:
            self.schema_failures += 1
        entry["response_schema"] = verdict or "ok"
        return 200, answer, entry

    def _execute(
        self, op_id: str, path: dict[str, str], query: dict[str, str], body: dict[str, Any]
    ) -> dict[str, Any]:
        now = time.time()
        with self.store.transaction() as tx:
            operations.settle(tx, now)
            return HANDLERS[op_id](Call(tx, op_id, path, query, body, now, self.config))


def _parameters(
    op: openapi.Operation, path: dict[str, str], query: dict[str, list[str]]
) -> dict[str, str]:
    """Path and query parameters, each checked against its schema in the spec."""
    known = {p["name"]: p for p in op.parameters}
    unknown = sorted(name for name in query if known.get(name, {}).get("in") != "query")
    if unknown:
        raise bad_request(f"{op.id}: unknown query parameter(s) {', '.join(unknown)}")
    values = {**{k: v[0] for k, v in query.items()}, **path}
    for name, value in values.items():
        problems = openapi.problems(known[name]["schema"], value)
        if problems:
            raise bad_request(f"{op.id}: parameter {name}: {problems[0].split(': ', 1)[1]}")
    return values


def _body(op: openapi.Operation, raw: bytes, entry: dict[str, Any]) -> dict[str, Any]:
    if op.body_schema is None:
        return {}
    try:
        # No body at all is an empty object: the official client sends none when no field is
        # given (start-instance with no rescue profile).
        document = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request(f"{op.id}: the request body is not JSON") from None
    entry["body"] = document
    problems = openapi.problems(op.body_schema, document)
    entry["request_schema"] = problems or "ok"
    if problems:
        raise bad_request(f"{op.id}: invalid request body: {'; '.join(problems)}")
    assert isinstance(document, dict)  # every request schema in the spec is an object
    return document


class ApiHandler(ApiRequestHandler):
    server: ExoscaleServer

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        backend = self.server.backend
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = parse_qs(url.query, keep_blank_values=True)
        status, answer, entry = backend.dispatch(
            method, url.path, query, body, self.headers.get("Authorization")
        )
        entry.update(status=status, client=self.client_address[0])
        backend.log.write(entry, started)
        self._send_raw(status, json.dumps(answer).encode(), "application/json")


class ExoscaleServer(BackendServer[Backend]):
    handler_class = ApiHandler
