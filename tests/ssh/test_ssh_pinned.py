"""paramiko against a real sshd with a pinned key: the ssh strategy's upload, and
`stackfleet ssh` where no OpenSSH client is installed (its fallback; the OpenSSH path is
tests/ssh/test_ssh_openssh.py).

Real: OpenSSH's sshd (Debian's openssh-server) in a network namespace this test makes,
listening at the IP the simulator gave the node, with the host key stackfleet generated
for that node; paramiko on our side; SFTP. Simulated: the VM itself (the namespace shares
this machine's filesystem, so the test logs in as root and only writes under /tmp), and
the absence of the `ssh` client (its name is made one that is not installed).
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sf_netns import SSHD, Node, sh
from sf_testkit import Workspace

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server not installed"),
]


@pytest.fixture
def node(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Workspace, Path, Node]]:
    # The simulator runs nothing but reports KVM: this test's sshd plays the VM.
    monkeypatch.setenv("STACKFLEET_SIMULATOR_HYPERVISOR", "external")
    spec = ws.spec("sshc", roles={"etcd": {"count": 1}})
    up = ws.run("up", "-f", str(spec), "--no-wait", "-o", "json")
    assert up.exit_code == 0, up.stderr
    ip = up.json()["status"]["nodes"][0]["ip"]
    cluster = ws.home / "clusters" / "sshc"
    authorized = tmp_path / "authorized_keys"
    shutil.copy(cluster / "ssh" / "id_ed25519.pub", authorized)
    n = Node(ip, cluster / "pki" / "ssh-host-sshc-etcd-1.key", authorized)
    monkeypatch.setenv("STACKFLEET_NODE_NETNS", n.ns)  # its address exists only in there
    try:
        yield ws, spec, n
    finally:
        n.close()


@pytest.fixture
def no_openssh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stackfleet.provisioners.openssh.OPENSSH", "no-such-ssh-client")


@pytest.mark.usefixtures("no_openssh")
def test_ssh_runs_a_command_with_the_pinned_host_key(node: tuple[Workspace, Path, Node]) -> None:
    ws, spec, _ = node
    result = ws.run("ssh", "-f", str(spec), "sshc-etcd-1", "--user", "root", "--", "echo", "hi")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "hi\n"
    failing = ws.run("ssh", "-f", str(spec), "sshc-etcd-1", "--user", "root", "--", "exit 7")
    assert failing.exit_code == 7


@pytest.mark.usefixtures("no_openssh")
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
