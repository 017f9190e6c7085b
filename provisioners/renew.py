"""`renew`: new node certificates from the same CAs, rolled out one node at a time.

A certificate is reissued in memory (same subject, SANs and usages, from the same CA: the
CA fingerprints recorded on the cloud do not change), pushed over SSH with the node's
pinned host key, the service that reads it restarted, and the node waited for before the
next one is touched: for an etcd member, `endpoint health` over every member, so a
3-member cluster keeps its quorum throughout. Only then is the new pair written to the
local PKI (0600): a rollout that fails half-way leaves every node with a valid pair, and
running `renew` again finishes it.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackfleet.errors import CloudError, WaitTimeout
from stackfleet.pki import CertKey, put_leaf, reissue
from stackfleet.provisioners.base import Machine
from stackfleet.provisioners.events import Events
from stackfleet.provisioners.ssh_client import run
from stackfleet.provisioners.ssh_push import upload_private
from stackfleet.roles import CONTROL, ETCD, WORKER, order

ETCD_SERVICE = "stackfleet-etcd.service"
FLANNEL_SERVICE = "stackfleet-flanneld.service"


@dataclass(frozen=True)
class Placement:
    """Where a node keeps one certificate (the paths the rendered cloud-config used)."""

    cert: str
    key: str
    service: str  # restarted to load it


# Local PKI stem -> where it lives on a node. "{node}" is the node's name.
PLACEMENTS: dict[str, Placement] = {
    "etcd-member-{node}": Placement(
        "/etc/etcd/pki/member.crt", "/etc/etcd/pki/member.key", ETCD_SERVICE
    ),
    "etcd-client-flannel": Placement(
        "/etc/stackfleet/pki/flannel-etcd-client.crt",
        "/etc/stackfleet/pki/flannel-etcd-client.key",
        FLANNEL_SERVICE,
    ),
}
# Certificates no node holds (the operator's etcd client): reissued here, nothing pushed.
LOCAL_STEMS = ("etcd-client-operator",)
# Which certificates each role's nodes hold (and `renew` rolls out).
ROLE_STEMS: dict[str, tuple[str, ...]] = {
    ETCD: ("etcd-member-{node}",),
    CONTROL: ("etcd-client-flannel",),
    WORKER: ("etcd-client-flannel",),
}


@dataclass(frozen=True)
class Layout:
    """How a node is laid out. The defaults are what the rendered cloud-config makes;
    a test whose "nodes" share one filesystem moves the files under a per-node `root`."""

    root: str = ""  # prefix of every path ("{node}" allowed)
    sudo: bool = True
    etcdctl: str = "/opt/bin/etcdctl"
    etcd_ca: str = "/etc/etcd/pki/ca.crt"
    restart: str = "systemctl restart {service}"  # "{service}", "{node}" allowed

    def path(self, node: str, path: str) -> str:
        return self.root.format(node=node) + path

    def command(self, text: str) -> str:
        return f"sudo {text}" if self.sudo else text


@dataclass(frozen=True)
class Step:
    """One node's part of the rollout."""

    machine: Machine
    stems: tuple[str, ...]  # local PKI stems, "{node}" filled in


@dataclass
class RolloutResult:
    renewed: list[tuple[str, str]] = field(default_factory=list)  # (node, stem)


def steps_for(machines: Sequence[Machine], stems: Sequence[str] | None = None) -> list[Step]:
    """Each node with the certificates it holds (only `stems` if given): etcd members
    first, then the others, in name order."""
    out = []
    for m in sorted(machines, key=lambda m: (order(m.role), m.name)):
        mine = tuple(s.format(node=m.name) for s in ROLE_STEMS.get(m.role, ()))
        if stems is not None:
            mine = tuple(s for s in mine if s in stems)
        if mine:
            out.append(Step(m, mine))
    return out


def placement(stem: str, node: str) -> Placement:
    for pattern, where in PLACEMENTS.items():
        if pattern.format(node=node) == stem:
            return where
    raise KeyError(stem)


def etcd_health_all(members: Sequence[Machine], node: str, layout: Layout) -> str:
    """etcdctl on `node`, with its own member certificate (client and server usages), asked
    for the health of every member: exit 0 only when the whole cluster answers."""
    where = placement(f"etcd-member-{node}", node)
    endpoints = ",".join(f"https://{m.private_ip}:2379" for m in members)
    args = [
        layout.etcdctl,
        f"--endpoints={endpoints}",
        f"--cacert={layout.path(node, layout.etcd_ca)}",
        f"--cert={layout.path(node, where.cert)}",
        f"--key={layout.path(node, where.key)}",
        "--dial-timeout=3s",
        "--command-timeout=5s",
        "endpoint",
        "health",
    ]
    return layout.command(" ".join(shlex.quote(a) for a in args))


