"""The rules each role's group needs: DESIGN.md's port table as data.

Sources are the cluster's own groups wherever the table says "cluster" or a role, so
nothing is opened to a CIDR unless the spec's access lists name it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stackfleet.security_groups.rules import Rule

KUBE_NODES = ("control", "worker")  # roles that run a kubelet and flannel


@dataclass(frozen=True)
class Access:
    ssh_cidrs: tuple[str, ...] = ()
    api_cidrs: tuple[str, ...] = ()
    nodeport_cidrs: tuple[str, ...] = ()


def desired_rules(
    roles: Sequence[str], access: Access, group_name: Callable[[str], str]
) -> dict[str, set[Rule]]:
    """Group name -> the set of rules it must hold, for the roles present."""
    present = [r for r in ("etcd", "control", "worker") if r in roles]
    nodes = [r for r in KUBE_NODES if r in present]
    rules: dict[str, set[Rule]] = {group_name(r): set() for r in present}

    def allow(
        to: Sequence[str],
        proto: str,
        ports: tuple[int, int],
        *,
        cidrs: Sequence[str] = (),
        groups: Sequence[str] = (),
    ) -> None:
        for target in to:
            bucket = rules[group_name(target)]
            bucket.update(Rule(proto, ports[0], ports[1], cidr=c) for c in cidrs)
            bucket.update(
                Rule(proto, ports[0], ports[1], source_group=group_name(g)) for g in groups
            )

    allow(present, "tcp", (22, 22), cidrs=access.ssh_cidrs)
    allow(["etcd"], "tcp", (2379, 2379), groups=present)
    allow(["etcd"], "tcp", (2380, 2380), groups=["etcd"])
    if "control" in present:
        allow(["control"], "tcp", (6443, 6443), cidrs=access.api_cidrs, groups=nodes)
    allow(nodes, "tcp", (10250, 10250), groups=nodes)
    # flannel vxlan, the only backend: host-gw is refused by the spec (security-group
    # zones drop packets sourced from pod addresses, whatever the rules admit).
    allow(nodes, "udp", (8472, 8472), groups=nodes)
    if "worker" in present:
        allow(["worker"], "tcp", (30000, 32767), cidrs=access.nodeport_cidrs)
    return rules
