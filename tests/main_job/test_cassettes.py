"""A full up/status/down replayed from a vcrpy cassette, with no server at all.

Recorded against the embedded simulator (or, with the env vars below, a real CloudStack);
replayed through the real CLI, engine, connection layer and libcloud's HTTP stack, with
vcrpy answering instead of the network. Requests are matched by command and parameters,
ignoring what changes between runs (signature, expiry, key, userdata, lock and expiry tag
values). The cassette holds no apikey, signature, secret or userdata: a test checks it.

Re-record against the simulator:  STACKFLEET_RECORD=1 pytest tests/main_job/test_cassettes.py
Re-record against a real cloud:   the same, with CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY,
CLOUDSTACK_SECRET and STACKFLEET_RECORD_ZONE set (it creates and deletes a small cluster).
"""

from __future__ import annotations

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

CASSETTE = REPO / "tests" / "cassettes" / "up_status_down.yaml"
SECRET_PARAMS = ("apikey", "signature", "userdata", "publickey")
VOLATILE = {"apikey", "signature", "expires", "signatureversion", "userdata", "publickey"}


def _params(request: Any) -> dict[str, str]:
    params = dict(parse_qsl(urlparse(request.uri).query))
    body = request.body
    if body:
        text = body.decode() if isinstance(body, bytes) else str(body)
        params.update(parse_qsl(text))
    return params


def _comparable(request: Any) -> dict[str, str]:
    params = {k.lower(): v for k, v in _params(request).items()}
    # Tag values of the lock and the expiry hold a pid and a time; the CA tags, fingerprints
    # of CAs made afresh on each run.
    for key, value in list(params.items()):
        if key.endswith(".value") and params.get(key[: -len("value")] + "key", "").endswith(
            (":lock", ":expires", ":ca-etcd", ":ca-kube", ":ca-front-proxy")
        ):
            params[key] = "<volatile>"
        del value
    return {k: v for k, v in params.items() if k not in VOLATILE}


def same_call(a: Any, b: Any) -> None:
    assert _comparable(a) == _comparable(b)


def cloudstack_recorder() -> vcr.VCR:
    return recorder(
        ["method", "path"],
        same_call,
        filter_query_parameters=list(SECRET_PARAMS),
        filter_post_data_parameters=list(SECRET_PARAMS),
    )


@pytest.fixture
def cloud(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The zone to use; sets CLOUDSTACK_* for the CLI (a simulator, a real cloud, or nothing)."""
    pin_for_cassette(monkeypatch)
    if not RECORD:
        require_cassette(CASSETTE)
        monkeypatch.setenv("CLOUDSTACK_ENDPOINT", f"http://127.0.0.1:{REPLAY_PORT}/client/api")
        monkeypatch.setenv("CLOUDSTACK_KEY", "replay-key")
        monkeypatch.setenv("CLOUDSTACK_SECRET", "replay-secret")
        yield "sim-zrh-1"
        return
    if os.environ.get("CLOUDSTACK_ENDPOINT"):
        yield os.environ["STACKFLEET_RECORD_ZONE"]
        return
    from stackfleet.simulator import Simulator, SimulatorConfig

    with Simulator.start(SimulatorConfig()) as sim:
        monkeypatch.setenv("CLOUDSTACK_ENDPOINT", sim.endpoint)
        monkeypatch.setenv("CLOUDSTACK_KEY", sim.api_key)
        monkeypatch.setenv("CLOUDSTACK_SECRET", sim.secret)
        yield "sim-zrh-1"


def test_up_status_down_replays_from_the_cassette(ws: Workspace, cloud: str) -> None:
    spec = cassette_spec(ws, {"zone": cloud}, {})
    up_status_down(ws, spec, cloudstack_recorder(), CASSETTE)


def test_cassette_holds_no_secret() -> None:
    text = CASSETTE.read_text()
    for needle in ("apikey=", "signature=", "userdata=", "PRIVATE KEY", "replay-secret"):
        assert needle not in text.lower() if needle.islower() else needle not in text
    data = yaml.safe_load(text)
    assert len(data["interactions"]) > 20
