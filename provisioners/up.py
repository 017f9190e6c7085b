"""`up`: execute a plan, in an order that a kill at any point leaves resumable.

Every resource is named before it is created and found again by name or tag, so a
re-run after an interruption adopts what exists instead of creating it twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stackfleet import state
from stackfleet.errors import Conflict, LimitExceeded, WaitTimeout
from stackfleet.provisioners import bootstrap, k8s_admin, naming
from stackfleet.provisioners.base import (
    BOOTSTRAP_TAG,
    CLUSTER_TAG,
    EXPIRES_TAG,
    Machine,
    MachineRequest,
    MachineState,
    Provisioner,
)
from stackfleet.provisioners.create import create_machines
from stackfleet.provisioners.events import Events
from stackfleet.provisioners.lock import cluster_lock
from stackfleet.provisioners.plan import (
    SETTING_TAGS,
    Plan,
    cluster_tags,
    diff,
    local_ca_tags,
    machine_tag_changes,
    machine_tags,
    make_plan,
)
from stackfleet.roles import ETCD, ROLES
from stackfleet.spec import Spec


@dataclass(frozen=True)
class Drain:
    """How `up` retires workers it destroys (k8s_admin): drained within `deadline_s` on
    the control node, unless `skip`."""

    skip: bool = False
    deadline_s: float = k8s_admin.DEFAULT_DRAIN_DEADLINE_S


@dataclass
class UpResult:
    plan: Plan
    machines: list[Machine]
    changed: bool


def up(
    spec: Spec,
    prov: Provisioner,
    events: Events,
    approve: Callable[[Plan], None] | None = None,
    drain: Drain | None = None,
) -> UpResult:
    """`approve` is shown a plan that destroys machines before anything changes; it
    raises to refuse (the CLI asks, or refuses without --yes)."""
    events.phase("reading the cloud")
    operator = state.operator_ssh_key(spec.name)
    plan = _settled_plan(spec, prov, events, operator.public_openssh)
    preflight(spec, prov, plan, operator.public_openssh, events)
    if plan.is_empty():
        return UpResult(plan, plan.live.machines, changed=False)
    approved = {m.id for m in plan.destroys()}
    if approved and approve is not None:
        approve(plan)

    with cluster_lock(prov, spec.name, max_age_s=spec.timeout_s):
        # Another run may have changed the cluster before we got the lock: look again.
        fingerprint = prov.key_fingerprint(operator.public_openssh)
        live = prov.live_state(spec.name)
        plan = diff(
            spec,
            plan.resolved,
            live,
            fingerprint,
            local_ca_tags(spec.name),
            plan.etcd_view,
            prov.group_tags,
        )
        plan.check()
        if plan.is_empty():
            return UpResult(plan, plan.live.machines, changed=False)
        if approve is not None and not {m.id for m in plan.destroys()} <= approved:
            raise Conflict(
                f"cluster {spec.name} changed while this run looked at it: more machines "
                "would be destroyed than were shown; nothing was changed: run again"
            )
        machines = _apply(spec, prov, plan, operator.public_openssh, events, drain or Drain())
    return UpResult(plan, machines, changed=True)


def preflight(
    spec: Spec, prov: Provisioner, plan: Plan, public_key: str, events: Events | None = None
) -> None:
    """Everything `up` refuses on before it changes anything; `plan` runs the same checks,
    so it fails exactly where `up` would (one line each)."""
    from stackfleet.artifacts import default_artifacts

    default_artifacts(spec.kubernetes_version, spec.artifacts_base_url, spec.artifact_pins)
    plan.check()
    if plan.machines_missing:
        _check_headroom(prov, len(plan.machines_missing) - len(plan.machines_extra))
    if plan.machines_missing or plan.machines_unfinished:
        if events is not None:
            events.phase("rendering every node's userdata to check its size")
        bootstrap.preflight(spec, plan.resolved.zone.userdata_limit, public_key, prov.userdata_rule)


# A run killed mid-way can leave operations in flight: a VM still starting or stopping
# would look finished (or untouched) to the plan. Wait for it to settle, as the cloud will
# (MachineState.transitional).


def _settled_plan(spec: Spec, prov: Provisioner, events: Events, public_key: str) -> Plan:
    deadline = time.monotonic() + spec.timeout_s
    while True:
        plan = make_plan(spec, prov, public_key, local_ca_tags(spec.name))
        busy = sorted(f"{m.name} ({m.state})" for m in plan.live.machines if m.state.transitional)
        if not busy:
            return plan
        if time.monotonic() > deadline:
            raise WaitTimeout(f"gave up after {spec.timeout_s:.0f} s waiting for {', '.join(busy)}")
        events.phase(f"waiting for an earlier run's jobs: {', '.join(busy)}")
        time.sleep(1.0)


def _check_headroom(prov: Provisioner, needed: int) -> None:
    headroom = prov.machine_headroom()
    if headroom is not None and needed > headroom:
        raise LimitExceeded(
            f"the account may create {headroom} more VM(s) but the cluster needs {needed}: "
            f"{needed - headroom} missing (raise the account's VM limit or lower the counts); "
            "nothing was created"
        )


def _apply(
    spec: Spec, prov: Provisioner, plan: Plan, key: str, events: Events, drain: Drain
) -> list[Machine]:
    # etcd VMs of a formed cluster come and go through membership steps, one at a time.
    by_steps = plan.etcd.handled
    extra = [m for m in plan.machines_extra if m.name not in by_steps]
    # Before any cloud change, so that a drain that cannot finish changes nothing.
    k8s_admin.drain_before_destroy(
        spec, plan.live.machines, extra, events, drain.deadline_s, drain.skip
    )
    missing = [(n, r) for n, r in plan.machines_missing if n not in by_steps]
    unfinished = [m for m in plan.machines_unfinished if m.name not in by_steps]
    join_token = ""
    joining = [r for _, r in missing] + [m.role for m in unfinished]
    if any(ROLES[r].kubeadm == "join" for r in joining):
        # The PKI's token lives 24 h: workers added later join with one made now.
        join_token = k8s_admin.fresh_join_token(spec, plan.live.machines, events) or ""
    key_name = naming.key_name(spec.name)
    if plan.key_missing or plan.key_replace:
        if plan.key_replace:
            # Registered from another state dir: replace it with the key we hold.
            prov.delete_ssh_key(key_name)
        events.phase("registering the SSH key")
        prov.import_ssh_key(key_name, key)
    for group in plan.groups_missing:
        role = naming.role_from_group_name(spec.name, group) or "unknown"
        events.phase(f"creating security group {group}")
        prov.create_group(group, f"stackfleet {spec.name}: {role}", cluster_tags(spec, role))
    live_group_tags = {g.id: g.tags for g in plan.live.groups}
    for group_id, (group, tags) in plan.groups_retag.items():
        events.phase(f"tagging security group {group} (its cluster and role tags)")
        had = live_group_tags.get(group_id, {})
        prov.tag_group(group_id, tags, replacing=[k for k in tags if had.get(k)])
    # The cluster's settings before any machine exists: a run killed later leaves them
    # recorded, and the next plan compares the spec with them. (The CA fingerprints are
    # recorded by the state store's guard around `up`, the expiry at the end.)
    settings = set(SETTING_TAGS.values())
    recorded = {k: v for k, v in plan.cluster_tags_missing.items() if k in settings}
    if recorded:
        prov.set_cluster_tags(spec.name, recorded)
    spread = naming.spread_group_name(spec.name)
    if plan.spread_missing:
        # First: its job gates the etcd deploys, and runs while the rules are sent.
        events.phase(f"creating anti-affinity group {spread}")
        prov.create_spread_group(spread)
    if not plan.rules.is_empty():
        # Not waited for: nothing needs them before the VMs boot; settle() checks them.
        events.phase("reconciling security-group rules")
        prov.change_rules(
            plan.rules.add, plan.rules.revoke, plan.rules.adopt, {CLUSTER_TAG: spec.name}
        )
    if extra:
        events.phase(f"destroying {len(extra)} VM(s) the spec no longer wants")
        prov.destroy_machines([m.id for m in extra])
    current = [m for m in plan.live.machines if m not in extra]
    expires = _expiry(spec, plan)
    if plan.etcd.steps:
        current = _change_etcd_members(spec, prov, plan, key, spread, current, expires, events)
    _repair_tags(spec, prov, current, expires, events)
    created = _create_missing(
        spec, prov, plan, missing, key, spread, current, expires, events, join_token
    )
    current = [m for m in current if m.name not in {c.name for c in created}] + created
    # Those the pipeline started with final userdata are done; the rest finish here.
    booted = [
        m
        for m in created
        if m.state == MachineState.RUNNING and plan.resolved.strategy == "allocate"
    ]
    unfinished += [m for m in created if m not in booted]
    if unfinished:
        events.phase(f"bootstrapping {len(unfinished)} node(s) ({plan.resolved.strategy})")
        current = bootstrap.finish(
            spec,
            prov,
            plan.resolved.strategy,
            unfinished,
            current,
            key,
            plan.resolved.zone.userdata_limit,
            events,
            join_token=join_token,
        )
    if plan.machines_stopped:
        events.phase(f"starting {len(plan.machines_stopped)} stopped VM(s)")
        started = {m.id: m for m in prov.start_machines([m.id for m in plan.machines_stopped])}
        current = [started.get(m.id, m) for m in current]
    if expires is not None and plan.live.tags.get(EXPIRES_TAG) != expires:
        prov.set_cluster_tags(spec.name, {EXPIRES_TAG: expires})
    events.phase("waiting for the last rule and tag changes")
    prov.settle()
    return current


def _expiry(spec: Spec, plan: Plan) -> str | None:
    """The cluster's expiry after this run: renewed when machines are added."""
    if not spec.ttl_seconds:
        return None
    current = plan.live.tags.get(EXPIRES_TAG)
    if current and not plan.machines_missing:
        return current
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + spec.ttl_seconds))


