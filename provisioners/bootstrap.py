"""Turn created machines into cluster members: render final userdata with known IPs.

Strategies (DESIGN.md, "Bootstrap: the IP problem"):
- allocate: the IP is known while the VM is still stopped; write final userdata, start.
- reboot: the IP is chosen at first start; boot with stage-1 userdata, stop, write the
  final userdata, start again. Clouds keep the IP across stop/start; if it changed
  anyway, render again and repeat.
- ssh: boot with stage-1 userdata, then push the final documents over SFTP to hosts whose
  SSH host keys we generated (so they are pinned, never trusted on first use).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stackfleet import roles, state
from stackfleet.errors import CloudError, LimitExceeded
from stackfleet.provisioners.base import (
    BOOTSTRAP_TAG,
    Machine,
    MachineState,
    Provisioner,
    ReadyHook,
    UserdataRule,
)
from stackfleet.provisioners.events import Events
from stackfleet.spec import Spec

if TYPE_CHECKING:
    from stackfleet.cloudconfig_templates.model import RenderInput

# An IP as long as an IPv4 address gets: sizes measured with it are upper bounds.
PLACEHOLDER_IP = "255.255.255.254"
MAX_IP_CHANGES = 3


@dataclass(frozen=True)
class NodeAddress:
    name: str
    role: str
    ip: str | None


def render_input(
    spec: Spec,
    nodes: Sequence[NodeAddress],
    operator_public_key: str,
    pki_dir: Path | None = None,
    etcd_state: str = "new",
    join_token: str = "",
) -> RenderInput:
    """Everything the templates need: PKI for these nodes (made or reused) and artifacts.
    `etcd_state`: "existing" for a member joining a formed cluster (`nodes` then holds
    the current members and it)."""
    from stackfleet.artifacts import default_artifacts
    from stackfleet.cloudconfig_templates.model import NodeInfo, RenderInput
    from stackfleet.pki import load_or_create

    # Spec order (etcd-1 before etcd-2), whatever order the cloud listed them in: roles
    # such as "the first etcd member writes flannel's config" must not move between runs.
    infos = tuple(NodeInfo(n.name, n.role, n.ip) for n in sorted(nodes, key=_spec_order))
    pki = load_or_create(pki_dir or state.cluster_dir(spec.name) / "pki", spec.name, infos)
    control = next((n for n in infos if n.role == roles.CONTROL), None)
    return RenderInput(
        cluster=spec.name,
        flavor=spec.os,
        nodes=infos,
        kubernetes_version=spec.kubernetes_version,
        pod_cidr=spec.pod_cidr,
        service_cidr=spec.service_cidr,
        flannel_backend=spec.flannel_backend,
        ssh_authorized_keys=(operator_public_key,),
        artifacts=default_artifacts(
            spec.kubernetes_version, spec.artifacts_base_url, spec.artifact_pins
        ),
        pki=pki,
        api_endpoint=f"{control.ip}:{roles.KUBE_API.number}" if control and control.ip else None,
        etcd_initial_state=etcd_state,
        join_token=join_token,
        etcd_timing=spec.etcd_timing,
    )


def _spec_order(node: NodeAddress) -> tuple[int, int, str]:
    rank = roles.order(node.role)  # etcd, control, worker
    number = node.name.rsplit("-", 1)[-1]
    return rank, int(number) if number.isdigit() else 0, node.name


def render_final(
    spec: Spec,
    nodes: Sequence[NodeAddress],
    names: Sequence[str],
    key: str,
    pki_dir: Path | None = None,
    etcd_state: str = "new",
    join_token: str = "",
) -> dict[str, str]:
    from stackfleet.cloudconfig_templates.render import render_node

    inp = render_input(spec, nodes, key, pki_dir, etcd_state, join_token)
    return {name: render_node(inp, name) for name in names}


def render_stage1(spec: Spec, names: Sequence[tuple[str, str]], key: str) -> dict[str, str]:
    """First-boot userdata (users, keys, host keys, hostname): needs no IP."""
    from stackfleet.cloudconfig_templates.render import render_stage1 as stage1

    inp = render_input(spec, [NodeAddress(n, r, None) for n, r in names], key)
    return {name: stage1(inp, name) for name, _ in names}


def check_sizes(docs: dict[str, str], limit: int, rule: UserdataRule) -> None:
    """Measured as the cloud measures (the provider's rule)."""
    over = rule.check(docs, limit)
    if over:
        name, size = max(over.items(), key=lambda kv: kv[1])
        raise LimitExceeded(
            f"userdata of {name} is {size} {rule.unit}, over cloud.userdata_limit ({limit}) "
            f"({len(over)} node(s) over); nothing was created"
        )


def preflight(spec: Spec, limit: int, key: str, rule: UserdataRule) -> None:
    """Render every node with placeholder IPs and check sizes before creating anything.

    A throw-away PKI serves the measurement: certificates are only ever issued, and
    kept, for real IPs.
    """
    nodes = [NodeAddress(n, r, PLACEHOLDER_IP) for n, r in spec.machine_names()]
    with tempfile.TemporaryDirectory(prefix="stackfleet-preflight-") as scratch:
        docs = render_final(spec, nodes, [n.name for n in nodes], key, Path(scratch))
    check_sizes(docs, limit, rule)


def allocate_hook(
    spec: Spec,
    existing: Sequence[Machine],
    key: str,
    limit: int,
    join_token: str = "",
    *,
    rule: UserdataRule,
) -> ReadyHook:
    """For `allocate`: as VMs are created (stopped, IP known), hand back final userdata
    once every etcd and control IP is known, so each VM boots once, as early as it can.

    The provisioner tags a VM bootstrapped right after writing its final userdata, before
    it starts: a kill in between leaves it stopped and bootstrapped, and the next `up`
    starts it; a kill before the write leaves it unmarked, and it is written again.
    A document names only etcd and control IPs (always known here) and its own node's:
    /etc/hosts lists no peers (see cloudconfig_templates.parts.hosts_file), so what a
    node gets does not depend on which deploy batch it was in.
    """
    known = {m.name: m for m in existing}
    needed = [name for name, role in spec.machine_names() if role in (roles.ETCD, roles.CONTROL)]

    def ready(fresh: Sequence[Machine]) -> dict[str, str]:
        known.update({m.name: m for m in fresh})
        if any(known.get(n) is None or not known[n].private_ip for n in needed):
            return {}
        nodes = [
            NodeAddress(name, role, known[name].private_ip if name in known else None)
            for name, role in spec.machine_names()
        ]
        docs = render_final(spec, nodes, [m.name for m in fresh], key, join_token=join_token)
        check_sizes(docs, limit, rule)
        return {m.id: docs[m.name] for m in fresh}

    return ready


def finish(
    spec: Spec,
    prov: Provisioner,
    strategy: str,
    unfinished: Sequence[Machine],
    all_machines: Sequence[Machine],
    key: str,
    limit: int,
    events: Events,
    etcd_state: str = "new",
    join_token: str = "",
) -> list[Machine]:
    """Bring `unfinished` machines to Running with final userdata; returns all machines."""
    machines = {m.id: m for m in all_machines}
    todo = {m.id for m in unfinished}
    for _ in range(MAX_IP_CHANGES):
        no_ip = [m.id for m in machines.values() if not m.private_ip]
        if no_ip:
            events.phase(f"starting {len(no_ip)} VM(s) so the zone assigns their IPs")
            machines.update({m.id: m for m in prov.start_machines(no_ip)})
        nodes = [NodeAddress(m.name, m.role, m.private_ip) for m in machines.values()]
        targets = [machines[i] for i in sorted(todo)]
        names = [m.name for m in targets]
        docs = render_final(spec, nodes, names, key, etcd_state=etcd_state, join_token=join_token)
        check_sizes(docs, limit, prov.userdata_rule)
        rendered_ips = {m.id: m.private_ip for m in machines.values()}
        if strategy == "ssh":
            from stackfleet.provisioners.ssh_push import push_all

            events.phase(f"pushing final cloud-config to {len(targets)} node(s) over SSH")
            push_all(spec, targets, docs)
        else:
            running = [m.id for m in targets if m.state == MachineState.RUNNING]
            if strategy == "allocate":
                # Started only ever after their final userdata was written: already done.
                todo -= set(running)
                targets = [m for m in targets if m.id not in running]
                running = []
            if running:
                events.phase(f"stopping {len(running)} VM(s) to give them their final userdata")
                machines.update({m.id: m for m in prov.stop_machines(running)})
            if targets:
                events.phase(f"writing final userdata to {len(targets)} VM(s) and starting them")
                prov.set_userdata({m.id: docs[m.name] for m in targets})
                machines.update({m.id: m for m in prov.start_machines([m.id for m in targets])})
        moved = [m for m in machines.values() if m.private_ip != rendered_ips.get(m.id)]
        if not moved:
            # Not those marked already (nodes re-rendered after a peer's IP changed): a
            # tag is written once.
            marked = {i for i, m in machines.items() if m.tags.get(BOOTSTRAP_TAG) == "done"}
            done = sorted((todo | {m.id for m in unfinished}) - marked)
            if done:
                prov.tag_machines(done, {BOOTSTRAP_TAG: "done"})
            return list(machines.values())
        # A peer's IP changed across stop/start: every document naming it is stale.
        events.phase(f"IP changed on {', '.join(m.name for m in moved)}: rendering again")
        todo = {m.id for m in machines.values()}
        machines = {m.id: m for m in machines.values()}
    raise CloudError(
        f"IPs kept changing across {MAX_IP_CHANGES} restarts; the zone does not keep IPs"
    )
