"""After the local state is lost, `up` refuses without changing anything in the cloud.

A new CI runner or a new laptop has no $STACKFLEET_HOME/clusters/<name>. `up` must not make
a new CA set, a new bootstrap token or a new key pair for a running cluster: it refuses in
one line that says where the PKI lives and how to bring it, and `plan` refuses the same
way. Copying the folder back (as the line says) is all it takes to carry on.

Real: the CLI, the simulator over signed HTTP, its JSONL request log, the PKI files on
disk. Simulated: the VMs.
"""

from __future__ import annotations

import shutil

from sf_testkit import Workspace, mutating


def test_up_refuses_without_the_local_state_and_changes_nothing(ws: Workspace) -> None:
    spec = ws.spec("lost")
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    folder = ws.home / "clusters" / "lost"
    saved = ws.root / "saved-state"
    shutil.copytree(folder, saved)
    shutil.rmtree(folder)

    before = len(ws.requests())
    bigger = ws.spec("lost", roles={"workers": {"count": 4}})
    up = ws.run("up", "-f", str(bigger), "--yes")
    plan = ws.run("plan", "-f", str(bigger))
    for result in (up, plan):
        assert result.exit_code == 2, result.stdout
        assert result.stderr.count("\n") == 1, result.stderr  # one line
    line = up.stderr.strip()
    assert plan.stderr.strip() == line
    assert line.startswith("error: cluster lost runs with CAs recorded on the cloud")
    assert f"{folder / 'pki'} holds no PKI" in line
    assert "stackfleet state pull" in line and f"copy {folder} from the machine" in line
    # Nothing was sent that changes the cloud: no machine, no key pair, no tag.
    assert ws.requests()[before:], "the runs read the cloud"
    assert mutating(ws.requests()[before:]) == []
    # ...and no new CA was made here either.
    assert not list(folder.glob("pki/*-ca.*"))

    # Brought back as the line says: `up` carries on with the same CAs.
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(saved, folder)
    ca = (folder / "pki" / "kube-ca.crt").read_text()
    grown = ws.run("up", "-f", str(bigger), "--yes", "-o", "json")
    assert grown.exit_code == 0, grown.stderr
    names = [n["name"] for n in grown.json()["status"]["nodes"]]
    assert "lost-worker-4" in names
    assert (folder / "pki" / "kube-ca.crt").read_text() == ca
    assert "registerSSHKeyPair" not in mutating(ws.requests()[before:])


def test_plan_and_up_refuse_a_foreign_pki_the_same_way(ws: Workspace) -> None:
    spec = ws.spec("other", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    assert ws.run("up", "-f", str(spec)).exit_code == 0
    pki = ws.home / "clusters" / "other" / "pki"
    from stackfleet.pki import new_ca

    foreign = new_ca("other-etcd-ca")
    (pki / "etcd-ca.crt").write_text(foreign.cert_pem)
    (pki / "etcd-ca.key").write_text(foreign.key_pem)
    before = len(ws.requests())
    plan = ws.run("plan", "-f", str(spec))
    up = ws.run("up", "-f", str(spec), "--yes")
    assert plan.exit_code == up.exit_code == 2
    assert plan.stderr == up.stderr
    assert "the CAs in" in plan.stderr and "differ from those recorded on the cloud" in plan.stderr
    assert "stackfleet:ca-etcd" in plan.stderr
    assert mutating(ws.requests()[before:]) == []
    assert (pki / "etcd-ca.crt").read_text() == foreign.cert_pem  # never "repaired"
