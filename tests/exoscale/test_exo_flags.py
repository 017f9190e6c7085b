"""Commands that read no spec reach exoscale with --provider (or STACKFLEET_PROVIDER):
`list`, `status --cluster`, `down --cluster` and the janitor `down --expired`.

Real: the stackfleet CLI in-process, the exoscale provider on the official `exoscale` client,
the embedded exoscale simulator over HTTP on loopback (SQLite state shared by the separate
invocations). Simulated: the cloud; its instances run nothing.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from sf_testkit import EXAMPLES, Workspace

FLAGS = ("--provider", "exoscale", "--profile", "simulator")


@pytest.fixture
def spec(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STACKFLEET_EXOSCALE_SIMULATOR_LATENCY", "0.02")
    for name in ("EXOSCALE_API_KEY", "EXOSCALE_API_SECRET", "EXOSCALE_API_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    path = ws.root / "exo.yaml"
    shutil.copy(EXAMPLES / "exoscale-quickstart.yaml", path)
    data = yaml.safe_load(path.read_text())
    data["roles"] = {"etcd": {"count": 1}, "control": {"count": 0}, "workers": {"count": 0}}
    path.write_text(yaml.safe_dump(data))
    up = ws.run("up", "-f", str(path), "--yes")
    assert up.exit_code == 0, up.stderr
    return str(path)


def test_list_status_and_down_find_the_cluster_with_provider_flags(
    ws: Workspace, spec: str
) -> None:
    listed = ws.run("list", *FLAGS, "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    assert [c["name"] for c in listed.json()] == ["exo-quickstart"]
    status = ws.run("status", "--cluster", "exo-quickstart", *FLAGS, "-o", "json")
    assert status.exit_code == 0, status.stderr
    assert [n["name"] for n in status.json()["nodes"]] == ["exo-quickstart-etcd-1"]
    # The same flags, but CloudStack's simulator: a different cloud, where it is not.
    elsewhere = ws.run("list", "--profile", "simulator", "-o", "json")
    assert elsewhere.exit_code == 0 and elsewhere.json() == []
    down = ws.run("down", "--cluster", "exo-quickstart", *FLAGS, "--yes", "-o", "json")
    assert down.exit_code == 0, down.stderr
    assert ws.run("list", *FLAGS, "-o", "json").json() == []


def test_the_provider_comes_from_the_environment_too(
    ws: Workspace, spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKFLEET_PROVIDER", "exoscale")
    listed = ws.run("list", "--profile", "simulator", "-o", "json")
    assert [c["name"] for c in listed.json()] == ["exo-quickstart"]


def test_a_provider_flag_that_contradicts_the_spec_is_refused_in_one_line(
    ws: Workspace, spec: str
) -> None:
    refused = ws.run("status", "-f", spec, "--provider", "cloudstack")
    assert refused.exit_code == 2
    assert refused.stderr.count("\n") == 1 and "cloud.provider: exoscale" in refused.stderr
