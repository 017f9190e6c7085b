"""Transport failures name their cause and the fix, at once; cs's TLS settings are honoured.

Real: our CloudStackAPI (libcloud, requests, OpenSSL) against loopback servers only: the
embedded simulator (plain http), a tiny http.server answering 404, and http.server
wrapped in TLS with certificates made here by `cryptography` (a CA, a server certificate
for 127.0.0.1, a client certificate). Controlled: the retry sleep (recorded, so a retry
loop shows). Nothing dials anything but 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stackfleet.errors import BadInput, ExitCode
from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
from stackfleet.provisioners.cloudstack.credentials import Credentials
from stackfleet.simulator import Simulator, SimulatorConfig


# --- certificates ------------------------------------------------------------------------
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path.with_suffix(".pem")), str(path.with_suffix(".key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("test CA", ca_key, None, ca=True)
    ca_name = ca.subject
    server_key, client_key = _key(), _key()
    server = _cert("127.0.0.1", server_key, (ca_name, ca_key), ip="127.0.0.1")
    client = _cert("client", client_key, (ca_name, ca_key))
    return {
        "ca": _write(root / "ca", ca, ca_key)[0],
        "server": _write(root / "server", server, server_key),
        "client": _write(root / "client", client, client_key),
    }


# --- loopback servers --------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    status = 200
    seen: list[tuple[str, str | None]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append((self.command, self.headers.get("X-Team")))
        body = json.dumps(
            {"listzonesresponse": {}} if self.status == 200 else {"error": "no"}
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _serve(status: int = 200, tls: ssl.SSLContext | None = None) -> Iterator[Any]:
    seen: list[tuple[str, str | None]] = []
    handler = type("H", (_Handler,), {"status": status, "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _tls(pki: dict[str, Any], client_ca: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki["server"])
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki["ca"])
    return ctx


def _api(endpoint: str, **settings: Any) -> tuple[CloudStackAPI, list[float]]:
    slept: list[float] = []
    creds = replace(Credentials(endpoint, "k", "s", "test"), **settings)
    return CloudStackAPI(creds, sleep=slept.append), slept


def _fails(api: CloudStackAPI) -> str:
    with pytest.raises(BadInput) as err:
        api.call("listZones")
    assert err.value.exit_code == ExitCode.BAD_INPUT
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --- tests -------------------------------------------------------------------------------
def test_https_against_plain_http_says_so_at_once() -> None:
    sim = Simulator.start(SimulatorConfig())
    try:
        http = sim.endpoint
        api, slept = _api(http.replace("http://", "https://", 1))
        message = _fails(api)
    finally:
        sim.stop()
    assert "the endpoint speaks plain http" in message and f"use {http}" in message, message
    assert slept == [] and api.calls == 1  # no retry loop


def test_404_on_the_endpoint_path_names_client_api() -> None:
    with _serve(status=404) as (port, _):
        message = _fails(_api(f"http://127.0.0.1:{port}/api")[0])
    assert f"expected http://127.0.0.1:{port}/client/api" in message, message


def test_untrusted_certificate_names_the_ca_setting(pki: dict[str, Any]) -> None:
    with _serve(tls=_tls(pki)) as (port, seen):
        endpoint = f"https://127.0.0.1:{port}/client/api"
        api, slept = _api(endpoint, section="lab")
        message = _fails(api)
        assert "does not verify" in message and "verify = /path/to/ca.pem" in message
        assert "cloudstack.ini [lab]" in message and "CLOUDSTACK_VERIFY" in message
        assert slept == [] and seen == []
        # The CA given as cs's `verify`: the same server is trusted.
        assert _api(endpoint, verify=pki["ca"])[0].call("listZones") == {}
        # dangerous_no_tls_verify: not checked at all.
        with pytest.warns(Warning):
            assert _api(endpoint, verify=False)[0].call("listZones") == {}


def test_client_certificate_is_sent(pki: dict[str, Any]) -> None:
    # TLS 1.2: the server refuses a missing certificate in the handshake. (Under 1.3 it
    # refuses after it, and the client mostly sees a bare EOF: reported, not explained.)
    tls = _tls(pki, client_ca=True)
    tls.maximum_version = ssl.TLSVersion.TLSv1_2
    with _serve(tls=tls) as (port, seen):
        endpoint = f"https://127.0.0.1:{port}/client/api"
        message = _fails(_api(endpoint, verify=pki["ca"], retry=0)[0])
        assert "client certificate" in message and "`cert`" in message, message
        api = _api(endpoint, verify=pki["ca"], cert=tuple(pki["client"]))[0]
        assert api.call("listZones") == {}
        assert seen == [("GET", None)]


def test_method_headers_and_timeout_are_honoured() -> None:
    with _serve() as (port, seen):
        api = _api(
            f"http://127.0.0.1:{port}/client/api",
            method="post",
            headers=(("X-Team", "blue"),),
            timeout_s=7.0,
            retry=2,
        )[0]
        assert api.call("listZones") == {}
        assert seen == [("POST", "blue")]
        assert api._timeout == 7.0 and api._max_attempts == 3
