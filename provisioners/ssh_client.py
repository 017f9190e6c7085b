"""SSH to cluster nodes with paramiko, trusting only the host key stackfleet generated.

Every node's host key is made by stackfleet and put in its userdata, so the expected
key is known before the first connection: no trust-on-first-use, and a node that
presents any other key is refused.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from stackfleet.errors import CloudError, WaitTimeout

# The image's login user per OS flavor.
LOGIN_USERS = {"flatcar": "core", "ubuntu": "ubuntu"}


class HostKeyMismatch(CloudError):
    """The node presented a host key other than the one stackfleet generated for it."""


def connect(
    host: str,
    user: str,
    private_key_path: Path,
    host_public_openssh: str,
    port: int = 22,
    timeout_s: float = 10.0,
) -> Any:
    import paramiko

    key_type, blob = host_public_openssh.split()[:2]
    expected = paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))
    client = paramiko.SSHClient()
    client.get_host_keys().add(host if port == 22 else f"[{host}]:{port}", key_type, expected)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    pkey = paramiko.Ed25519Key.from_private_key_file(str(private_key_path))
    try:
        client.connect(
            host,
            port=port,
            username=user,
            pkey=pkey,
            timeout=timeout_s,
            banner_timeout=timeout_s,
            auth_timeout=timeout_s,
            allow_agent=False,
            look_for_keys=False,
        )
    except paramiko.BadHostKeyException:
        client.close()
        raise HostKeyMismatch(
            f"{host}: presented a host key other than the one stackfleet generated for it; "
            "refusing to connect (the node was replaced, or this is not the node)"
        ) from None
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):
            raise HostKeyMismatch(
                f"{host}: offered no host key of type {key_type}; refusing to connect"
            ) from None
        raise CloudError(f"{host}:{port}: SSH failed: {exc}") from None
    except (TimeoutError, OSError) as exc:
        client.close()
        raise CloudError(f"{host}:{port}: cannot connect: {exc}") from None
    return client


def connect_when_up(
    host: str,
    user: str,
    private_key_path: Path,
    host_public_openssh: str,
    deadline_s: float,
    port: int = 22,
) -> Any:
    """Retry until the node's sshd answers (it is still booting), up to a deadline."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return connect(host, user, private_key_path, host_public_openssh, port)
        except HostKeyMismatch:
            raise
        except CloudError as exc:
            if time.monotonic() > end:
                raise WaitTimeout(
                    f"gave up after {deadline_s:.0f} s waiting for SSH on {host}:{port} ({exc})"
                ) from None
            time.sleep(2)


def run(client: Any, command: str) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command)
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err