def _repair_tags(
    spec: Spec, prov: Provisioner, machines: list[Machine], expires: str | None, events: Events
) -> None:
    """Give existing machines every tag they must carry (see plan.machine_tag_changes):
    one call per set of tags and of keys whose old value goes (a renewed expiry)."""
    Batch = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]
    batches: dict[Batch, list[str]] = {}
    for m, wanted in machine_tag_changes(spec, machines, expires):
        replacing = tuple(sorted(k for k in wanted if m.tags.get(k)))
        batches.setdefault((tuple(sorted(wanted.items())), replacing), []).append(m.id)
    if batches:
        events.phase(f"tagging {sum(map(len, batches.values()))} VM(s)")
    for (pairs, replacing), ids in batches.items():
        prov.tag_machines(sorted(ids), dict(pairs), replacing=replacing)


def _create_missing(
    spec: Spec,
    prov: Provisioner,
    plan: Plan,
    missing: list[tuple[str, str]],
    key: str,
    spread: str,
    existing: list[Machine],
    expires: str | None,
    events: Events,
    join_token: str = "",
) -> list[Machine]:
    if not missing:
        return []
    strategy = plan.resolved.strategy
    requests = _machine_requests(spec, plan, missing, key, spread, expires)
    events.phase(f"deploying {len(requests)} VM(s)")
    if strategy != "allocate":
        return create_machines(prov, requests)
    limit = plan.resolved.zone.userdata_limit
    return create_machines(
        prov,
        requests,
        ready=bootstrap.allocate_hook(
            spec, existing, key, limit, join_token, rule=prov.userdata_rule
        ),
        written_tags={BOOTSTRAP_TAG: "done"},
    )


