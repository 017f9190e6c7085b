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
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

import pytest
import vcr
import yaml
from sf_testkit import REPO, Workspace

CASSETTE = REPO / "tests" / "cassettes" / "up_status_down.yaml"
SECRET_PARAMS = ("apikey", "signature", "userdata", "publickey")
VOLATILE = {"apikey", "signature", "expires", "signatureversion", "userdata", "publickey"}
RECORD = os.environ.get("STACKFLEET_RECORD") == "1"


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


def recorder(mode: str) -> vcr.VCR:
    v = vcr.VCR(
        record_mode=mode,
        match_on=["method", "path", "same_call"],
        filter_query_parameters=list(SECRET_PARAMS),
        filter_post_data_parameters=list(SECRET_PARAMS),
        decode_compressed_response=True,
    )
    v.register_matcher("same_call", same_call)
    return v


@pytest.fixture
def cloud(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The zone to use; sets CLOUDSTACK_* for the CLI (a simulator, a real cloud, or nothing)."""
    # The lock's holder id (host:pid:time) comes back in recorded answers: pin it, so that
    # on replay the recorded lock is this run's own.
    monkeypatch.setattr(
        "stackfleet.provisioners.lock.holder_id", lambda: "cassette-recorder:1:1700000000"
    )
    # vcrpy is not thread-safe: requests sent at once from the job pool's threads are lost
    # from a recording. The recorded session sends one request at a time.
    monkeypatch.setattr("stackfleet.provisioners.operations.SUBMIT_THREADS", 1)
    if not RECORD:
        if not CASSETTE.exists():
            pytest.fail(f"{CASSETTE} missing: record it with STACKFLEET_RECORD=1")
        monkeypatch.setenv("CLOUDSTACK_ENDPOINT", "http://127.0.0.1:9/client/api")
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


def spec_file(ws: Workspace, zone: str) -> Path:
    data = {
        "name": "cassette",
        "cloud": {"zone": zone},
        "roles": {"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 1}},
        "access": {"ssh_cidrs": ["203.0.113.0/24"]},
    }
    path = ws.root / "cassette.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_up_status_down_replays_from_the_cassette(ws: Workspace, cloud: str) -> None:
    spec = spec_file(ws, cloud)
    if RECORD:
        CASSETTE.unlink(missing_ok=True)
    with recorder("all" if RECORD else "none").use_cassette(str(CASSETTE)):
        # --no-wait: the simulator's VMs run no etcd to ask (and no test may reach them).
        up = ws.run("up", "-f", str(spec), "--no-wait", "-o", "json")
        assert up.exit_code == 0, up.stderr
        status = ws.run("status", "-f", str(spec), "-o", "json").json()
        assert [(n["name"], n["state"]) for n in status["nodes"]] == [
            ("cassette-etcd-1", "Running"),
            ("cassette-control-1", "Running"),
            ("cassette-worker-1", "Running"),
        ]
        down = ws.run("down", "-f", str(spec), "--yes", "-o", "json")
        assert down.exit_code == 0, down.stderr
        assert down.json()[0]["machines"] == 3
        gone = ws.run("status", "-f", str(spec), "-o", "json").json()
        assert gone["exists"] is False


def test_cassette_holds_no_secret() -> None:
    text = CASSETTE.read_text()
    for needle in ("apikey=", "signature=", "userdata=", "PRIVATE KEY", "replay-secret"):
        assert needle not in text.lower() if needle.islower() else needle not in text
    data = yaml.safe_load(text)
    assert len(data["interactions"]) > 20
