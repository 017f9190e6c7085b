"""`stackfleet simulator serve --api exoscale` and the embedded mode keep one cloud per state.

Real: the stackfleet CLI as a separate OS process, the official `exoscale` client pointed at it
with `url=` (the endpoint the CLI prints), SQLite state shared by processes, HTTP on loopback.
Simulated: the cloud.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from exoscale.api.v2 import Client
from sf_serve import SERVE, serve

from stackfleet.simulator.exoscale import embedded

EXOSCALE = ("--api", "exoscale")


def test_serve_prints_what_the_official_client_needs(tmp_path: Path) -> None:
    state = tmp_path / "exoscale.sqlite"
    with serve(state, *EXOSCALE, latency="0.05") as env:
        assert set(env) == {"EXOSCALE_API_ENDPOINT", "EXOSCALE_API_KEY", "EXOSCALE_API_SECRET"}
        assert env["EXOSCALE_API_ENDPOINT"].startswith("http://127.0.0.1:")
        client = Client(
            env["EXOSCALE_API_KEY"], env["EXOSCALE_API_SECRET"], url=env["EXOSCALE_API_ENDPOINT"]
        )
        families = {t["family"] for t in client.list_templates()["templates"]}
        assert families == {"flatcar", "ubuntu"}
        client.create_security_group(name="kept")
    assert oct(state.stat().st_mode & 0o777) == "0o600"  # it holds the API secret
    # A restart on the same file: same keys, same cloud.
    with serve(state, *EXOSCALE, latency="0.05") as again:
        assert again["EXOSCALE_API_KEY"] == env["EXOSCALE_API_KEY"]
        client = Client(
            again["EXOSCALE_API_KEY"],
            again["EXOSCALE_API_SECRET"],
            url=again["EXOSCALE_API_ENDPOINT"],
        )
        assert [g["name"] for g in client.list_security_groups()["security-groups"]] == ["kept"]


def test_serve_refuses_cloudstack_only_options(tmp_path: Path) -> None:
    done = subprocess.run(
        [*SERVE, *EXOSCALE, "--port", "0", "--faults", "http5xx=0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--faults is for --api cloudstack" in done.stderr
    assert "Traceback" not in done.stderr


def test_embedded_invocations_share_one_cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STACKFLEET_SIMULATOR_STATE_DIR", raising=False)
    with embedded(operation_latency=60) as first:
        client = Client(first.api_key, first.secret, url=first.url)
        op = client.create_security_group(name="demo")
    with embedded(operation_latency=60) as second:
        assert (second.api_key, second.zone) == (first.api_key, "ch-gva-2")
        assert second.url.startswith("http://127.0.0.1:")
        client = Client(second.api_key, second.secret, url=second.url)
        # Another process's operation is still pending (60 s), and its group is there.
        assert client.get_operation(id=op["id"])["state"] == "pending"
        assert [g["name"] for g in client.list_security_groups()["security-groups"]] == ["demo"]
    log = tmp_path / "home" / "simulator" / "exoscale-requests.jsonl"
    assert "Authorization" not in log.read_text() and first.secret not in log.read_text()


def test_detached_exoscale_server_and_env(tmp_path: Path) -> None:
    env = {**os.environ, "STACKFLEET_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stackfleet", "simulator", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    started = cli("serve", "--api", "exoscale", "--port", "0", "--detach")
    try:
        assert started.returncode == 0, started.stderr
        assert "/v2" in started.stdout and "SECRET" not in started.stdout
        exported = dict(
            line.removeprefix("export ").split("=", 1) for line in cli("env").stdout.splitlines()
        )
        assert set(exported) == {"EXOSCALE_API_ENDPOINT", "EXOSCALE_API_KEY", "EXOSCALE_API_SECRET"}
        client = Client(
            exported["EXOSCALE_API_KEY"],
            exported["EXOSCALE_API_SECRET"],
            url=exported["EXOSCALE_API_ENDPOINT"],
        )
        assert len(client.list_instance_types()["instance-types"]) == 7
    finally:
        assert cli("stop").returncode == 0
