"""Requests signed by two real clients' own, unmodified signing code are accepted, and the
same requests tampered with are refused: the simulator's check (simulator/signing.py, written
from CloudStack's ApiServer rules) is not merely agreeing with stackfleet's client.

Real: libcloud's CloudStackConnection signing, the `cs` library's CloudStack client (its
signing, signatureVersion 3 with `expires`, GET and POST), the simulator's HTTP server.
"""

from __future__ import annotations

import ast
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackfleet.simulator import Simulator, SimulatorConfig, signing


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator.start(SimulatorConfig(latency={"default": 0.0})) as running:
        yield running


def _get(endpoint: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    url = endpoint + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_server_signing_shares_nothing_with_the_client_signing() -> None:
    source = (Path(signing.__file__)).read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any("provisioners" in m or "stackfleet" in m for m in imported), imported


def test_libcloud_signed_requests(sim: Simulator) -> None:
    from libcloud.compute.providers import Provider, get_driver

    driver: Any = get_driver(Provider.CLOUDSTACK)(
        sim.api_key, sim.secret, url=sim.endpoint, secure=False
    )
    conn = driver.connection

    def signed(**params: str) -> dict[str, str]:
        params = conn.add_default_params(dict(params))
        params, _ = conn.pre_connect_hook(params, {})
        sig = params["signature"]
        params["signature"] = sig.decode() if isinstance(sig, bytes) else sig
        return params

    status, body = _get(sim.endpoint, signed(command="listZones", name="sim-gva-1"))
    assert status == 200, body
    assert body["listzonesresponse"]["zone"][0]["name"] == "sim-gva-1"
    params = signed(command="createSecurityGroup", name="lc", description="a b*c, (d)")
    assert _get(sim.endpoint, params)[0] == 200
    tampered = {**params, "description": "changed"}
    status, body = _get(sim.endpoint, tampered)
    assert status == 401, body


def test_cs_signed_requests_get_and_post(sim: Simulator) -> None:
    from cs import CloudStack, CloudStackApiException

    for method in ("get", "post"):
        client = CloudStack(
            endpoint=sim.endpoint, key=sim.api_key, secret=sim.secret, method=method
        )
        zones = client.listZones(fetch_list=True)
        assert {z["name"] for z in zones} == {"sim-gva-1", "sim-zrh-1"}
        group = client.createSecurityGroup(name=f"cs-{method}", description="x y*z (1)")
        assert group["securitygroup"]["name"] == f"cs-{method}"
        assert client.deleteSecurityGroup(name=f"cs-{method}")["success"] is True
    wrong = CloudStack(endpoint=sim.endpoint, key=sim.api_key, secret="not-the-secret")
    with pytest.raises(CloudStackApiException) as refused:
        wrong.listZones()
    assert refused.value.response.status_code == 401


def test_cs_signature_string_equals_the_servers_for_plain_values(sim: Simulator) -> None:
    from cs import CloudStack

    params = {
        "command": "listVirtualMachines",
        "apiKey": "KEY",
        "response": "json",
        "keyword": "web server*1",
        "tags[0].key": "role",
        "signatureVersion": "3",
        "expires": "2030-01-01T00:00:00+0000",
    }
    client = CloudStack(endpoint=sim.endpoint, key="KEY", secret="s3cr3t")
    theirs = dict(params)
    client._sign(theirs)
    assert theirs["signature"] == signing.sign(params, "s3cr3t")
