"""`status` shows when each certificate of the local PKI expires and warns inside 30 days;
`renew` refuses to roll out to simulated VMs, in one line, and changes nothing.

Real: the CLI, the simulator over signed HTTP, the PKI files on disk (certificates read
back with `cryptography`). Simulated: the VMs (they run nothing: nothing to roll out to).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sf_testkit import Workspace, mutating

from stackfleet import pki
from stackfleet.cloudconfig_templates.model import NodeInfo


def test_status_lists_every_certificate_and_warns_inside_30_days(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ws.spec("ce", roles={"etcd": {"count": 3}, "control": {"count": 1}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    folder = ws.home / "clusters" / "ce" / "pki"
    quiet = ws.run("status", "-f", str(spec), "-o", "json")
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr
    certs = quiet.json()["certificates"]
    assert certs["present"] is True and certs["pki"] == str(folder)
    names = {(c["name"], c["node"]) for c in certs["items"]}
    assert {("etcd-ca", None), ("kube-ca", None), ("front-proxy-ca", None)} <= names
    assert {(f"etcd-member-ce-etcd-{i}", f"ce-etcd-{i}") for i in (1, 2, 3)} <= names
    assert ("etcd-client-flannel", None) in names
    assert all(c["days_left"] > 800 for c in certs["items"])

    # etcd-2's certificate reissued (same CA) to expire in 12 days.
    monkeypatch.setattr(pki, "LEAF_DAYS", 12)
    stem = "etcd-member-ce-etcd-2"
    pki.put_leaf(folder, stem, pki.reissue(folder, stem))
    shown = ws.run("status", "-f", str(spec))
    assert shown.exit_code == 0
    warnings = [line for line in shown.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, shown.stderr
    assert warnings[0].startswith("warning: ce-etcd-2's etcd server+peer certificate expires in ")
    assert warnings[0].endswith(": run `stackfleet renew`")
    assert "ce-etcd-2" in shown.stdout and "certificates in" in shown.stdout
    data = ws.run("status", "-f", str(spec), "-o", "json").json()["certificates"]
    item = next(c for c in data["items"] if c["name"] == stem)
    assert item["days_left"] in (11, 12) and data["warnings"] == warnings

    # renew on the simulator: refused in one line, nothing reissued, nothing sent.
    before = len(ws.requests())
    cert = (folder / f"{stem}.crt").read_text()
    renew = ws.run("renew", "-f", str(spec), "--within", "30", "--yes")
    assert renew.exit_code == 1 and renew.stderr.count("\n") == 1
    assert renew.stderr.startswith("error: renew: ce-etcd-2 are simulated VMs")
    assert (folder / f"{stem}.crt").read_text() == cert
    assert mutating(ws.requests()[before:]) == []
    # Nothing due within 5 days: nothing to do, and said so.
    idle = ws.run("renew", "-f", str(spec), "--within", "5")
    assert idle.exit_code == 0 and "no certificate to renew" in idle.stderr
    unknown = ws.run("renew", "-f", str(spec), "--node", "ce-etcd-9")
    assert unknown.exit_code == 2 and "--node ce-etcd-9: no such node" in unknown.stderr


def test_status_without_local_pki_still_works(ws: Workspace) -> None:
    spec = ws.spec("np", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    import shutil

    shutil.rmtree(ws.home / "clusters" / "np")
    status = ws.run("status", "--cluster", "np", "--profile", "simulator", "-o", "json")
    assert status.exit_code == 0, status.stderr
    assert status.json()["certificates"]["present"] is False


def test_up_never_reissues_a_running_nodes_certificate_for_its_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member certificate near expiry stays as it is across load_or_create (what `up`
    runs): the node serves that very certificate, so only `renew` (which rolls it out)
    may replace it. Real: the PKI code and cryptography's certificates."""
    nodes = [NodeInfo("c-etcd-1", "etcd", "10.0.0.5")]
    first = pki.load_or_create(tmp_path, "c", nodes)
    monkeypatch.setattr(pki, "LEAF_DAYS", 5)
    soon = pki.reissue(tmp_path, "etcd-member-c-etcd-1")
    pki.put_leaf(tmp_path, "etcd-member-c-etcd-1", soon)
    monkeypatch.undo()
    again = pki.load_or_create(tmp_path, "c", nodes)
    assert again.etcd_members["c-etcd-1"].cert_pem == soon.cert_pem
    assert again.etcd_members["c-etcd-1"].cert_pem != first.etcd_members["c-etcd-1"].cert_pem
