"""etcd's member API, asked with etcdctl on a member node over SSH.

etcd's client port is open only to the cluster's own groups; port 22 is open to
`access.ssh_cidrs`, and every node's host key is pinned (ssh_client). So a member is
asked, with its own certificate (the paths the rendered cloud-config writes, see
readiness.EtcdPaths), to list, add and remove members and to check their health. Every
command has a bounded time; every failure is one line naming the node.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from stackfleet.errors import CloudError, WaitTimeout
from stackfleet.provisioners.base import BOOTSTRAP_TAG, Machine, MachineState
from stackfleet.provisioners.etcd_membership import EtcdView, Member
from stackfleet.provisioners.readiness import EtcdPaths
from stackfleet.roles import ETCD
from stackfleet.spec import Spec

CLIENT_PORT = 2379
# etcdctl's own bounds, and the SSH channel's (a little longer: etcdctl answers first).
DIAL_TIMEOUT = "3s"
COMMAND_TIMEOUT = "10s"
CHANNEL_TIMEOUT_S = 20.0


class EtcdAdmin:
    """etcdctl on member nodes; one SSH connection per node, kept until close()."""

    def __init__(self, connect: Callable[[Machine], Any], paths: EtcdPaths | None = None) -> None:
        self._connect = connect
        self.paths = paths or EtcdPaths()
        self._clients: dict[str, Any] = {}

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> EtcdAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the member API ----------------------------------------------------------------

    def member_list(self, via: Machine) -> list[Member]:
        data = self._json(via, ["member", "list"])
        return [_member(m) for m in data.get("members", [])]

    def health(self, via: Machine, endpoints: Sequence[str]) -> dict[str, tuple[bool, str]]:
        """Client URL -> (healthy, etcd's error). An unhealthy member makes etcdctl exit
        non-zero, with the JSON still printed: judged from the JSON."""
        if not endpoints:
            return {}
        out = self._run(
            via, ["endpoint", "health", "-w", "json"], endpoints=",".join(endpoints), check=False
        )
        try:
            rows = json.loads(out)
        except ValueError:
            raise CloudError(f"{via.name}: etcdctl endpoint health gave no JSON") from None
        return {r["endpoint"]: (bool(r.get("health")), str(r.get("error") or "")) for r in rows}

    def view(self, via: Machine) -> tuple[Member, ...]:
        """The members, each with its health."""
        members = self.member_list(via)
        urls = [u for m in members for u in m.client_urls[:1]]
        health = self.health(via, urls)
        return tuple(
            Member(
                m.id,
                m.name,
                m.peer_urls,
                m.client_urls,
                bool(m.client_urls) and health.get(m.client_urls[0], (False, ""))[0],
            )
            for m in members
        )

    def member_add(self, via: Machine, name: str, peer_url: str) -> list[Member]:
        """Add `name` at `peer_url`; returns the members after, the new one named."""
        data = self._json(via, ["member", "add", name, f"--peer-urls={peer_url}"])
        new_id = data["member"]["ID"]
        members = [_member(m) for m in data.get("members", [])]
        return [
            Member(m.id, name, m.peer_urls, m.client_urls) if m.id == new_id else m for m in members
        ]

    def member_remove(self, via: Machine, member: Member) -> None:
        self._run(via, ["member", "remove", member.hex_id])

    # ---- running etcdctl ---------------------------------------------------------------

    def _json(self, via: Machine, args: list[str]) -> dict[str, Any]:
        out = self._run(via, [*args, "-w", "json"])
        try:
            data = json.loads(out)
        except ValueError:
            raise CloudError(f"{via.name}: etcdctl {args[0]} {args[1]} gave no JSON") from None
        return data if isinstance(data, dict) else {}

    def command(self, via: Machine, args: Sequence[str], endpoints: str | None = None) -> str:
        p = self.paths
        full = [
            p.etcdctl,
            f"--endpoints={endpoints or client_url(via)}",
            f"--cacert={p.ca}",
            f"--cert={p.cert}",
            f"--key={p.key}",
            f"--dial-timeout={DIAL_TIMEOUT}",
            f"--command-timeout={COMMAND_TIMEOUT}",
            *args,
        ]
        text = " ".join(shlex.quote(a) for a in full)
        return f"sudo {text}" if p.sudo else text

    def _run(
        self, via: Machine, args: list[str], endpoints: str | None = None, check: bool = True
    ) -> str:
        import paramiko

        what = f"etcdctl {' '.join(args[:2])}"
        client = self._client(via)
        try:
            _, stdout, stderr = client.exec_command(
                self.command(via, args, endpoints), timeout=CHANNEL_TIMEOUT_S
            )
            out, err = stdout.read().decode(), stderr.read().decode()
            code = stdout.channel.recv_exit_status()
        except TimeoutError:
            self._drop(via)
            raise WaitTimeout(
                f"{via.name}: {what} gave no answer within {CHANNEL_TIMEOUT_S:.0f} s"
            ) from None
        except (OSError, paramiko.SSHException) as exc:  # e.g. "SSH session not active"
            self._drop(via)
            raise CloudError(f"{via.name}: {what} over SSH failed: {exc}") from None
        if check and code != 0:
            raise CloudError(f"{via.name}: {what} failed ({code}): {_last_error(err, out)}")
        return out

    def _client(self, via: Machine) -> Any:
        if via.name not in self._clients:
            self._clients[via.name] = self._connect(via)
        return self._clients[via.name]

    def _drop(self, via: Machine) -> None:
        client = self._clients.pop(via.name, None)
        if client is not None:
            client.close()


def client_url(m: Machine) -> str:
    return f"https://{m.private_ip}:{CLIENT_PORT}"


def _member(raw: dict[str, Any]) -> Member:
    return Member(
        id=int(raw["ID"]),
        name=str(raw.get("name") or ""),
        peer_urls=tuple(raw.get("peerURLs") or ()),
        client_urls=tuple(raw.get("clientURLs") or ()),
    )


def _last_error(err: str, out: str) -> str:
    """etcdctl's own "Error: ..." line, not its JSON log lines."""
    lines = [line.strip() for line in (err + "\n" + out).splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("Error:")]
    return (said or lines or ["no output"])[-1]


# ---- from a spec and the cloud's machines ------------------------------------------------


def askable(machines: Sequence[Machine]) -> list[Machine]:
    """Etcd VMs that may answer: booted with their final userdata and running."""
    return [
        m
        for m in machines
        if m.role == ETCD
        and m.state == MachineState.RUNNING
        and m.tags.get(BOOTSTRAP_TAG) == "done"
    ]


def why_unreachable(spec: Spec, machines: Sequence[Machine]) -> str:
    """Why no member can be asked without trying ("" when one may be)."""
    members = askable(machines)
    if any(m.simulated for m in machines if m.role == ETCD):
        return "the simulator's VMs run nothing (hypervisor Simulator), so no member can be asked"
    if not members:
        return "no etcd VM is running with its final userdata"
    if not spec.ssh_cidrs:
        return "access.ssh_cidrs is empty, so no node is reachable over SSH"
    return ""


def ssh_connect(spec: Spec) -> Callable[[Machine], Any]:
    """Connect to a node as `up` does: the operator key, the node's pinned host key."""
    from stackfleet import state
    from stackfleet.provisioners.ssh_client import connect, login_user
    from stackfleet.provisioners.ssh_push import host_key

    key = state.operator_ssh_key(spec.name).private_path

    def ssh(machine: Machine) -> Any:
        address = machine.public_ip or machine.private_ip or ""
        return connect(address, login_user(spec.os), key, host_key(spec.name, machine.name))

    return ssh


def observe(machines: Sequence[Machine], admin: EtcdAdmin) -> tuple[EtcdView, Machine | None]:
    """Ask the members in turn until one answers: (what etcd says, who answered)."""
    import paramiko

    from stackfleet.provisioners.reach import check_reachable

    members = askable(machines)
    check_reachable(members)
    tried = []
    for m in members:
        try:
            return EtcdView(admin.view(m)), m
        except (CloudError, OSError, paramiko.SSHException) as exc:
            tried.append(f"{m.name}: {exc}")
    return EtcdView(unreachable=f"no etcd member answered over SSH ({'; '.join(tried)})"), None
