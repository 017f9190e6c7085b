"""The `ssh` bootstrap strategy: push each node's final cloud-config over SFTP and apply it.

For zones where neither the IP is known before boot nor a stop/start is wanted, but the
nodes are reachable on port 22. The host key is pinned (see ssh_client). The document
holds private keys: it is created 0600 before a byte is written, and moved into place
with sudo. Where it goes and how it is applied is the flavor's (Flavor.apply_commands in
stackfleet/flavors.py): Flatcar's coreos-cloudinit applies it at once and on every boot;
Ubuntu's cloud-init boots into it from a NoCloud seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stackfleet import state
from stackfleet.errors import CloudError, NotFound
from stackfleet.flavors import flavor
from stackfleet.provisioners.base import Machine
from stackfleet.provisioners.reach import check_reachable
from stackfleet.provisioners.ssh_client import connect_when_up, login_user, run
from stackfleet.spec import Spec

UPLOAD_PATH = ".stackfleet-user-data"


def apply_commands(flavor_name: str, node: str, upload: str) -> list[str]:
    """Install the uploaded document and make the flavor's boot agent apply it."""
    return flavor(flavor_name).apply_commands(node, upload)


def upload_private(client: Any, text: str, remote_path: str) -> None:
    """Write `text` to `remote_path`, readable by its owner only from the first byte."""
    sftp = client.open_sftp()
    try:
        with sftp.open(remote_path, "w") as handle:
            handle.chmod(0o600)
            handle.write(text.encode())
    finally:
        sftp.close()


def host_key(cluster: str, node: str) -> str:
    path = state.cluster_dir(cluster) / "pki" / f"ssh-host-{node}.pub"
    if not path.exists():
        raise NotFound(f"{path}: no pinned host key for {node}; it lives where `up` ran")
    return path.read_text().strip()


def push_all(
    spec: Spec, targets: Sequence[Machine], docs: Mapping[str, str], user: str | None = None
) -> None:
    key = state.operator_ssh_key(spec.name).private_path
    login = user or login_user(spec.os)
    check_reachable(targets)
    for machine in targets:
        address = machine.public_ip or machine.private_ip
        if not address:
            raise CloudError(f"{machine.name}: no IP to reach over SSH")
        client = connect_when_up(
            address, login, key, host_key(spec.name, machine.name), deadline_s=spec.timeout_s
        )
        try:
            upload_private(client, docs[machine.name], UPLOAD_PATH)
            for command in apply_commands(spec.os, machine.name, UPLOAD_PATH):
                code, _, err = run(client, command)
                # `cloud-init clean --reboot` drops the connection: that is success.
                if code not in (0, -1) and "reboot" not in command:
                    raise CloudError(
                        f"{machine.name}: `{command.split()[1]}` failed ({code}): "
                        f"{err.strip().splitlines()[-1] if err.strip() else 'no output'}"
                    )
        finally:
            client.close()
