"""The simulator checks EXO2-HMAC-SHA256 signatures as the API's spec describes them.

Real: the official signer (requests-exoscale-auth's ExoscaleV2Auth, which the `exoscale` client
uses) and `requests` over loopback; a request is signed by it and then altered, as an attacker on
the path would. Simulated: the cloud behind the endpoint.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from exoscale.api.exceptions import ExoscaleAPIAuthException
from exoscale.api.v2 import Client
from exoscale_auth import ExoscaleV2Auth

from stackfleet.simulator.exoscale import ExoscaleSimulator


def _send(prepared: requests.PreparedRequest) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False  # loopback only: no proxy from the environment
        return session.send(prepared, timeout=10)


def _signed(
    sim: ExoscaleSimulator, body: str, expires: int | None = None
) -> requests.PreparedRequest:
    prepared = requests.Request(
        "POST",
        f"{sim.endpoint}/security-group",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    ).prepare()
    auth = ExoscaleV2Auth(sim.api_key, sim.secret)
    if expires is None:
        auth(prepared)
    else:
        auth._sign_request(prepared, expires)  # the signer's own code, with a chosen expiry
    return prepared


def _refused(response: requests.Response, why: str) -> None:
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/json"
    assert why in response.json()["message"]


def test_wrong_secret_or_key_is_403(sim: ExoscaleSimulator) -> None:
    for key, secret, why in (
        (sim.api_key, "not-the-secret", "invalid request signature"),
        ("EXO000000000000000000000000", sim.secret, "invalid API key"),
    ):
        with pytest.raises(ExoscaleAPIAuthException) as refused:
            Client(key, secret, url=sim.endpoint).list_instances()
        _refused(refused.value.response, why)


def test_tampered_body_is_403_and_changes_nothing(sim: ExoscaleSimulator) -> None:
    prepared = _signed(sim, '{"name": "demo"}')
    prepared.body = b'{"name": "evil"}'
    _refused(_send(prepared), "invalid request signature")
    client = Client(sim.api_key, sim.secret, url=sim.endpoint)
    assert client.list_security_groups()["security-groups"] == []
    # The same request, untampered, is accepted.
    assert _send(_signed(sim, '{"name": "demo"}')).status_code == 200


def test_expired_request_is_refused(sim: ExoscaleSimulator) -> None:
    _refused(_send(_signed(sim, '{"name": "demo"}', int(time.time()) - 5)), "expired")


def test_unsigned_query_parameter_is_refused(sim: ExoscaleSimulator) -> None:
    prepared = requests.Request("GET", f"{sim.endpoint}/instance").prepare()
    ExoscaleV2Auth(sim.api_key, sim.secret)(prepared)
    prepared.prepare_url(f"{sim.endpoint}/instance", {"labels": "role=etcd"})
    _refused(_send(prepared), "not signed: labels")


def test_list_zones_needs_no_credentials(sim: ExoscaleSimulator) -> None:
    """The official client sends list-zones unsigned, as the real API allows."""
    zones: list[dict[str, Any]] = Client("", "", url=sim.endpoint).list_zones()["zones"]
    assert "ch-gva-2" in {z["name"] for z in zones}
    assert _send(requests.Request("GET", f"{sim.endpoint}/instance").prepare()).status_code == 403
