"""Plain data the renderer takes: no cloud, no files, no environment."""

from __future__ import annotations

from dataclasses import dataclass

from stackfleet.artifacts import ArtifactSet
from stackfleet.errors import BadInput
from stackfleet.pki import ClusterPKI

ROLES = ("etcd", "control", "worker")
FLAVORS = ("flatcar", "ubuntu")


@dataclass(frozen=True)
class NodeInfo:
    name: str
    role: str  # "etcd" | "control" | "worker"
    ip: str | None  # None before the cloud has assigned it (stage-1 rendering)


@dataclass(frozen=True)
class RenderInput:
    cluster: str
    flavor: str  # "flatcar" | "ubuntu"
    nodes: tuple[NodeInfo, ...]
    kubernetes_version: str  # e.g. "1.31.4"
    pod_cidr: str
    service_cidr: str
    flannel_backend: str  # "vxlan"
    ssh_authorized_keys: tuple[str, ...]
    artifacts: ArtifactSet
    pki: ClusterPKI
    api_endpoint: str | None  # control node IP:6443, None until known

    def node(self, name: str) -> NodeInfo:
        for n in self.nodes:
            if n.name == name:
                return n
        raise BadInput(f"nodes: no node named {name!r} in cluster {self.cluster!r}")

    def by_role(self, role: str) -> tuple[NodeInfo, ...]:
        return tuple(n for n in self.nodes if n.role == role)
