"""`stackfleet ssh` and the ssh strategy's upload, against a real sshd with a pinned key.

Real: OpenSSH's sshd (Debian's openssh-server) in a network namespace this test makes,
listening at the IP the simulator gave the node, with the host key stackfleet generated
for that node; paramiko on our side; SFTP. Simulated: the VM itself (the namespace shares
this machine's filesystem, so the test logs in as root and only writes under /tmp).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sf_testkit import Workspace

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server not installed"),
]


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


class Node:
    """A namespace at `ip` with sshd serving `host_key`."""

    def __init__(self, ip: str, gateway: str, host_key: Path, authorized: Path) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns, self.host_if, self.ns_if = f"sf-ssh-{tag}", f"sfh{tag}", f"sfn{tag}"
        self.ip = ip
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.ns)
        sh("ip", "addr", "add", f"{gateway}/32", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        sh("ip", "route", "add", f"{ip}/32", "dev", self.host_if)
        sh("ip", "-n", self.ns, "addr", "add", f"{ip}/32", "dev", self.ns_if)
        sh("ip", "-n", self.ns, "link", "set", self.ns_if, "up")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns, "route", "add", f"{gateway}/32", "dev", self.ns_if)
        sh("ip", "-n", self.ns, "route", "add", "default", "via", gateway)
        self.sshd: subprocess.Popen[bytes] | None = None
        self.serve(host_key, authorized)

    def serve(self, host_key: Path, authorized: Path) -> None:
        self.stop_sshd()
        Path("/run/sshd").mkdir(exist_ok=True)
        opts = {
            "ListenAddress": self.ip,
            "HostKey": str(host_key),
            "AuthorizedKeysFile": str(authorized),
            "PermitRootLogin": "prohibit-password",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "UsePAM": "no",
            "StrictModes": "no",
            "PidFile": "none",
            "Subsystem": "sftp internal-sftp",
        }
        args = ["ip", "netns", "exec", self.ns, SSHD, "-D", "-e", "-f", "/dev/null"]
        for k, v in opts.items():
            args += ["-o", f"{k}={v}" if k != "Subsystem" else f"{k} {v}"]
        self.sshd = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        for _ in range(50):
            probe = subprocess.run(
                ["ip", "netns", "exec", self.ns, "ss", "-ltn", f"src {self.ip}:22"],
                capture_output=True,
                text=True,
            )
            if f"{self.ip}:22" in probe.stdout:
                return
            time.sleep(0.1)
        raise RuntimeError("sshd did not start")

    def stop_sshd(self) -> None:
        if self.sshd is not None:
            self.sshd.kill()
            self.sshd.wait()
            self.sshd = None

    def close(self) -> None:
        self.stop_sshd()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture
def node(ws: Workspace, tmp_path: Path) -> Iterator[tuple[Workspace, Path, Node]]:
    spec = ws.spec("sshc", roles={"etcd": {"count": 1}})
    up = ws.run("up", "-f", str(spec), "-o", "json")
    assert up.exit_code == 0, up.stderr
    ip = up.json()["status"]["nodes"][0]["ip"]
    cluster = ws.home / "clusters" / "sshc"
    authorized = tmp_path / "authorized_keys"
    shutil.copy(cluster / "ssh" / "id_ed25519.pub", authorized)
    n = Node(ip, "10.12.0.1", cluster / "pki" / "ssh-host-sshc-etcd-1.key", authorized)
    try:
        yield ws, spec, n
    finally:
        n.close()


def test_ssh_runs_a_command_with_the_pinned_host_key(node: tuple[Workspace, Path, Node]) -> None:
    ws, spec, _ = node
    result = ws.run("ssh", "-f", str(spec), "sshc-etcd-1", "--user", "root", "--", "echo", "hi")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "hi\n"
    failing = ws.run("ssh", "-f", str(spec), "sshc-etcd-1", "--user", "root", "--", "exit 7")
    assert failing.exit_code == 7


def test_ssh_refuses_another_host_key(node: tuple[Workspace, Path, Node], tmp_path: Path) -> None:
    ws, spec, n = node
    impostor = tmp_path / "impostor_key"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor))
    n.serve(impostor, tmp_path / "authorized_keys")
    result = ws.run("ssh", "-f", str(spec), "sshc-etcd-1", "--user", "root", "--", "true")
    assert result.exit_code == 1
    assert "host key other than the one stackfleet generated" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_upload_is_private_from_the_first_byte(node: tuple[Workspace, Path, Node]) -> None:
    from stackfleet.provisioners.ssh_client import connect
    from stackfleet.provisioners.ssh_push import upload_private

    ws, _, n = node
    cluster = ws.home / "clusters" / "sshc"
    client = connect(
        n.ip,
        "root",
        cluster / "ssh" / "id_ed25519",
        (cluster / "pki" / "ssh-host-sshc-etcd-1.pub").read_text(),
    )
    target = Path(f"/tmp/stackfleet-upload-{uuid.uuid4().hex}")
    try:
        upload_private(client, "#cloud-config\nhostname: x\n", str(target))
        assert target.read_text() == "#cloud-config\nhostname: x\n"
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
    finally:
        client.close()
        target.unlink(missing_ok=True)


def test_apply_commands_per_flavor() -> None:
    from stackfleet.provisioners.ssh_push import apply_commands

    flatcar = apply_commands("flatcar", "n1", "up.yaml")
    assert flatcar[-1] == "sudo coreos-cloudinit --from-file=/var/lib/flatcar-install/user_data"
    ubuntu = apply_commands("ubuntu", "n1", "up.yaml")
    assert ubuntu[0] == "sudo install -D -m 0600 up.yaml /var/lib/cloud/seed/nocloud/user-data"
    assert ubuntu[-1] == "sudo cloud-init clean --reboot"
