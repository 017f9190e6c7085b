"""Re-runs against the simulator: hand-made rules survive, CAs never rotate, render and
kubeconfig use the cluster's real IPs and PKI.

Real: the CLI, the simulator over signed HTTP, the PKI files on disk. Simulated: the VMs.
"""

from __future__ import annotations

import hashlib
import stat

import yaml
from sf_testkit import Workspace

from stackfleet.simulator import Simulator, SimulatorConfig


def sim_api(ws: Workspace) -> tuple[Simulator, object]:
    """A second simulator process-view of the CLI's cloud: same state file."""
    sim = Simulator.start(SimulatorConfig(state_path=ws.home / "simulator" / "state.sqlite"))
    from stackfleet.provisioners.cloudstack.connection import CloudStackAPI
    from stackfleet.provisioners.cloudstack.credentials import Credentials

    return sim, CloudStackAPI(Credentials(sim.endpoint, sim.api_key, sim.secret, "test"))


def test_a_rule_added_by_hand_survives_and_a_dropped_cidr_is_revoked(ws: Workspace) -> None:
    spec = ws.spec("rules", roles={"etcd": {"count": 1}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    sim, api = sim_api(ws)
    try:
        job = api.call(  # type: ignore[attr-defined]
            "authorizeSecurityGroupIngress",
            {
                "securitygroupname": "rules-etcd",
                "protocol": "tcp",
                "startport": 9100,
                "endport": 9100,
                "cidrlist": "10.9.0.0/16",
            },
        )
        assert job["jobid"]
    finally:
        sim.stop()
    narrower = ws.spec("rules", roles={"etcd": {"count": 1}}, access={"ssh_cidrs": []})
    up = ws.run("up", "-f", str(narrower), "-o", "json")
    assert up.exit_code == 0, up.stderr
    # The ssh rule of each role's group (etcd, control, workers) goes; nothing else changes.
    assert [(a["verb"], a["kind"]) for a in up.json()["actions"]] == [("delete", "rule")] * 3
    sim, api = sim_api(ws)
    try:
        groups = api.list_all(  # type: ignore[attr-defined]
            "listSecurityGroups", "securitygroup", {"securitygroupname": "rules-etcd"}
        )
    finally:
        sim.stop()
    ports = {(r["startport"], r.get("cidr")) for r in groups[0]["ingressrule"]}
    assert (9100, "10.9.0.0/16") in ports  # the operator's rule
    assert (22, "203.0.113.0/24") not in ports  # ours, no longer wanted
    assert ws.run("up", "-f", str(narrower), "-o", "json").json()["changed"] is False


def test_growing_the_cluster_keeps_every_ca(ws: Workspace) -> None:
    spec = ws.spec("grow", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    pki = ws.home / "clusters" / "grow" / "pki"
    cas = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in pki.glob("*-ca.*")}
    assert set(cas) >= {"etcd-ca.crt", "etcd-ca.key", "kube-ca.crt", "kube-ca.key"}
    bigger = ws.spec(
        "grow", roles={"etcd": {"count": 1}, "control": {"count": 1}, "workers": {"count": 2}}
    )
    up = ws.run("up", "-f", str(bigger), "-o", "json")
    assert up.exit_code == 0, up.stderr
    machines = [a["name"] for a in up.json()["actions"] if a["kind"] == "machine"]
    assert machines == ["grow-worker-1", "grow-worker-2"]
    assert ("create", "group", "grow-worker") in {
        (a["verb"], a["kind"], a["name"]) for a in up.json()["actions"]
    }
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in pki.glob("*-ca.*")}
    assert after == cas
    for path in pki.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_render_from_cloud_and_kubeconfig(ws: Workspace) -> None:
    spec = ws.spec("kc", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    up = ws.run("up", "-f", str(spec), "-o", "json")
    control_ip = next(n["ip"] for n in up.json()["status"]["nodes"] if n["role"] == "control")
    doc = ws.run("render", "-f", str(spec), "--node", "kc-etcd-1", "--from-cloud")
    assert doc.exit_code == 0
    assert doc.stdout.startswith("#cloud-config") and "kc-etcd-1" in doc.stdout
    sizes = ws.run("render", "-f", str(spec), "-o", "json").json()
    assert {s["node"] for s in sizes} == {"kc-etcd-1", "kc-control-1"}
    assert all(0 < s["base64"] < s["limit"] for s in sizes)
    out = ws.root / "admin.kubeconfig"
    result = ws.run("kubeconfig", "-f", str(spec), "--out", str(out))
    assert result.exit_code == 0 and result.stdout.strip() == str(out)
    config = yaml.safe_load(out.read_text())
    assert config["clusters"][0]["cluster"]["server"] == f"https://{control_ip}:6443"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