def _machine_requests(
    spec: Spec,
    plan: Plan,
    missing: list[tuple[str, str]],
    key: str,
    spread: str,
    expires: str | None,
    extra_tags: dict[str, str] | None = None,
) -> list[MachineRequest]:
    """Deploy requests with stage-1 userdata (final userdata follows, per strategy)."""
    strategy = plan.resolved.strategy
    # A role that spreads (Role.spread) goes in the anti-affinity group once it has two.
    spreads = {r.role for r in spec.roles if ROLES[r.role].spread and r.count > 1}
    disks = {r.role: r.disk_gb for r in spec.roles}
    stage1 = bootstrap.render_stage1(spec, missing, key)
    return [
        MachineRequest(
            name=name,
            role=role,
            zone_id=plan.resolved.zone.id,
            image_id=plan.resolved.images[role].id,
            size_id=plan.resolved.sizes[role].id,
            disk_gb=disks[role],
            group_names=(naming.group_name(spec.name, role),),
            key_name=naming.key_name(spec.name),
            userdata=stage1[name],
            spread_group=spread if role in spreads else None,
            # allocate: the IP exists before boot, so the first boot can be the final one.
            start=strategy != "allocate",
            tags={**machine_tags(spec, role, expires), **(extra_tags or {})},
        )
        for name, role in missing
    ]


