"""A full exoscale up/status/down replayed from a vcrpy cassette, with no server at all.

Recorded against the exoscale simulator (or, with the variables below, exoscale itself);
replayed through the real CLI, engine, exoscale provider, the official `exoscale` client and
`requests`' HTTP stack, with vcrpy answering instead of the network. Requests match by method,
path, query and JSON body, ignoring what changes between runs (the signature header, user-data,
public keys, the lock holder, CA fingerprints). The cassette holds no Authorization header,
user-data or public key: a test checks it.

Re-record against the simulator:
    STACKFLEET_RECORD=1 pytest tests/exoscale/test_exo_provider_cassette.py
Re-record against exoscale: the same, with EXOSCALE_API_KEY, EXOSCALE_API_SECRET and
STACKFLEET_RECORD_ZONE set, EXOSCALE_API_ENDPOINT unset (it creates and deletes a small cluster
in that zone).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlparse

import pytest
import vcr
import yaml
from sf_cassette import (
    RECORD,
    REPLAY_PORT,
    cassette_spec,
    pin_for_cassette,
    recorder,
    require_cassette,
    up_status_down,
)
from sf_testkit import REPO, Workspace

CASSETTE = REPO / "tests" / "cassettes" / "exoscale_up_status_down.yaml"
# Request fields that hold secrets or differ on every run.
SECRET_FIELDS = ("user-data", "public-key")
VOLATILE_LABELS = ("stackfleet-ca-etcd", "stackfleet-ca-kube", "stackfleet-ca-front-proxy")


def _body(request: Any) -> Any:
    raw = request.body
    if not raw:
        return None
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        return raw


def _comparable(request: Any) -> tuple[str, list[tuple[str, str]], Any]:
    body = _body(request)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in SECRET_FIELDS}
        if isinstance(body.get("labels"), dict):
            body["labels"] = {
                k: "<volatile>" if k in VOLATILE_LABELS else v for k, v in body["labels"].items()
            }
    url = urlparse(request.uri)
    return url.path, sorted(parse_qsl(url.query)), body


def same_call(a: Any, b: Any) -> None:
    assert _comparable(a) == _comparable(b)


def _scrub(request: Any) -> Any:
    """Before a request is written: no secret (user-data holds node keys) in the cassette."""
    body = _body(request)
    if isinstance(body, dict) and any(k in body for k in SECRET_FIELDS):
        request.body = json.dumps(
            {k: f"<{len(str(v))} chars>" if k in SECRET_FIELDS else v for k, v in body.items()}
        ).encode()
    return request


def exoscale_recorder() -> vcr.VCR:
    return recorder(
        ["method"], same_call, filter_headers=["Authorization"], before_record_request=_scrub
    )


@pytest.fixture
def cloud(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The zone to use; sets EXOSCALE_API_* for the CLI (a simulator, exoscale, or nothing)."""
    pin_for_cassette(monkeypatch)
    # vcrpy is not thread-safe: one request at a time (the pools keep one thread).
    monkeypatch.setattr("stackfleet.provisioners.exoscale.operations.POLL_THREADS", 1)
    monkeypatch.setattr(
        "stackfleet.provisioners.exoscale.provisioner.ExoscaleProvisioner._each",
        lambda self, fn, items: [fn(i) for i in items],
    )
    # The replay makes its own CAs, so the record's labels differ from the recording's:
    # its changes are waited for as operations, which replay the same.
    monkeypatch.setattr("stackfleet.provisioners.exoscale.provisioner.RECORD_BY_EFFECT", False)
    monkeypatch.delenv("EXOSCALE_CONFIG", raising=False)
    if not RECORD:
        require_cassette(CASSETTE)
        monkeypatch.setenv("EXOSCALE_API_ENDPOINT", f"http://127.0.0.1:{REPLAY_PORT}/v2")
        monkeypatch.setenv("EXOSCALE_API_KEY", "EXOreplay")
        monkeypatch.setenv("EXOSCALE_API_SECRET", "replay-secret")
        yield "ch-gva-2"
        return
    if os.environ.get("EXOSCALE_API_KEY") and not os.environ.get("EXOSCALE_API_ENDPOINT"):
        yield os.environ["STACKFLEET_RECORD_ZONE"]
        return
    from stackfleet.simulator.exoscale import ExoscaleConfig, ExoscaleSimulator

    with ExoscaleSimulator.start(ExoscaleConfig(operation_latency=0.05)) as sim:
        monkeypatch.setenv("EXOSCALE_API_ENDPOINT", sim.endpoint)
        monkeypatch.setenv("EXOSCALE_API_KEY", sim.api_key)
        monkeypatch.setenv("EXOSCALE_API_SECRET", sim.secret)
        yield sim.zone


def test_up_status_down_replays_from_the_cassette(ws: Workspace, cloud: str) -> None:
    spec = cassette_spec(
        ws, {"provider": "exoscale", "zone": cloud}, {"offering": "standard.small"}
    )
    up_status_down(ws, spec, exoscale_recorder(), CASSETTE)


def test_cassette_holds_no_secret() -> None:
    text = CASSETTE.read_text()
    assert "authorization" not in text.lower()
    assert "EXO2-HMAC-SHA256" not in text and "replay-secret" not in text
    assert "PRIVATE KEY" not in text and "ssh-ed25519 AAAA" not in text
    data = yaml.safe_load(text)
    bodies = [i["request"]["body"] or "" for i in data["interactions"]]
    assert all('"user-data": "<' in b for b in bodies if "user-data" in b)
    assert len(data["interactions"]) > 40
