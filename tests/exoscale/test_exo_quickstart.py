"""examples/exoscale-quickstart.yaml (3 etcd + 1 control + 2 workers) comes up, shows in
`status`, and goes down, on the exoscale simulator; `status` and `down` also work from another
home with no local state (the cloud's labels and names are enough). Every request and answer
validates against the OpenAPI schemas.

Real: the stackfleet CLI (click's runner, in-process), the exoscale provider on PyPI's official
`exoscale` client (its EXO2-HMAC-SHA256 signer, its generated calls), the embedded exoscale
simulator over HTTP on loopback with SQLite state shared by the separate invocations, the
OpenAPI spec the client ships (the simulator validates every request and answer against it and
logs the verdicts, which this test reads). The same official client, unmodified, inspects the
cloud between the commands. Simulated: the cloud (instances run nothing; their addresses come
from documentation ranges nobody dials).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from exoscale.api.v2 import Client
from sf_testkit import EXAMPLES, Workspace

from stackfleet.simulator.exoscale import ExoscaleConfig, ExoscaleSimulator
from stackfleet.simulator.exoscale.requestlog import read

CLUSTER = "exo-quickstart"


@pytest.fixture
def shared(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One simulated exoscale for every home in the test; quick operations."""
    cloud = tmp_path / "cloud"
    monkeypatch.setenv("STACKFLEET_SIMULATOR_STATE_DIR", str(cloud))
    monkeypatch.setenv("STACKFLEET_EXOSCALE_SIMULATOR_LATENCY", "0.05")
    for name in ("EXOSCALE_API_KEY", "EXOSCALE_API_SECRET", "EXOSCALE_API_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return cloud


@contextmanager
def _official_client(cloud: Path) -> Iterator[Any]:
    """The cloud as the official client sees it, between two CLI commands."""
    with ExoscaleSimulator.start(ExoscaleConfig(state_path=cloud / "exoscale.sqlite")) as sim:
        yield Client(sim.api_key, sim.secret, url=sim.endpoint)


def test_quickstart_up_status_down(
    ws: Workspace, shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ws.root / "exoscale-quickstart.yaml"
    shutil.copy(EXAMPLES / "exoscale-quickstart.yaml", spec)

    up = ws.run("up", "-f", str(spec), "--yes", "-o", "json")
    assert up.exit_code == 0, up.stderr
    status = ws.run("status", "-f", str(spec), "-o", "json")
    assert status.exit_code == 0, status.stderr
    nodes = status.json()["nodes"]
    assert [n["name"] for n in nodes] == [
        f"{CLUSTER}-etcd-1",
        f"{CLUSTER}-etcd-2",
        f"{CLUSTER}-etcd-3",
        f"{CLUSTER}-control-1",
        f"{CLUSTER}-worker-1",
        f"{CLUSTER}-worker-2",
    ]
    assert all(n["state"] == "Running" and n["bootstrapped"] for n in nodes)
    # Public IPv4s from the simulator's documentation ranges, one per instance.
    assert len({n["ip"] for n in nodes}) == 6
    assert all(n["ip"].startswith(("198.51.100.", "203.0.113.")) for n in nodes)
    assert status.json()["expires"]  # the cluster's tags live on as instance labels
    assert ws.run("plan", "-f", str(spec), "--detailed-exitcode").exit_code == 0

    with _official_client(shared) as client:
        etcd = client.list_instances(labels=f"stackfleet-cluster={CLUSTER} stackfleet-role=etcd")
        assert sorted(i["name"] for i in etcd["instances"]) == [
            f"{CLUSTER}-etcd-{i}" for i in (1, 2, 3)
        ]
        one = client.get_instance(id=etcd["instances"][0]["id"])
        assert one["labels"]["stackfleet-bootstrap"] == "done"
        assert one["template"]["name"] == "Linux Flatcar Container Linux Stable 64-bit"
        assert one["instance-type"]["size"] == "medium"
        assert one["user-data"]  # the final cloud-config, base64
        groups = {g["name"]: g for g in client.list_security_groups()["security-groups"]}
        assert set(groups) == {f"{CLUSTER}-etcd", f"{CLUSTER}-control", f"{CLUSTER}-worker"}
        peer = [r for r in groups[f"{CLUSTER}-etcd"]["rules"] if r.get("start-port") == 2380]
        assert [r["security-group"]["name"] for r in peer] == [f"{CLUSTER}-etcd"]
        spread = client.list_anti_affinity_groups()["anti-affinity-groups"]
        assert [len(g["instances"]) for g in spread] == [3]
        assert [k["name"] for k in client.list_ssh_keys()["ssh-keys"]] == [f"{CLUSTER}-key"]
        # The cluster's own tags: the labels of its record (a private network).
        (kept,) = client.list_private_networks()["private-networks"]
        assert kept["name"] == f"{CLUSTER}-record"
        assert kept["labels"]["stackfleet-os"] == "flatcar"
        assert len(kept["labels"]["stackfleet-ca-etcd"]) == 64  # sha256 of the etcd CA
        assert kept["labels"]["stackfleet-expires"] == status.json()["expires"]

    # From another machine: a fresh home, no local state, the same account.
    monkeypatch.setenv("STACKFLEET_HOME", str(tmp_path / "elsewhere"))
    remote = ws.run("status", "-f", str(spec), "-o", "json")
    assert remote.exit_code == 0, remote.stderr
    assert [n["name"] for n in remote.json()["nodes"]] == [n["name"] for n in nodes]
    down = ws.run("down", "-f", str(spec), "--yes", "-o", "json")
    assert down.exit_code == 0, down.stderr
    assert down.json() == [
        {
            "cluster": CLUSTER,
            "machines": 6,
            "groups": 3,
            "rules": 18,
            "keys": 1,
            "spread_groups": 1,
        }
    ]
    after = ws.run("status", "-f", str(spec), "-o", "json").json()
    assert after["exists"] is False and after["nodes"] == []

    with _official_client(shared) as client:
        assert client.list_instances()["instances"] == []
        assert client.list_security_groups()["security-groups"] == []
        assert client.list_anti_affinity_groups()["anti-affinity-groups"] == []
        assert client.list_ssh_keys()["ssh-keys"] == []
        assert client.list_private_networks()["private-networks"] == []

    log = read(shared / "exoscale-requests.jsonl")
    assert len(log) > 100
    assert {e["status"] for e in log} == {200}, [e for e in log if e["status"] != 200][:3]
    invalid = [e for e in log if e["request_schema"] != "ok" or e["response_schema"] != "ok"]
    assert invalid == []