def _change_etcd_members(
    spec: Spec,
    prov: Provisioner,
    plan: Plan,
    key: str,
    spread: str,
    current: list[Machine],
    expires: str | None,
    events: Events,
) -> list[Machine]:
    """Perform the plan's etcd membership steps on the cloud's VMs; returns `current`
    with the etcd VMs as they are after."""
    from stackfleet.provisioners.etcd_admin import EtcdAdmin, ssh_connect
    from stackfleet.provisioners.etcd_steps import run_steps

    etcd = [m for m in plan.live.machines if m.role == ETCD]
    others = [m for m in current if m.role != ETCD]
    side = _CloudMembers(spec, prov, plan, key, spread, others, expires, events)
    with EtcdAdmin(ssh_connect(spec)) as admin:
        members = run_steps(plan.etcd.steps, etcd, admin, side, events, spec.timeout_s)
    return members + others


class _CloudMembers:
    """etcd_steps.Machines on the cloud: VMs through the provisioner, final userdata by
    the plan's bootstrap strategy, clients updated over SSH."""

    def __init__(
        self,
        spec: Spec,
        prov: Provisioner,
        plan: Plan,
        key: str,
        spread: str,
        others: list[Machine],
        expires: str | None,
        events: Events,
    ) -> None:
        self.spec, self.prov, self.plan, self.key, self.spread = spec, prov, plan, key, spread
        self.others, self.expires, self.events = others, expires, events

    def create(self, name: str) -> Machine:
        from stackfleet.provisioners.etcd_membership import JOIN_TAG

        request = _machine_requests(
            self.spec, self.plan, [(name, ETCD)], self.key, self.spread, self.expires,
            {JOIN_TAG: "existing"},
        )  # fmt: skip
        self.events.phase(f"deploying etcd VM {name} (joins through member add)")
        made = create_machines(self.prov, request)[0]
        if not made.private_ip:  # a zone that assigns IPs at start
            made = self.prov.start_machines([made.id])[0]
        return made

    def boot(self, machine: Machine, members: Sequence[Machine]) -> Machine:
        machines = bootstrap.finish(
            self.spec,
            self.prov,
            self.plan.resolved.strategy,
            [machine],
            [*members, *self.others],
            self.key,
            self.plan.resolved.zone.userdata_limit,
            self.events,
            etcd_state="existing",
        )
        return next(m for m in machines if m.id == machine.id)

    def destroy(self, machine: Machine) -> None:
        self.events.phase(f"destroying etcd VM {machine.name}")
        self.prov.destroy_machines([machine.id])

    def update_clients(self, members: Sequence[Machine]) -> None:
        from stackfleet.provisioners.etcd_admin import ssh_connect
        from stackfleet.provisioners.etcd_clients import update_clients

        kube = [m for m in self.others if m.state == MachineState.RUNNING]
        update_clients(self.spec, [*members, *kube], ssh_connect(self.spec), self.key, self.events)
