"""The local state dir: a cache of what must not be regenerated, never the source of truth.

$STACKFLEET_HOME, else $XDG_STATE_HOME/stackfleet, else ~/.local/state/stackfleet.
Per cluster: its PKI and the operator's SSH key (both 0600, dir 0700). The cloud's tags
are the truth about what exists: `status` and `down` work with an empty state dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def home() -> Path:
    if os.environ.get("STACKFLEET_HOME"):
        return Path(os.environ["STACKFLEET_HOME"]).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "stackfleet"


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def cluster_dir(cluster: str) -> Path:
    # Every level 0700: other local users must not even list the cluster names.
    return private_dir(private_dir(private_dir(home()) / "clusters") / cluster)


@dataclass(frozen=True)
class OperatorKey:
    private_path: Path
    public_openssh: str


def operator_public_key(cluster: str) -> str | None:
    """The operator's public key if this machine holds one: read only, makes nothing."""
    path = home() / "clusters" / cluster / "ssh" / "id_ed25519.pub"
    return path.read_text().strip() if path.is_file() else None


def operator_ssh_key(cluster: str) -> OperatorKey:
    """The key pair stackfleet logs in with; made once per cluster, reused after."""
    from stackfleet.pki import new_ssh_host_key, write_private

    directory = private_dir(cluster_dir(cluster) / "ssh")
    private_path, public_path = directory / "id_ed25519", directory / "id_ed25519.pub"
    if not (private_path.exists() and public_path.exists()):
        pair = new_ssh_host_key()
        write_private(private_path, pair.private_openssh)
        write_private(public_path, f"{pair.public_openssh} stackfleet-{cluster}\n")
    return OperatorKey(private_path, public_path.read_text().strip())
