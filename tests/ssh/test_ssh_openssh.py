"""`stackfleet ssh` through the system OpenSSH client, against a real sshd.

Real: the stackfleet CLI as a program (a subprocess, on a pseudo-terminal where a terminal
matters), Debian's OpenSSH client (ssh) and server (sshd) in a network namespace this test
makes, listening at the IP the embedded simulator gave the node, with the host key
stackfleet generated for it; bash on the "node". Simulated: the VM itself (the namespace
shares this machine's filesystem, so the test logs in as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sf_netns import SSHD, Node, sh
from sf_testkit import Workspace

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server not installed"),
    pytest.mark.skipif(shutil.which("ssh") is None, reason="openssh-client not installed"),
]


class Cluster:
    def __init__(self, ws: Workspace, spec: Path, node: Node, ips: dict[str, str]) -> None:
        self.ws, self.spec, self.node, self.ips = ws, spec, node, ips
        self.dir = ws.home / "clusters" / "ossh"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "stackfleet", "ssh", "-f", str(self.spec), *args]

    def run(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.argv(*args), input=stdin, capture_output=True, timeout=120)


def wait_listening(ns: str, ip: str) -> None:
    for _ in range(100):
        probe = subprocess.run(
            ["ip", "netns", "exec", ns, "ss", "-ltn", f"src {ip}:22"],
            capture_output=True,
            text=True,
        )
        if f"{ip}:22" in probe.stdout:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {ip}:22 in {ns}")


@pytest.fixture
def cluster(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    # The simulator runs nothing but reports KVM: this test's sshd plays the VM.
    monkeypatch.setenv("STACKFLEET_SIMULATOR_HYPERVISOR", "external")
    spec = ws.spec("ossh", roles={"etcd": {"count": 1}, "workers": {"count": 0}})
    up = ws.run("up", "-f", str(spec), "--no-wait", "-o", "json")
    assert up.exit_code == 0, up.stderr
    ips = {n["name"]: n["ip"] for n in up.json()["status"]["nodes"]}
    pki = ws.home / "clusters" / "ossh" / "pki"
    authorized = tmp_path / "authorized_keys"
    shutil.copy(ws.home / "clusters" / "ossh" / "ssh" / "id_ed25519.pub", authorized)
    node = Node(ips["ossh-etcd-1"], pki / "ssh-host-ossh-etcd-1.key", authorized)
    monkeypatch.setenv("STACKFLEET_NODE_NETNS", node.ns)  # the subprocesses inherit it
    try:
        yield Cluster(ws, spec, node, ips)
    finally:
        node.close()


def test_an_interactive_session_is_a_real_terminal(cluster: Cluster) -> None:
    """A prompt, a command typed at it, the window size followed, and the exit status."""
    import pexpect

    child = pexpect.spawn(
        cluster.argv("etcd-1", "--user", "root")[0],
        cluster.argv("etcd-1", "--user", "root")[1:],
        env={**os.environ, "TERM": "xterm"},
        dimensions=(40, 100),
        timeout=60,
    )
    try:
        child.expect(r"# ")  # root's prompt, whatever the rest of it says
        child.sendline("PS1='re''mote> '")  # the echo says re''mote, the prompt remote
        child.expect("remote> ")
        child.sendline("echo hi-$((40+2)); tty; stty size")
        child.expect(r"hi-42\r\n/dev/pts/\d+\r\n40 100\r\n")
        child.setwinsize(50, 120)  # ssh forwards the new size (SIGWINCH), as a terminal does
        child.sendline("stty size")
        child.expect(r"50 120\r\n")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3


def test_output_streams_as_it_comes_and_stdin_passes_through(cluster: Cluster) -> None:
    """The first line arrives while the remote command still waits for our next input:
    nothing is held back until it exits."""
    proc = subprocess.Popen(
        cluster.argv(
            "etcd-1", "--user", "root", "--", 'echo first; read line; echo "got $line"; exit 4'
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == b"first\n"
        assert proc.poll() is None  # still running: it cannot end before we answer
        proc.stdin.write(b"data\n")
        proc.stdin.close()
        assert proc.stdout.read() == b"got data\n"
        assert proc.wait(timeout=60) == 4
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stdin_is_passed_through_and_the_exit_status_is_the_commands(cluster: Cluster) -> None:
    piped = cluster.run("ossh-etcd-1", "--user", "root", "cat", stdin=b"data")
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, b"data", b"")
    failing = cluster.run("etcd-1", "--user", "root", "--", "echo oops >&2; exit 7")
    assert (failing.returncode, failing.stderr) == (7, b"oops\n")
    # 255 from the remote command itself is passed on, not taken for ssh's own failure.
    assert cluster.run("etcd-1", "--user", "root", "--", "exit 255").returncode == 255


def test_another_host_key_is_refused_in_one_line(cluster: Cluster, tmp_path: Path) -> None:
    impostor = tmp_path / "impostor_key"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor))
    cluster.node.serve(impostor, tmp_path / "authorized_keys")
    result = cluster.run("etcd-1", "--user", "root", "--", "echo", "reached")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "error: ossh-etcd-1: presented a host key other than the one stackfleet generated "
        "for it; refusing to connect (the node was replaced, or this is not the node)"
    ]


def test_a_failed_login_is_one_line_and_v_shows_ssh_s_account(cluster: Cluster) -> None:
    result = cluster.run("etcd-1", "--user", "nobody-here", "--", "true")
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "Permission denied (publickey)" in lines[0], lines
    verbose = cluster.run("etcd-1", "--user", "nobody-here", "-v", "--", "true")
    assert verbose.returncode == 255  # ssh's own status: it spoke for itself
    assert b"debug1: " in verbose.stderr and b"Permission denied" in verbose.stderr


def test_jump_through_another_node_checks_its_pinned_key_too(
    cluster: Cluster, tmp_path: Path
) -> None:
    """--jump control-1: the connection to etcd-1 is carried by control-1's sshd (its log
    shows our login), and both hops trust only the keys stackfleet generated."""
    jump_ip = cluster.ips["ossh-control-1"]
    log = tmp_path / "jump-sshd.log"
    sh("ip", "-n", cluster.node.ns, "addr", "add", f"{jump_ip}/32", "dev", "lo")
    jump = subprocess.Popen(
        ["ip", "netns", "exec", cluster.node.ns, SSHD, "-D", "-f", "/dev/null", "-E", str(log)]
        + [
            f"-o{k}={v}"
            for k, v in {
                "ListenAddress": jump_ip,
                "HostKey": str(cluster.dir / "pki" / "ssh-host-ossh-control-1.key"),
                "AuthorizedKeysFile": str(tmp_path / "authorized_keys"),
                "PermitRootLogin": "prohibit-password",
                "UsePAM": "no",
                "StrictModes": "no",
                "PidFile": "none",
            }.items()
        ]
    )
    try:
        wait_listening(cluster.node.ns, jump_ip)
        result = cluster.run("etcd-1", "--user", "root", "--jump", "control-1", "--", "echo via")
        assert (result.returncode, result.stdout) == (0, b"via\n"), result.stderr
        assert "Accepted publickey for root" in log.read_text()
    finally:
        jump.kill()
        jump.wait()


# Accepts and hangs up before the SSH banner, as a booting node's sshd may while it is
# restarted with its pinned key: paramiko's transport logs a traceback for each attempt.
HANG_UP = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 22))
s.listen()
while True:
    s.accept()[0].close()
"""


def test_without_openssh_a_failed_connection_is_one_line(cluster: Cluster) -> None:
    """No `ssh` on PATH: paramiko's fallback, whose failed handshakes are one line, not
    paramiko's tracebacks (`-v` shows them). Real: paramiko, the CLI's logging set-up;
    the node that hangs up is a Python listener."""
    cluster.node.stop_sshd()
    listener = subprocess.Popen(
        ["ip", "netns", "exec", cluster.node.ns, sys.executable, "-c", HANG_UP, cluster.node.ip]
    )
    try:
        wait_listening(cluster.node.ns, cluster.node.ip)
        env = {**os.environ, "PATH": "/usr/sbin:/sbin"}  # ip, but no ssh client
        quiet = subprocess.run(
            cluster.argv("etcd-1", "--", "true"), env=env, capture_output=True, text=True
        )
        assert quiet.returncode == 1
        assert quiet.stderr.splitlines() == [
            f"error: {cluster.node.ip}:22: SSH failed: Error reading SSH protocol banner"
        ]
        loud = subprocess.run(
            cluster.argv("etcd-1", "-v", "--", "true"), env=env, capture_output=True, text=True
        )
        assert "paramiko.transport" in loud.stderr
    finally:
        listener.kill()
        listener.wait()
