"""A test host in a network namespace at a given IP, serving sshd with a given host key.

Real: Debian's OpenSSH sshd and a kernel network namespace. The node's address exists only
inside the namespace (on its loopback): the client reaches it there, through
STACKFLEET_NODE_NETNS, exactly as it reaches the QEMU mini-cloud's guests, and nothing in
the host's namespace is ever routed to it. The namespace shares this machine's
filesystem, so tests log in as root and write only under /tmp.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Collection
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


class Node:
    """A namespace at `ip` with sshd serving `host_key`."""

    def __init__(self, ip: str, host_key: Path, authorized: Path) -> None:
        self.ns = f"sf-ssh-{uuid.uuid4().hex[:6]}"
        self.ip = ip
        self.sshd: subprocess.Popen[bytes] | None = None
        sh("ip", "netns", "add", self.ns)
        try:
            sh("ip", "-n", self.ns, "link", "set", "lo", "up")
            sh("ip", "-n", self.ns, "addr", "add", f"{ip}/32", "dev", "lo")
            self.serve(host_key, authorized)
        except BaseException:
            self.close()  # the caller gets no Node to close: leak nothing
            raise

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
        """End every process in the namespace (sshd's session children, `sshd: root@notty`,
        and what they started, which would outlive the listener re-parented to PID 1),
        then delete it. Leaves first, each reaped by its parent before the parent goes:
        PID 1 here reaps nothing, so an orphan killed later would stay a zombie."""
        try:
            keep = {self.sshd.pid} if self.sshd is not None else set()
            kill_namespace_processes(self.ns, keep=keep)  # the listener reaps its children
            self.stop_sshd()
            kill_namespace_processes(self.ns)  # anything already orphaned
        finally:
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def namespace_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _gone(pid: int) -> bool:
    """Exited and reaped (a zombie still has its /proc entry)."""
    return not Path(f"/proc/{pid}").exists()


def kill_namespace_processes(ns: str, keep: Collection[int] = (), rounds: int = 100) -> None:
    """SIGKILL what `ip netns pids` lists (but `keep`), children before their parents,
    each round waiting for the killed to be reaped; RuntimeError if something survives."""
    for _ in range(rounds):
        pids = set(namespace_pids(ns)) - set(keep)
        if not pids:
            return
        parents = {_parent(pid) for pid in pids}
        leaves = [pid for pid in pids if pid not in parents] or sorted(pids)
        for pid in leaves:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for _ in range(20):
            if all(_gone(pid) or _parent(pid) == 1 for pid in leaves):
                break
            time.sleep(0.05)
    raise RuntimeError(f"processes still in namespace {ns}: {namespace_pids(ns)}")


def wire_to_bridge(ns: str, host_end: str, bridge: str, ip: str) -> None:
    """Give namespace `ns` an eth0 at `ip`/24 on a veth whose other end (`host_end`, in this
    namespace) is a port of `bridge`; eth0 and lo up."""
    for args in (
        ("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns),
        ("ip", "link", "set", host_end, "master", bridge, "up"),
        ("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"),
        ("ip", "-n", ns, "link", "set", "eth0", "up"),
        ("ip", "-n", ns, "link", "set", "lo", "up"),
    ):
        subprocess.run(args, check=True, capture_output=True, timeout=30)
