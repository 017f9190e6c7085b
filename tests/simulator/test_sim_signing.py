"""Signature checks over real HTTP: GET, POST with parameters split between query and form
body, a wrong secret, signatureversion 3 with an expired `expires`.

Real: the simulator's HTTP server and verification. The expected HMAC is computed here
independently from CloudStack's documented algorithm (sorted names, Java URL encoding,
lower-cased, HMAC-SHA1, base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

from sim_apiclient import Api

from stackfleet.simulator import signing

AUTH_BODY = {
    "uuidList": [],
    "errorcode": 401,
    "errortext": "unable to verify user credentials and/or request signature",
}


def test_signature_matches_an_independent_computation() -> None:
    params = {"command": "listZones", "apiKey": "KEY", "name": "a b~c*", "response": "json"}
    # Java's URLEncoder: space -> + (-> %20), '~' encoded, '*' kept; names sorted case-sensitively.
    text = "apiKey=KEY&command=listZones&name=a%20b%7Ec*&response=json".lower()
    expected = base64.b64encode(hmac.new(b"s3cr3t", text.encode(), hashlib.sha1).digest())
    assert signing.sign(params, "s3cr3t") == expected.decode()


def test_good_get(api: Api) -> None:
    status, _ = api.raw("listZones", name="sim-gva-1")
    assert status == 200


def test_good_post_with_params_split_between_query_and_body(api: Api) -> None:
    status, body = api.raw(
        "createSecurityGroup",
        method="POST",
        body_keys=("name", "description", "signature"),
        name="split group",
        description="with spaces & symbols",
    )
    assert status == 200, body
    assert body["createsecuritygroupresponse"]["securitygroup"]["name"] == "split group"


def test_wrong_secret_is_401(api: Api) -> None:
    status, body = api.raw("listZones", secret="not-the-secret")
    assert status == 401
    assert body == {"listzonesresponse": AUTH_BODY}


def test_libcloud_style_lowercased_sort_still_matches_when_order_agrees(api: Api) -> None:
    status, _ = api.raw("listVirtualMachines", listall="true")
    assert status == 200


def test_signature_version_3_expired_is_401(api: Api) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    status, body = api.raw("listZones", signatureversion="3", expires=past)
    assert status == 401 and body == {"listzonesresponse": AUTH_BODY}
    future = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    status, _ = api.raw("listZones", signatureversion="3", expires=future)
    assert status == 200


def test_missing_signature_is_401(api: Api) -> None:
    query = urllib.parse.urlencode({"command": "listZones", "apiKey": api.key, "response": "json"})
    try:
        urllib.request.urlopen(api.endpoint + "?" + query, timeout=5)
    except urllib.error.HTTPError as err:
        assert err.code == 401
    else:
        raise AssertionError("unsigned request accepted")
