"""After an etcd membership change: give every etcd client the current endpoint list.

The clients are flannel on every kube node (its env file, rendered by
cloudconfig_templates) and kube-apiserver on the control node (`--etcd-servers` in the
static pod manifest kubeadm wrote; the kubelet restarts the pod when it changes). Each
node is updated over SSH with its pinned host key, one node at a time, so at most one
client restarts at once. Nodes created later render the current list themselves.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stackfleet.errors import CloudError
from stackfleet.provisioners.base import Machine
from stackfleet.provisioners.events import Events
from stackfleet.provisioners.ssh_client import run
from stackfleet.provisioners.ssh_push import upload_private
from stackfleet.roles import CONTROL, ETCD, kube_roles

UPLOAD_PATH = ".stackfleet-flannel.env"


@dataclass(frozen=True)
class ClientPaths:
    """Where the clients' settings live on a node, and how each client is restarted."""

    flannel_env: str = "/etc/flannel/options.env"
    apiserver_manifest: str = "/etc/kubernetes/manifests/kube-apiserver.yaml"
    restart_flannel: str = "systemctl try-restart stackfleet-flanneld.service"
    sudo: bool = True


def endpoint_list(members: Sequence[Machine]) -> str:
    return ",".join(f"https://{m.private_ip}:2379" for m in members)


def flannel_env(spec: Any, nodes: Sequence[Machine], node: str, key: str) -> str:
    """The node's flannel env file as `up` renders it for the etcd members in `nodes`."""
    from stackfleet.cloudconfig_templates.parts import FLANNEL_ENV, role_parts
    from stackfleet.provisioners.bootstrap import NodeAddress, render_input

    inp = render_input(spec, [NodeAddress(m.name, m.role, m.private_ip) for m in nodes], key)
    files = role_parts(inp, inp.node(node)).files
    return next(f.content for f in files if f.path == FLANNEL_ENV)


def commands(node: Machine, endpoints: str, paths: ClientPaths) -> list[str]:
    sudo = "sudo " if paths.sudo else ""
    out = [
        f"{sudo}install -D -m 0644 {UPLOAD_PATH} {shlex.quote(paths.flannel_env)}",
        f"rm -f {UPLOAD_PATH}",
        f"{sudo}{paths.restart_flannel}",
    ]
    if node.role == CONTROL:
        manifest = shlex.quote(paths.apiserver_manifest)
        edit = shlex.quote(f's#--etcd-servers=[^[:space:]"]*#--etcd-servers={endpoints}#')
        out.append(f"if {sudo}test -f {manifest}; then {sudo}sed -i {edit} {manifest}; fi")
    return out


def update_clients(
    spec: Any,
    machines: Sequence[Machine],
    connect: Callable[[Machine], Any],
    key: str,
    events: Events,
    paths: ClientPaths | None = None,
) -> list[str]:
    """Push the current endpoints to every kube node in `machines`, one at a time; the etcd
    members are the etcd machines in `machines`. Returns the nodes updated."""
    paths = paths or ClientPaths()
    members = [m for m in machines if m.role == ETCD]
    kube = [m for m in machines if m.role in kube_roles()]
    if not kube:
        return []
    endpoints = endpoint_list(members)
    events.phase(f"giving {len(kube)} node(s) the etcd endpoints {endpoints}")
    done = []
    for node in kube:
        env = flannel_env(spec, machines, node.name, key)
        client = connect(node)
        try:
            upload_private(client, env, UPLOAD_PATH)
            for command in commands(node, endpoints, paths):
                code, _, err = run(client, command)
                if code != 0:
                    said = err.strip().splitlines()
                    raise CloudError(
                        f"{node.name}: updating the etcd endpoints failed ({code}): "
                        f"{said[-1] if said else 'no output'}"
                    )
        finally:
            client.close()
        done.append(node.name)
        events.progress("nodes given the etcd endpoints", len(done), len(kube))
    return done
