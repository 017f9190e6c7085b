"""The one place that talks HTTP to exoscale's API v2: the official client, bounded.

PyPI's `exoscale` (exoscale.api.v2.Client) signs every request (EXO2-HMAC-SHA256, through
requests-exoscale-auth) and builds its calls from the OpenAPI spec it ships; we use it as it
is, pointed at one endpoint (`url=`), and add what it leaves out:

- a timeout on every request (its session sends none), and no proxy from the environment
  for a loopback endpoint;
- retries: 429 (honouring Retry-After) and 5xx / dropped connections for calls that can be
  repeated; a create whose answer was lost asks `find_existing` before sending it again;
- errors as stackfleet's typed one-line errors, from the API's `{"message": ...}` body
  (never the Authorization header, never the secret);
- list-zones through the same bounded session (the client sends it with a bare
  `requests.request`, which has no timeout).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import requests

from stackfleet.errors import CloudError, CredentialsError, Unreachable
from stackfleet.provisioners.exoscale.credentials import ExoscaleCredentials

log = logging.getLogger("stackfleet.exoscale")

# Calls that change nothing, or whose repeat has the effect of one: retried freely. A
# repeated delete may answer 404, which callers treat as done.
_REPEATABLE_PREFIXES = ("list_", "get_", "delete_", "start_", "stop_", "update_")
REQUEST_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 6
# How long one call keeps retrying while the API throttles it (429).
THROTTLE_PATIENCE_S = 300.0


class _BoundedSession(requests.Session):
    """The client's session with a default timeout on every request."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout_s)
        return super().request(method, url, *args, **kwargs)


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return (response.text or response.reason or "no message").strip()[:300]


class ExoscaleAPI:
    """Thread-safe: each thread gets its own client (and HTTP session)."""

    def __init__(
        self,
        credentials: ExoscaleCredentials,
        zone: str | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._creds = credentials
        self.zone = zone or credentials.zone
        # The zone is the cluster's (given, or asked for by find_zone), or the endpoint is one
        # for all: otherwise a cluster is looked for in every zone (see ExoscaleProvisioner).
        self.zone_pinned = zone is not None or credentials.endpoint is not None
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._local = threading.local()
        self._lock = threading.Lock()
        self.calls = 0  # every HTTP request sent, for benchmarks and tests
        # Catalog answers (zones, templates, instance types): fixed for one run.
        self._catalog: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}

    @property
    def endpoint(self) -> str:
        return self._creds.endpoint_for(self.zone)

    @property
    def source(self) -> str:
        return self._creds.source

    def use_zone(self, zone: str) -> None:
        """Talk to `zone` from now on (its own endpoint, unless one was given)."""
        self.zone = zone
        self.zone_pinned = True

    def in_zone(self, zone: str) -> ExoscaleAPI:
        """Another client for the same account, on `zone`'s endpoint."""
        return ExoscaleAPI(self._creds, zone, self._timeout_s, self._max_attempts, self._sleep)

    def _client(self) -> Any:
        from exoscale.api.v2 import Client  # type: ignore[import-untyped]

        endpoint = self.endpoint
        cached = getattr(self._local, "client", None)
        if cached is not None and cached.endpoint == endpoint:
            return cached
        client = Client(self._creds.key, self._creds.secret, url=endpoint)
        session = _BoundedSession(self._timeout_s)
        session.auth = client.http_client.auth  # the official signer, unchanged
        session.trust_env = not _is_loopback(endpoint)
        client.http_client = session
        self._local.client = client
        return client

    def catalog(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """A read of what does not change during a run, asked once per zone."""
        key = (self.zone, method, tuple(sorted(kwargs.items())))
        if key not in self._catalog:
            self._catalog[key] = self.call(method, **kwargs)
        return self._catalog[key]

    def call(
        self,
        method: str,
        find_existing: Callable[[], dict[str, Any] | None] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """`method`: the official client's method (`create_instance`, ...); kwargs as it takes
        them. Returns the answer's JSON; raises stackfleet errors."""
        from exoscale.api.exceptions import ExoscaleAPIException  # type: ignore[import-untyped]

        op = method.replace("_", "-")
        repeatable = method.startswith(_REPEATABLE_PREFIXES)
        throttled_since: float | None = None
        attempt = 0
        while attempt < self._max_attempts:
            attempt += 1
            with self._lock:
                self.calls += 1
            try:
                if method == "list_zones":
                    return self._list_zones()
                answer: dict[str, Any] = getattr(self._client(), method)(**kwargs)
                return answer
            except ExoscaleAPIException as exc:
                response = exc.response
                status = getattr(response, "status_code", 0)
                text = _message(response) if response is not None else str(exc)
                if status == 403:
                    raise CredentialsError(
                        f"exoscale refused the credentials from {self.source} ({op}: {text})"
                    ) from None
                if status == 429:
                    throttled_since = throttled_since or time.monotonic()
                    if time.monotonic() - throttled_since < THROTTLE_PATIENCE_S:
                        self._sleep(_retry_after(response, attempt))
                        attempt -= 1  # not processed: waiting is not failing
                        continue
                if status >= 500 and attempt < self._max_attempts:
                    found = self._after_lost_answer(op, repeatable, find_existing, text)
                    if found is not None:
                        return found
                    continue
                raise CloudError(f"exoscale {op}: {text}", code=status, command=op) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self._max_attempts:
                    raise Unreachable(
                        f"exoscale {op}: cannot reach {self.endpoint} "
                        f"({exc.__class__.__name__}) after {attempt} attempts"
                    ) from None
                found = self._after_lost_answer(op, repeatable, find_existing, str(exc))
                if found is not None:
                    return found
        raise CloudError(f"exoscale {op}: no answer after {self._max_attempts} attempts")

    def _after_lost_answer(
        self,
        op: str,
        repeatable: bool,
        find_existing: Callable[[], dict[str, Any] | None] | None,
        why: str,
    ) -> dict[str, Any] | None:
        """Before repeating a call that may have taken effect: what it made, if anything."""
        self._sleep(0.5)
        if repeatable:
            return None
        if find_existing is None:
            raise CloudError(f"exoscale {op}: {why} (not repeated: it may have taken effect)")
        found = find_existing()
        if found is not None:
            log.info("exoscale %s: its answer was lost, but it took effect", op)
        return found

    def _list_zones(self) -> dict[str, Any]:
        from exoscale.api.exceptions import (
            ExoscaleAPIAuthException,
            ExoscaleAPIClientException,
            ExoscaleAPIServerException,
        )

        response = self._client().http_client.get(f"{self.endpoint}/zone")
        status = response.status_code
        if status >= 400:
            kind = (
                ExoscaleAPIAuthException
                if status == 403
                else ExoscaleAPIServerException
                if status >= 500
                else ExoscaleAPIClientException
            )
            raise kind(f"list-zones: {status}", response)
        answer: dict[str, Any] = response.json()
        return answer


def _retry_after(response: Any, attempt: int) -> float:
    value = getattr(response, "headers", {}).get("Retry-After", "")
    try:
        return max(float(value), 0.1)
    except ValueError:
        return min(0.5 * 2**attempt, 10.0)
