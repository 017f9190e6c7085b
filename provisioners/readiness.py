"""Wait for real readiness where the operator can see it: etcd health, asked over SSH.

`wait_ready` is what `up` runs after it: it decides whether the nodes can be asked at
all (not on a simulator, not without access.ssh_cidrs), then waits.

etcd's client port is open only to the cluster's own groups, so the operator cannot ask
it directly; port 22 is open to `access.ssh_cidrs`. Each member is asked, through a
connection whose host key is pinned, to check its own health with its own certificate.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stackfleet.errors import CloudError, WaitTimeout
from stackfleet.provisioners.base import Machine
from stackfleet.provisioners.events import Events
from stackfleet.provisioners.ssh_client import run
from stackfleet.roles import ETCD

if TYPE_CHECKING:
    from stackfleet.spec import Spec


@dataclass(frozen=True)
class EtcdPaths:
    """Where the rendered cloud-config puts etcdctl and the member's certificates."""

    etcdctl: str = "/opt/bin/etcdctl"
    ca: str = "/etc/etcd/pki/ca.crt"
    cert: str = "/etc/etcd/pki/member.crt"
    key: str = "/etc/etcd/pki/member.key"
    sudo: bool = True


def etcd_health_command(ip: str, paths: EtcdPaths) -> str:
    args = [
        paths.etcdctl,
        f"--endpoints=https://{ip}:2379",
        f"--cacert={paths.ca}",
        f"--cert={paths.cert}",
        f"--key={paths.key}",
        "--command-timeout=5s",
        "endpoint",
        "health",
    ]
    command = " ".join(shlex.quote(a) for a in args)
    return f"sudo {command}" if paths.sudo else command


def wait_for_etcd(
    members: Sequence[Machine],
    connect: Callable[[Machine], Any],
    deadline_s: float,
    events: Events,
    paths: EtcdPaths | None = None,
    interval_s: float = 3.0,
) -> None:
    """Return when every member reports healthy; else WaitTimeout naming who did not."""
    paths = paths or EtcdPaths()
    events.phase(f"waiting for etcd to report healthy on {len(members)} member(s), over SSH")
    end = time.monotonic() + deadline_s
    pending = {m.name: m for m in members}
    last: dict[str, str] = {}
    clients: dict[str, Any] = {}
    try:
        while pending:
            for name, member in list(pending.items()):
                healthy, last[name] = _ask(member, connect, clients, paths)
                if healthy:
                    del pending[name]
                    events.progress(
                        "healthy etcd members", len(members) - len(pending), len(members)
                    )
            if not pending:
                return
            if time.monotonic() + interval_s > end:
                detail = "; ".join(f"{n}: {last[n]}" for n in sorted(pending))
                raise WaitTimeout(
                    f"gave up after {deadline_s:.0f} s waiting for etcd health on "
                    f"{', '.join(sorted(pending))} ({detail})"
                )
            time.sleep(interval_s)
    finally:
        for client in clients.values():
            client.close()


def _ask(
    member: Machine, connect: Callable[[Machine], Any], clients: dict[str, Any], paths: EtcdPaths
) -> tuple[bool, str]:
    """(healthy, what it said). A node still booting is not an error: ask again later."""
    import paramiko

    try:
        if member.name not in clients:
            clients[member.name] = connect(member)
        code, out, err = run(
            clients[member.name], etcd_health_command(member.private_ip or "", paths)
        )
    except (CloudError, OSError, paramiko.SSHException) as exc:
        clients.pop(member.name, None)
        return False, str(exc)
    said = (err or out).strip().splitlines()
    return code == 0, said[-1] if said else f"exit {code}"


def wait_ready(
    spec: Spec, machines: Sequence[Machine], wait: bool | None, events: Events
) -> str | None:
    """After `up`: wait until etcd reports healthy on every member. `wait` None: only when
    the nodes can be reached; then returns why it did not wait (for a note), else None."""
    members = [m for m in machines if m.role == ETCD]
    if wait is None:
        reason = None
        if any(m.simulated for m in members):
            reason = "the simulator's VMs run nothing (hypervisor Simulator)"
        elif not spec.ssh_cidrs:
            reason = "access.ssh_cidrs is empty, so no node is reachable over SSH"
        if reason:
            return f"not waiting for etcd health: {reason} (VMs are Running)"
    elif not wait:
        return None
    from stackfleet import state
    from stackfleet.provisioners.reach import check_reachable
    from stackfleet.provisioners.ssh_client import connect, login_user
    from stackfleet.provisioners.ssh_push import host_key

    key = state.operator_ssh_key(spec.name).private_path

    def ssh(machine: Machine) -> Any:
        address = machine.public_ip or machine.private_ip or ""
        return connect(address, login_user(spec.os), key, host_key(spec.name, machine.name))

    check_reachable(members)
    wait_for_etcd(members, ssh, deadline_s=spec.timeout_s, events=events)
    return None
