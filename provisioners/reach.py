"""How this process reaches a node: directly, inside a network namespace, or not at all.

- A real cloud's nodes are dialled directly.
- The QEMU mini-cloud's guests live in a network namespace the simulator made; their
  addresses mean nothing outside it (and, on this machine, must never be dialled outside
  it). `STACKFLEET_NODE_NETNS` names it (`simulator serve --hypervisor qemu` prints it; the
  embedded simulator sets it in-process), and each socket is made inside it: only the
  calling thread enters the namespace, for the `socket()` call, and leaves again.
- A simulated VM (hypervisor `Simulator`) runs nothing: nothing is dialled at all.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterable

from stackfleet.errors import CloudError
from stackfleet.provisioners.base import Machine

ENV = "STACKFLEET_NODE_NETNS"
_CLONE_NEWNET = 0x40000000
_namespace: str | None = None
# Set once this process has talked to the embedded simulator: its VMs' addresses are
# reachable inside its guests' namespace or nowhere, never through the host's network.
_confined = False


class NothingRuns(CloudError):
    """The node is a simulated VM: there is no machine behind its address."""


def confine(name: str | None) -> None:
    """For the rest of this process, reach nodes inside namespace `name` only; with no
    name (the simulator runs nothing), dial nothing at all. Called by the embedded
    simulator's session, and never undone: a connection made after the session closed
    must not fall back to the host's network."""
    global _namespace, _confined
    _namespace, _confined = name, True


def namespace() -> str | None:
    return _namespace or os.environ.get(ENV) or None


def check_reachable(machines: Iterable[Machine]) -> None:
    """Before dialling these machines: refuse simulated ones, and follow the namespace a
    QEMU mini-cloud names for its guests (so a client of `simulator serve` that did not
    export STACKFLEET_NODE_NETNS still never dials them from the host's network)."""
    machines = list(machines)
    simulated = sorted(m.name for m in machines if m.simulated)
    if simulated:
        raise NothingRuns(
            f"{', '.join(simulated)}: simulated VM(s) (hypervisor Simulator) run nothing, so "
            "there is nothing to connect to (the simulator's QEMU hypervisor boots real ones)"
        )
    named = {m.netns for m in machines if m.netns}
    if len(named) > 1:
        raise CloudError(f"nodes live in different network namespaces: {', '.join(sorted(named))}")
    if named:
        confine(named.pop())


def open_tcp(host: str, port: int, timeout_s: float) -> socket.socket:
    name = namespace()
    if name is None:
        if _confined:
            raise NothingRuns(
                f"{host}: the simulator's VMs are reachable only inside its guests' network "
                "namespace, and this simulator runs no guests (hypervisor Simulator)"
            )
        return socket.create_connection((host, port), timeout=timeout_s)
    sock = _socket_in(name)
    try:
        sock.settimeout(timeout_s)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _socket_in(name: str) -> socket.socket:
    """A TCP socket created inside namespace `name`; it stays there after we leave."""
    libc = ctypes.CDLL(None, use_errno=True)
    path = f"/run/netns/{name}"
    try:
        target = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise CloudError(f"{ENV}={name}: no such network namespace ({exc.strerror})") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        # setns moves only this thread; other threads keep the host's network meanwhile.
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise CloudError(f"cannot enter network namespace {name}: {os.strerror(err)}")
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:
                # Staying in the guests' namespace would send every later request there.
                os._exit(70)
    finally:
        os.close(target)
        os.close(home)
