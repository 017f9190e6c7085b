"""The machine roles, as one table: what each role is, opens, renders and is created with.

Adding a role is a row in ROLES (plus its templates, if it renders something new). Code
elsewhere looks a role up here instead of testing its name: the spec keys, the creation
order, the anti-affinity group, the default offering, the security-group rules
(security_groups/rulesets.py) and the ports the rendered units listen on
(cloudconfig_templates/parts.py) all come from this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from stackfleet.errors import BadInput

# The role names as machines carry them (tags, `<cluster>-<role>-<n>` names). Code that
# means "the etcd members" or "the control node" uses these, never a literal.
ETCD = "etcd"
CONTROL = "control"
WORKER = "worker"


@dataclass(frozen=True)
class Port:
    """A port (or range) a node listens on. `start`/`end` are inclusive."""

    name: str
    protocol: str  # "tcp" | "udp"
    start: int
    end: int

    @property
    def number(self) -> int:
        """The single port of a one-port entry (what a listener or a URL is given)."""
        if self.start != self.end:
            raise ValueError(f"{self.name} is a range ({self.start}-{self.end}), not one port")
        return self.start


SSH = Port("ssh", "tcp", 22, 22)
ETCD_CLIENT = Port("etcd-client", "tcp", 2379, 2379)
ETCD_PEER = Port("etcd-peer", "tcp", 2380, 2380)
KUBE_API = Port("kube-apiserver", "tcp", 6443, 6443)
KUBELET = Port("kubelet", "tcp", 10250, 10250)
# flannel vxlan, the only backend: host-gw is refused by the spec (security-group zones
# drop packets sourced from pod addresses, whatever the rules admit).
FLANNEL_VXLAN = Port("flannel-vxlan", "udp", 8472, 8472)
NODEPORTS = Port("nodeports", "tcp", 30000, 32767)
# Plain-HTTP /health and /metrics for local probes: bound to 127.0.0.1, opened to no one.
ETCD_METRICS_LOOPBACK = Port("etcd-metrics", "tcp", 2381, 2381)


@dataclass(frozen=True)
class Opening:
    """A port a role's group admits, and from whom: the cluster's own roles (group to
    group, only those present) and the CIDRs of one `access:` list of the spec."""

    port: Port
    from_roles: tuple[str, ...] = ()
    from_access: str | None = None  # "ssh_cidrs" | "api_cidrs" | "nodeport_cidrs"


@dataclass(frozen=True)
class Role:
    name: str  # as machines carry it: etcd, control, worker
    spec_key: str  # the key under `roles:` in the spec (`workers:` holds worker machines)
    noun: str  # how messages name one machine of it
    default_offering: str
    # Spread over hosts in an anti-affinity group (when there is more than one machine):
    # a quorum must not die with one hypervisor.
    spread: bool
    etcd_member: bool  # runs an etcd member (and holds a member certificate)
    kube_node: bool  # runs kubelet and flannel: a Kubernetes node
    kubeadm: str | None  # "init" (the control plane) | "join" | None: not a Kubernetes node
    opens: tuple[Opening, ...]


_ALL = (ETCD, CONTROL, WORKER)
_KUBE = (CONTROL, WORKER)

# In creation order: etcd first (the others need its IPs), then control, then workers.
ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role(
            name=ETCD,
            spec_key="etcd",
            noun="etcd node",
            default_offering="Medium",
            spread=True,
            etcd_member=True,
            kube_node=False,
            kubeadm=None,
            opens=(
                Opening(SSH, from_access="ssh_cidrs"),
                Opening(ETCD_CLIENT, from_roles=_ALL),
                Opening(ETCD_PEER, from_roles=(ETCD,)),
            ),
        ),
        Role(
            name=CONTROL,
            spec_key="control",
            noun="control node",
            default_offering="Medium",
            spread=False,
            etcd_member=False,
            kube_node=True,
            kubeadm="init",
            opens=(
                Opening(SSH, from_access="ssh_cidrs"),
                Opening(KUBE_API, from_roles=_KUBE, from_access="api_cidrs"),
                Opening(KUBELET, from_roles=_KUBE),
                Opening(FLANNEL_VXLAN, from_roles=_KUBE),
            ),
        ),
        Role(
            name=WORKER,
            spec_key="workers",
            noun="worker",
            default_offering="Large",
            spread=False,
            etcd_member=False,
            kube_node=True,
            kubeadm="join",
            opens=(
                Opening(SSH, from_access="ssh_cidrs"),
                Opening(KUBELET, from_roles=_KUBE),
                Opening(FLANNEL_VXLAN, from_roles=_KUBE),
                Opening(NODEPORTS, from_access="nodeport_cidrs"),
            ),
        ),
    )
}


def role(name: str) -> Role:
    """The role called `name`; an unknown one is an error, never a default."""
    try:
        return ROLES[name]
    except KeyError:
        raise BadInput(f"role: {name!r} is not one of {', '.join(ROLES)}") from None


def by_spec_key() -> dict[str, Role]:
    """`roles:` key in the spec -> role, in creation order."""
    return {r.spec_key: r for r in ROLES.values()}


def order(name: str) -> int:
    """Creation (and listing) rank: etcd before control before workers; unknown last."""
    names = list(ROLES)
    return names.index(name) if name in names else len(names)


def kube_roles() -> tuple[str, ...]:
    """The roles whose nodes run kubelet and flannel (and hold flannel's etcd client)."""
    return tuple(name for name, r in ROLES.items() if r.kube_node)


def ports() -> tuple[Port, ...]:
    """Every port some role opens, once each, in table order."""
    seen: dict[str, Port] = {}
    for r in ROLES.values():
        for o in r.opens:
            seen.setdefault(o.port.name, o.port)
    return tuple(seen.values())
