"""Plain data the renderer takes: no cloud, no files, no environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from stackfleet.artifacts import ArtifactSet
from stackfleet.errors import BadInput
from stackfleet.etcd_timing import EtcdTiming
from stackfleet.pki import ClusterPKI


@dataclass(frozen=True)
class NodeInfo:
    name: str
    role: str  # a key of stackfleet.roles.ROLES
    ip: str | None  # None before the cloud has assigned it (stage-1 rendering)


@dataclass(frozen=True)
class RenderInput:
    cluster: str
    flavor: str  # a key of stackfleet.flavors.FLAVORS
    nodes: tuple[NodeInfo, ...]
    kubernetes_version: str  # e.g. "1.31.4"
    pod_cidr: str
    service_cidr: str
    flannel_backend: str  # "vxlan"
    ssh_authorized_keys: tuple[str, ...]
    artifacts: ArtifactSet
    pki: ClusterPKI
    api_endpoint: str | None  # control node IP:6443, None until known
    # "new" while etcd forms its first cluster; "existing" for a member that joins a
    # formed one (after `member add`): `nodes` then lists the current members plus it.
    etcd_initial_state: str = "new"
    # The token workers join with when it is not the one `kubeadm init` made: a fresh one
    # for workers added to a running cluster (provisioners/k8s_admin.py). Never in a repr.
    join_token: str = field(default="", repr=False)
    # The spec's `etcd:`, the same on every member.
    etcd_timing: EtcdTiming = field(default_factory=EtcdTiming)

    def node(self, name: str) -> NodeInfo:
        for n in self.nodes:
            if n.name == name:
                return n
        raise BadInput(f"nodes: no node named {name!r} in cluster {self.cluster!r}")

    def by_role(self, role: str) -> tuple[NodeInfo, ...]:
        return tuple(n for n in self.nodes if n.role == role)
