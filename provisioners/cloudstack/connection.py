"""The one place that talks HTTP to a CloudStack API: signing, POST, errors, retries.

Built on libcloud's CloudStackConnection (its HTTP session, TLS and JSON handling).
What we change: every parameter, query and form body alike, is covered by one
signature (CloudStack checks both), userdata goes in a POST body (GET caps it near
3 KB), and errors become stackfleet's typed errors carrying the API's errorcode.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

from stackfleet.errors import BadInput, CloudError, CredentialsError, Unreachable
from stackfleet.provisioners.cloudstack.credentials import Credentials
from stackfleet.provisioners.cloudstack.signing import expiry_params, sign

log = logging.getLogger("stackfleet.cloudstack")

# Commands that only read: any failure can be retried without a second thought.
READ_ONLY_PREFIXES = ("list", "query", "get")
# Mutations whose repeat has the effect of one call: deleting what is gone, tagging or
# starting twice, re-authorizing a rule (CloudStack skips a rule that already exists).
# A repeat may answer "not found" or fail its job; callers treat that as done.
IDEMPOTENT = frozenset(
    {
        "createTags",
        "deleteTags",
        "updateVirtualMachine",
        "startVirtualMachine",
        "stopVirtualMachine",
        "destroyVirtualMachine",
        "expungeVirtualMachine",
        "deleteSecurityGroup",
        "deleteSSHKeyPair",
        "deleteAffinityGroup",
        "authorizeSecurityGroupIngress",
        "revokeSecurityGroupIngress",
    }
)
# How long one call keeps retrying while the cloud throttles it.
THROTTLE_PATIENCE_S = 300.0
# The window a throttling cloud counts requests in (CloudStack: api.throttling.interval,
# 1 s by default), with a margin for the requests' travel.
THROTTLE_WINDOW_S = 1.05
_RETRY_AFTER = re.compile(r"retry after (\d+) ?ms", re.IGNORECASE)


class RetryableError(CloudError):
    """A transport failure or 5xx: the call may or may not have taken effect."""


class RateLimited(CloudError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, code=429)
        self.retry_after_s = retry_after_s


def _redacted(params: Mapping[str, str]) -> dict[str, str]:
    shown = {}
    for name, value in params.items():
        low = name.lower()
        if low in ("apikey", "signature"):
            continue
        shown[name] = f"<{len(value)} chars>" if low in ("userdata", "publickey") else value
    return shown


class CloudStackAPI:
    """Thread-safe: each thread gets its own libcloud connection."""

    def __init__(
        self,
        credentials: Credentials,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        use_expiry: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """timeout_s / max_attempts: None takes the credentials' `timeout` / `retry` (cs's
        settings) when set, else 60 s / 6 attempts."""
        url = urlparse(credentials.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise CredentialsError(
                f"{credentials.source}: endpoint {credentials.endpoint!r} is not an http(s) URL"
            )
        self._creds = credentials
        self._secure = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._secure else 80)
        self._path = url.path or "/client/api"
        if timeout_s is None:
            timeout_s = credentials.timeout_s or 60.0
        if max_attempts is None:
            max_attempts = 6 if credentials.retry is None else credentials.retry + 1
        self._timeout = timeout_s
        self._max_attempts = max_attempts
        self._backoff_s = credentials.retry_backoff_s
        self._sleep = sleep
        self._clock = clock
        # signature v3 `expires`: cs's `expiration` (seconds; negative: none).
        self._expiry_s = credentials.expiration_s if use_expiry else None
        self._always_post = credentials.method == "post"
        self._headers = dict(credentials.headers)
        self._local = threading.local()
        self.calls = 0  # every HTTP request sent, for benchmarks and tests
        # Once the cloud has throttled us: at most `_limit` requests in any window of
        # THROTTLE_WINDOW_S (what we sent in the second before the first 429, less one),
        # and nothing before `_next_slot` (the cloud's "retry after").
        self._limit: int | None = None
        self._next_slot = 0.0
        self._sent: deque[float] = deque(maxlen=256)  # send times (reserved ones too), in order
        self._count_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self._creds.endpoint

    # --- public -------------------------------------------------------------
    def call(
        self,
        command: str,
        params: Mapping[str, Any] | None = None,
        post: bool = False,
        find_existing: Callable[[], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """One API command; retries what is safe to retry; returns the unwrapped body.

        A transport failure or 5xx leaves a mutation in doubt. Reads and IDEMPOTENT
        commands are sent again. A create is sent again only if `find_existing` (a
        look-up by name or tag) says it did not happen; if it did, its answer is used.
        Any other mutation in doubt is reported, never repeated.
        """
        safe = command.startswith(READ_ONLY_PREFIXES) or command in IDEMPOTENT
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                self._pace()
                return self._send(command, params or {}, post)
            except RateLimited as exc:
                # Throttling refuses before doing anything: always safe to retry, for as
                # long as the cloud keeps saying "later" (bounded by time, not attempts).
                self._throttled(exc.retry_after_s)
                if time.monotonic() - started > THROTTLE_PATIENCE_S:
                    raise
            except RetryableError:
                if attempt >= self._max_attempts or not (safe or find_existing):
                    raise
                if find_existing is not None:
                    existing = find_existing()
                    if existing is not None:
                        log.debug("%s: found it done after a failed request", command)
                        return existing
                self._sleep(self._retry_delay(attempt))

    def _retry_delay(self, attempt: int) -> float:
        if self._backoff_s is not None:  # cs's retry_backoff: doubling, at most 30 s
            return min(self._backoff_s * 2 ** (attempt - 1), 30.0)
        return min(0.1 * 2**attempt, 5.0)

    def _throttled(self, retry_after_s: float) -> None:
        """The cloud refused a request (429): from now on, send at the rate it allows.

        The limit is estimated once, as what we sent in the last window (which the cloud
        has just said is its limit), less one. CloudStack counts requests in a window
        (api.throttling.interval, a second by default): a burst under the limit still
        goes at once, only the request past it waits for the window to move."""
        now = self._clock()
        with self._count_lock:
            if self._limit is None:
                recent = sum(1 for t in self._sent if now - THROTTLE_WINDOW_S < t <= now)
                self._limit = max(recent - 1, 1)
                log.debug("throttled at about %d requests/s: pacing", recent)
            self._next_slot = max(self._next_slot, now + retry_after_s)

    def _pace(self) -> None:
        """Take a send time (now, unless the estimated limit says later) and wait for it."""
        with self._count_lock:
            now = self._clock()
            slot = now
            if self._limit is not None:
                # Send times only grow, so the window before `slot` is the tail of _sent.
                slot = max(now, self._next_slot, self._sent[-1] if self._sent else now)
                if len(self._sent) >= self._limit:
                    slot = max(slot, self._sent[-self._limit] + THROTTLE_WINDOW_S)
            self._sent.append(slot)
        if slot > now:
            self._sleep(slot - now)

    def list_all(
        self, command: str, key: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """All pages of a list command. An empty list is `{}` with no count."""
        items: list[dict[str, Any]] = []
        page, pagesize = 1, 500
        while True:
            body = self.call(command, {**(params or {}), "page": page, "pagesize": pagesize})
            batch = body.get(key, [])
            items.extend(batch)
            if len(batch) < pagesize or len(items) >= int(body.get("count", 0)):
                return items
            page += 1

    # --- transport ----------------------------------------------------------
    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            from libcloud.common.cloudstack import CloudStackConnection

            conn = CloudStackConnection(
                self._creds.key,
                self._creds.secret,
                secure=self._secure,
                host=self._host,
                port=self._port,
                timeout=self._timeout,
            )
            # libcloud would sign again in pre_connect_hook and add its own defaults,
            # and would raise its own errors: we read status and body ourselves.
            setattr(conn, "add_default_params", lambda params: params)  # noqa: B010
            setattr(conn, "pre_connect_hook", lambda params, headers: (params, headers))  # noqa: B010
            conn.responseCls = _plain_response_class()
            conn.connect()
            _configure_tls(conn.connection, self._creds)
            self._local.conn = conn
        return conn

    def _send(self, command: str, params: Mapping[str, Any], post: bool) -> dict[str, Any]:
        from libcloud.common.types import LibcloudError

        full = {k: _as_text(v) for k, v in params.items() if v is not None}
        full.update({"command": command, "response": "json", "apikey": self._creds.key})
        if self._expiry_s is not None:
            full.update(expiry_params(valid_for_s=self._expiry_s))
        full["signature"] = sign(full, self._creds.secret)
        conn = self._connection()
        started = time.monotonic()
        with self._count_lock:
            self.calls += 1
        post = post or self._always_post
        try:
            if post:
                response = conn.request(
                    action=self._path,
                    params={},
                    data=full,  # libcloud form-encodes it
                    method="POST",
                    headers={**self._headers, "Content-Type": "application/x-www-form-urlencoded"},
                    retry_failed=False,
                )
            else:
                response = conn.request(
                    action=self._path,
                    params=full,
                    method="GET",
                    headers=dict(self._headers),
                    retry_failed=False,
                )
            status, body = int(response.status), response.body or ""
            headers = {k.lower(): v for k, v in dict(response.headers or {}).items()}
        except (OSError, LibcloudError) as exc:
            self._local.conn = None  # a broken socket must not be reused
            log.debug("%s failed in transport: %s", command, type(exc).__name__)
            tls = self._tls_failure(exc)
            if tls is not None:
                # The handshake failed: nothing reached the API, and a retry fails the same.
                raise tls from None
            never_sent = _never_connected(exc)
            if never_sent:
                # Nothing reached the server: no mutation is in doubt, and a retry storm
                # against a wrong or dead endpoint helps nobody.
                raise Unreachable(
                    f"cannot reach the CloudStack API at {self.endpoint} ({never_sent}); "
                    "check the endpoint and the network"
                ) from None
            reason = _ssl_reason(exc)
            raise RetryableError(
                f"{command}: connection to {self.endpoint} failed ({type(exc).__name__}"
                + (f": {reason}" if reason else "")
                + ")",
                command=command,
            ) from None
        log.debug(
            "%s %s -> %s in %.0f ms",
            command,
            _redacted(full),
            status,
            (time.monotonic() - started) * 1000,
        )
        return self._unwrap(command, status, body, headers)

    def _unwrap(
        self, command: str, status: int, body: str, headers: Mapping[str, str]
    ) -> dict[str, Any]:
        import json

        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = None
        wrapper = f"{command.lower()}response"
        inner = data.get(wrapper) if isinstance(data, dict) else None
        if inner is None and isinstance(data, dict) and len(data) == 1:
            inner = next(iter(data.values()))  # error bodies of unknown commands
        if status == 200 and isinstance(inner, dict):
            return inner
        errortext = inner.get("errortext", "") if isinstance(inner, dict) else ""
        code = int(inner.get("errorcode", status)) if isinstance(inner, dict) else status
        if status == 429 or code == 429:
            match = _RETRY_AFTER.search(errortext)
            wait = int(match.group(1)) / 1000 if match else 1.0
            raise RateLimited(f"{command}: throttled by the cloud", retry_after_s=wait)
        if status == 401:
            raise CredentialsError(self._explain_401(command, errortext, headers)) from None
        if status == 404:
            # CloudStack answers API errors with its own codes (4xx 43x, 53x), never 404:
            # this URL is not the API.
            url = urlparse(self.endpoint)
            expected = f"{url.scheme}://{url.netloc}/client/api"
            where = self._creds.origin("endpoint", self._creds.source)
            raise BadInput(
                f"{command}: {self.endpoint} answers 404 (not found): not a CloudStack API; "
                f"expected {expected} (fix the endpoint in {where})"
            )
        if status in (500, 502, 503, 504):
            # Not one of CloudStack's own codes (530-537): a proxy or server fault.
            raise RetryableError(f"{command}: HTTP {status} from the cloud", code=status)
        if status == 530 and command.startswith(READ_ONLY_PREFIXES):
            raise RetryableError(f"{command}: {errortext or 'server error'} (530)", code=530)
        text = errortext or f"HTTP {status}"
        raise CloudError(f"{command}: {text} ({code})", code=code, command=command)

    def _tls_failure(self, exc: BaseException) -> BadInput | None:
        """A TLS handshake failure that retrying cannot fix, as one line with the fix."""
        reason = _ssl_reason(exc)
        if reason is None:
            return None
        url = urlparse(self.endpoint)
        low = reason.lower()
        if any(sign in low for sign in _PLAIN_HTTP_SIGNS):
            plain = url._replace(scheme="http").geturl()
            if url.port is None:  # https's default port was dialled: keep it explicit
                plain = url._replace(scheme="http", netloc=f"{url.hostname}:443").geturl()
            where = self._creds.origin("endpoint", self._creds.source)
            return BadInput(
                f"{self.endpoint}: the endpoint speaks plain http, not https: use {plain} "
                f"(in {where}), or put TLS in front of it"
            )
        if "certificate_verify_failed" in low or "certificate verify failed" in low:
            detail = reason.split("certificate verify failed:", 1)[-1].strip()
            ca = self._creds.verify
            if isinstance(ca, str):
                where = self._creds.origin("verify", "verify")
                return BadInput(
                    f"{self.endpoint}: the server's certificate does not verify ({detail}) "
                    f"against the CA bundle {ca} ({where}): set `verify` to the PEM file of "
                    "the CA that signed it"
                )
            section = self._creds.section or "cloudstack"
            return BadInput(
                f"{self.endpoint}: the server's certificate does not verify ({detail}): give "
                f"the CA that signed it: `verify = /path/to/ca.pem` in cloudstack.ini "
                f"[{section}], or CLOUDSTACK_VERIFY=/path/to/ca.pem"
            )
        if "certificate required" in low or "bad certificate" in low or "unknown ca" in low:
            return BadInput(
                f"{self.endpoint}: the server refused our client certificate ({reason}): set "
                "`cert` (and `cert_key`) in cloudstack.ini, or CLOUDSTACK_CERT, to the "
                "certificate it expects"
            )
        if "alert handshake failure" in low:
            return BadInput(
                f"{self.endpoint}: the server refused the TLS handshake ({reason}): it may "
                "require a client certificate (`cert` and `cert_key` in cloudstack.ini, or "
                "CLOUDSTACK_CERT), or share no TLS version or cipher with us"
            )
        return None

    def _explain_401(self, command: str, errortext: str, headers: Mapping[str, str]) -> str:
        skew = _clock_skew_s(headers)
        if skew is not None and abs(skew) > 300:
            return (
                f"{command}: the cloud refused the request's signature; this machine's clock is "
                f"{abs(skew):.0f} s {'behind' if skew > 0 else 'ahead of'} the server's: fix the "
                "clock (signatures expire)"
            )
        detail = f" ({errortext})" if errortext else ""
        return (
            f"{command}: the cloud refused the API key or signature (401){detail}: check "
            f"the key and secret from {self._creds.source}"
        )


_PLAIN: Any = None


def _plain_response_class() -> Any:
    """A libcloud Response that accepts any status: errors are ours to interpret."""
    global _PLAIN
    if _PLAIN is None:
        from libcloud.common.base import Response

        class PlainResponse(Response):
            def success(self) -> bool:
                return True

            def parse_body(self) -> Any:
                return self.body

        _PLAIN = PlainResponse
    return _PLAIN


def _clock_skew_s(headers: Mapping[str, str]) -> float | None:
    from email.utils import parsedate_to_datetime

    date = headers.get("date")
    if not date:
        return None
    try:
        server = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None
    return server - time.time()


def _configure_tls(http: Any, creds: Credentials) -> None:
    """cs's verify / dangerous_no_tls_verify / cert on libcloud's requests session."""
    if creds.verify is False:
        http.verify, http.ca_cert = False, None
    elif isinstance(creds.verify, str):
        http.verify, http.ca_cert = True, creds.verify
    if creds.cert is not None:
        http.session.cert = creds.cert


# OpenSSL's words for "the other side did not answer a TLS hello with TLS".
_PLAIN_HTTP_SIGNS = (
    "wrong_version_number",
    "wrong version number",
    "record layer failure",
    "packet length too long",
    "http request",
    "unknown protocol",
)


def _ssl_reason(exc: BaseException) -> str | None:
    """The text of the ssl.SSLError in exc's chain (requests wraps it), or None."""
    import ssl

    seen: set[int] = set()
    todo: list[Any] = [exc]
    found = None
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError):
            return _ssl_text(str(item))
        if type(item).__name__ == "SSLError" and found is None:
            # requests' or urllib3's wrapper: its text names the URL, with the signature
            found = _ssl_text(re.sub(r"url: \S+", "url: <request>", str(item)))
        todo += [item.__cause__, item.__context__, *item.args]
    return found


def _ssl_text(text: str) -> str:
    """OpenSSL's reason without the source location: 'tlsv13 alert certificate required'."""
    text = re.sub(r"\s*\(_ssl\.c:\d+\)", "", text)
    return re.sub(r"^\[SSL: [A-Z0-9_]+\]\s*", "", text).strip()


def _never_connected(exc: BaseException) -> str | None:
    """'connection refused' or 'name not resolved' if the request never left: else None."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, socket.gaierror):
            return "host name not resolved"
        text = str(item)
        if "Connection refused" in text:
            return "connection refused"
        if "Name or service not known" in text or "Failed to resolve" in text:
            return "host name not resolved"
        todo += [item.__cause__, item.__context__, *item.args]
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
