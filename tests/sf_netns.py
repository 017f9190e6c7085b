"""A test host in a network namespace at a given IP, serving sshd with a given host key.

Real: Debian's OpenSSH sshd, kernel network namespaces and veth pairs. The namespace
shares this machine's filesystem, so tests log in as root and write only under /tmp.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


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