def install_commands(node: str, pairs: Mapping[str, str], layout: Layout) -> list[str]:
    """Move each uploaded file (upload name -> target) into place; a rename each, so a
    service never reads half a file."""
    out = []
    for upload, target in pairs.items():
        mode = "0600" if target.endswith(".key") else "0644"
        staged = f"{target}.stackfleet-new"
        out.append(
            layout.command(f"install -D -m {mode} {shlex.quote(upload)} {shlex.quote(staged)}")
        )
        out.append(layout.command(f"mv -f {shlex.quote(staged)} {shlex.quote(target)}"))
        out.append(f"rm -f {shlex.quote(upload)}")
    return out


def wait_until(
    client: Any, command: str, what: str, deadline_s: float, interval_s: float = 1.0
) -> None:
    end = time.monotonic() + deadline_s
    while True:
        code, out, err = run(client, command)
        if code == 0:
            return
        if time.monotonic() > end:
            said = (err or out).strip().splitlines()
            raise WaitTimeout(
                f"gave up after {deadline_s:.0f} s waiting for {what} "
                f"({said[-1] if said else f'exit {code}'}); run `stackfleet renew` again "
                "once it is healthy"
            )
        time.sleep(interval_s)


def _check(client: Any, node: str, command: str) -> None:
    code, out, err = run(client, command)
    if code != 0:
        said = (err or out).strip().splitlines()
        raise CloudError(
            f"{node}: `{command}` failed ({code}): {said[-1] if said else 'no output'}; "
            "the node keeps a valid certificate: run `stackfleet renew` again"
        )


def rollout(
    steps: Sequence[Step],
    members: Sequence[Machine],
    pki_dir: Path,
    connect: Callable[[Machine], Any],
    events: Events,
    deadline_s: float,
    layout: Layout | None = None,
) -> RolloutResult:
    """Reissue and roll out, one node at a time (see the module's docstring). `members`:
    every etcd member, for the health checks. `connect`: an SSH client to a machine
    (pinned host key)."""
    layout = layout or Layout()
    result = RolloutResult()
    fresh: dict[str, CertKey] = {}  # a shared client certificate is issued once
    if members:
        first = connect(members[0])
        try:
            wait_until(
                first,
                etcd_health_all(members, members[0].name, layout),
                "every etcd member to be healthy before the rollout",
                deadline_s,
            )
        finally:
            first.close()
    for step in steps:
        node = step.machine.name
        events.phase(f"{node}: pushing {len(step.stems)} certificate(s)")
        client = connect(step.machine)
        try:
            pairs: dict[str, str] = {}
            services: list[str] = []
            for stem in step.stems:
                ck = fresh.get(stem) or reissue(pki_dir, stem)
                fresh[stem] = ck
                where = placement(stem, node)
                for text, target, suffix in ((ck.key_pem, where.key, "key"),
                                             (ck.cert_pem, where.cert, "crt")):  # fmt: skip
                    upload = f".stackfleet-{stem}.{suffix}"
                    upload_private(client, text, upload)
                    pairs[upload] = layout.path(node, target)
                if where.service not in services:
                    services.append(where.service)
            for command in install_commands(node, pairs, layout):
                _check(client, node, command)
            for service in services:
                events.phase(f"{node}: restarting {service}")
                restart = layout.restart.format(service=service, node=node)
                _check(client, node, layout.command(restart))
                if service == ETCD_SERVICE:
                    wait_until(
                        client,
                        etcd_health_all(members, node, layout),
                        f"etcd on every member after restarting {node}",
                        deadline_s,
                    )
                else:
                    wait_until(
                        client,
                        layout.command(f"systemctl is-active --quiet {service}"),
                        f"{service} on {node}",
                        deadline_s,
                    )
        finally:
            client.close()
        for stem in step.stems:
            put_leaf(pki_dir, stem, fresh[stem])
            result.renewed.append((node, stem))
        events.progress("nodes with renewed certificates", steps.index(step) + 1, len(steps))
    return result


def renew_local(pki_dir: Path, stems: Sequence[str]) -> list[str]:
    """Reissue the certificates only this machine uses (LOCAL_STEMS among `stems`)."""
    done = []
    for stem in stems:
        if stem in LOCAL_STEMS:
            put_leaf(pki_dir, stem, reissue(pki_dir, stem))
            done.append(stem)
    return done
