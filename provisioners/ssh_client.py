"""SSH to cluster nodes with paramiko, trusting only the host key stackfleet generated.

Every node's host key is made by stackfleet and put in its userdata, so the expected
key is known before the first connection: no trust-on-first-use, and a node that
presents any other key is refused.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any

from stackfleet.errors import CloudError, WaitTimeout
from stackfleet.flavors import flavor
from stackfleet.provisioners.reach import open_tcp


def login_user(flavor_name: str) -> str:
    """The image's SSH user for this OS flavor (stackfleet/flavors.py)."""
    return flavor(flavor_name).login_user


class HostKeyMismatch(CloudError):
    """The node presented a host key other than the one stackfleet generated for it."""


# A node that has just booted may drop a connection before its banner while sshd is
# restarted with the pinned host key; such a drop is retried this often.
BANNER_ATTEMPTS = 3


def connect(
    host: str,
    user: str,
    private_key_path: Path,
    host_public_openssh: str,
    port: int = 22,
    timeout_s: float = 10.0,
) -> Any:
    attempt = 1
    while True:
        try:
            return _connect_once(host, user, private_key_path, host_public_openssh, port, timeout_s)
        except _DroppedBeforeBanner as exc:
            if attempt >= BANNER_ATTEMPTS:
                raise CloudError(f"{host}:{port}: SSH failed: {exc}") from None
            attempt += 1
            time.sleep(2)


class _DroppedBeforeBanner(Exception):
    pass


def quiet_paramiko() -> None:
    """paramiko logs each failed handshake as a traceback at ERROR, from its transport
    thread (`up --wait` on booting nodes printed hundreds of such lines); the one-line
    error we raise says it all. Shown again only when the run logs at DEBUG (-v, --debug).
    Checked at each connection: the CLI sets its logging up after this module is imported."""
    debugging = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    logging.getLogger("paramiko").setLevel(logging.NOTSET if debugging else logging.CRITICAL + 1)


def _connect_once(
    host: str,
    user: str,
    private_key_path: Path,
    host_public_openssh: str,
    port: int,
    timeout_s: float,
) -> Any:
    import paramiko

    quiet_paramiko()
    key_type, blob = host_public_openssh.split()[:2]
    expected = paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))
    client = paramiko.SSHClient()
    client.get_host_keys().add(host if port == 22 else f"[{host}]:{port}", key_type, expected)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    pkey = paramiko.Ed25519Key.from_private_key_file(str(private_key_path))
    try:
        sock = open_tcp(host, port, timeout_s)
        client.connect(
            host,
            port=port,
            sock=sock,
            username=user,
            pkey=pkey,
            timeout=timeout_s,
            banner_timeout=max(timeout_s, 30.0),
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
        if "protocol banner" in str(exc):
            raise _DroppedBeforeBanner(str(exc)) from None
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
