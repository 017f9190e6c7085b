"""Desired state from the spec, diffed with the live state: what `up` has to do.

Pure once the lookups are done: `make_plan` reads the cloud (names -> ids, live state)
and returns data; `up` executes it and `plan` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from stackfleet.errors import BadInput
from stackfleet.etcd_timing import DEFAULT_ELECTION_TIMEOUT_MS, DEFAULT_HEARTBEAT_MS
from stackfleet.provisioners import naming
from stackfleet.provisioners.base import (
    BOOTSTRAP_TAG,
    CLUSTER_TAG,
    EXPIRES_TAG,
    ROLE_TAG,
    Image,
    LiveState,
    Machine,
    MachineState,
    Provisioner,
    Size,
    Zone,
)
from stackfleet.provisioners.etcd_membership import EtcdView, Membership, plan_membership
from stackfleet.roles import ETCD, ROLES
from stackfleet.security_groups.reconcile import RuleChanges, diff_rules
from stackfleet.security_groups.rules import Rule
from stackfleet.security_groups.rulesets import Access, desired_rules
from stackfleet.spec import Spec
from stackfleet.statestore import plan_refusals as pki_refusals

# Cluster-wide settings a running cluster cannot change (yet): recorded as tags on the
# cluster's etcd security group at `up`, compared with the spec on every plan. Spec field ->
# tag. The CA fingerprints (stackfleet:ca-*) sit there too, set by the state store.
SETTING_TAGS = {
    "kubernetes.version": "stackfleet:kubernetes-version",
    "os": "stackfleet:os",
    "network.pod_cidr": "stackfleet:pod-cidr",
    "network.service_cidr": "stackfleet:service-cidr",
    "network.flannel_backend": "stackfleet:flannel-backend",
    "etcd.heartbeat_ms": "stackfleet:etcd-heartbeat-ms",
    "etcd.election_timeout_ms": "stackfleet:etcd-election-timeout-ms",
}
# Settings recorded only when they differ from these: a cluster without the tag runs this
# value (clusters made before it was a setting ran etcd's defaults too).
SETTING_UNRECORDED = {
    "etcd.heartbeat_ms": str(DEFAULT_HEARTBEAT_MS),
    "etcd.election_timeout_ms": str(DEFAULT_ELECTION_TIMEOUT_MS),
}
_ETCD_TIMING_HOW = (
    "etcd reads its timing when a member starts, and members should agree: changing it on "
    "running members is not supported yet"
)
# How to get there, per refused setting.
_SETTING_HOW = {
    "kubernetes.version": "upgrades are not supported yet",
    "os": "changing a running cluster's OS is not supported yet",
    "network.pod_cidr": "a running cluster's pod network cannot change",
    "network.service_cidr": "a running cluster's service network cannot change",
    "network.flannel_backend": "changing a running cluster's flannel backend is not supported yet",
    "etcd.heartbeat_ms": _ETCD_TIMING_HOW,
    "etcd.election_timeout_ms": _ETCD_TIMING_HOW,
}


@dataclass(frozen=True)
class Action:
    verb: str  # create | delete | replace | change | tag | bootstrap | start | member-add | ...
    kind: str  # machine | group | rule | ssh-key | spread-group | cluster | etcd-member
    name: str
    detail: str = ""


@dataclass(frozen=True)
class Resolved:
    zone: Zone
    images: dict[str, Image]
    sizes: dict[str, Size]
    strategy: str  # allocate | reboot | ssh


@dataclass
class Plan:
    spec: Spec
    resolved: Resolved
    live: LiveState
    key_missing: bool
    groups_missing: list[str]
    rules: RuleChanges
    spread_missing: bool
    machines_missing: list[tuple[str, str]]  # (name, role)
    machines_extra: list[Machine]
    machines_unfinished: list[Machine]  # exist, not yet booted with final userdata
    machines_stopped: list[Machine]  # finished, but not running
    # Existing machines missing tags they must carry (or carrying a wrong value): the tags.
    machines_retag: list[tuple[Machine, dict[str, str]]] = field(default_factory=list)
    desired_rules: dict[str, set[Rule]] = field(default_factory=dict)
    # Registered, but with another key than the one this run logs in with: replaced.
    key_replace: bool = False
    # Existing security groups missing their own tags (cluster, role): group id -> (name, tags).
    groups_retag: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    # Cluster tags (settings, CA fingerprints, expiry) the cloud lacks: "" = made by this run.
    cluster_tags_missing: dict[str, str] = field(default_factory=dict)
    # Spec changes the running cluster cannot take, each one line that says how to get there.
    refused: list[str] = field(default_factory=list)
    # etcd member-add/remove steps, in order (a formed cluster changes through etcd's API),
    # and what etcd said when asked (None: it need not be asked).
    etcd: Membership = field(default_factory=Membership)
    etcd_view: EtcdView | None = None

    def actions(self) -> list[Action]:
        acts = []
        key = naming.key_name(self.spec.name)
        if self.key_missing:
            acts.append(Action("create", "ssh-key", key))
        elif self.key_replace:
            acts.append(Action("replace", "ssh-key", key, "registered with another public key"))
        acts += [Action("create", "group", g) for g in self.groups_missing]
        acts += [
            Action("tag", "group", name, ", ".join(f"{k}={v}" for k, v in tags.items()))
            for name, tags in self.groups_retag.values()
        ]
        for group, rules in self.rules.add.items():
            acts += [Action("create", "rule", group, r.describe()) for r in rules]
        acts += [Action("delete", "rule", rid) for rid in self.rules.revoke]
        acts += [Action("change", "rule", rid, "mark as managed") for rid in self.rules.adopt]
        if self.spread_missing:
            acts.append(Action("create", "spread-group", naming.spread_group_name(self.spec.name)))
        acts += [Action("delete", "machine", m.name, m.state) for m in self.machines_extra]
        acts += [
            Action("create", "machine", name, f"{role}, {self.resolved.sizes[role].name}")
            for name, role in self.machines_missing
        ]
        acts += [Action(s.verb, "etcd-member", s.name, s.why) for s in self.etcd.steps]
        acts += [
            Action("tag", "machine", m.name, ", ".join(f"{k}={v or '(new)'}" for k, v in t.items()))
            for m, t in self.machines_retag
        ]
        acts += [
            Action("bootstrap", "machine", m.name, self.resolved.strategy)
            for m in self.machines_unfinished
        ]
        acts += [Action("start", "machine", m.name, m.state) for m in self.machines_stopped]
        if self.cluster_tags_missing:
            detail = ", ".join(f"{k}={v or '(new)'}" for k, v in self.cluster_tags_missing.items())
            acts.append(Action("tag", "cluster", self.spec.name, detail))
        return acts

    def destroys(self) -> list[Machine]:
        """The machines this plan deletes (or replaces): `up` asks before touching them."""
        return list(self.machines_extra)

    def check(self) -> None:
        """Raise what `up` would refuse on before changing anything (one line)."""
        if self.refused:
            raise BadInput("; ".join(self.refused))

    def is_empty(self) -> bool:
        return not self.actions()


def choose_strategy(spec: Spec, zone: Zone) -> str:
    if spec.bootstrap != "auto":
        return spec.bootstrap
    return "allocate" if zone.ip_known_at_create else "reboot"


def resolve(spec: Spec, prov: Provisioner) -> Resolved:
    # Clouds do not tell users their userdata limit: the spec's value is the limit.
    zone = replace(prov.find_zone(spec.zone), userdata_limit=spec.userdata_limit)
    images: dict[str, Image] = {}
    sizes: dict[str, Size] = {}
    for r in spec.roles:
        key = ROLES[r.role].spec_key
        images[r.role] = prov.find_image(zone, r.template, field=f"roles.{key}.template")
        sizes[r.role] = prov.find_size(zone, r.offering, field=f"roles.{key}.offering")
    return Resolved(zone, images, sizes, choose_strategy(spec, zone))


def cluster_tags(spec: Spec, role: str) -> dict[str, str]:
    return {CLUSTER_TAG: spec.name, ROLE_TAG: role}


def machine_tags(spec: Spec, role: str, expires: str | None) -> dict[str, str]:
    """Every tag a machine must carry: cluster and role, and the expiry if the spec has a
    ttl ("" while the cluster has none yet: this run sets it)."""
    tags = cluster_tags(spec, role)
    if spec.ttl_seconds:
        tags[EXPIRES_TAG] = expires or ""
    return tags


def machine_tag_changes(
    spec: Spec, machines: list[Machine], expires: str | None
) -> list[tuple[Machine, dict[str, str]]]:
    """The tags each machine lacks or carries with another value.

    Tags are written after a deploy, in a call of their own: a run killed in between (or
    a tag call that failed) leaves a machine that the next run adopts by name, so every
    run compares every machine's tags with what it must carry, and repairs them."""
    roles = dict(spec.machine_names())
    changes = []
    for m in machines:
        if m.name not in roles or m.state.broken:
            continue
        want = machine_tags(spec, roles[m.name], expires)
        wrong = {k: v for k, v in want.items() if m.tags.get(k) != v or not v}
        if wrong:
            changes.append((m, wrong))
    return changes


def _groups_retag(spec: Spec, live: LiveState) -> dict[str, tuple[str, dict[str, str]]]:
    """The cluster's groups that lack their own tags: a run killed between creating a
    group and tagging it (two calls) leaves it bare, and nothing else would tag it."""
    out = {}
    for group in live.groups:
        role = naming.role_from_group_name(spec.name, group.name)
        if role is None:
            continue
        want = cluster_tags(spec, role)
        lacking = {k: v for k, v in want.items() if group.tags.get(k) != v}
        if lacking:
            out[group.id] = (group.name, lacking)
    return out


def wanted_rules(spec: Spec) -> dict[str, set[Rule]]:
    access = Access(spec.ssh_cidrs, spec.api_cidrs, spec.nodeport_cidrs)
    roles = [r.role for r in spec.roles]
    return desired_rules(roles, access, lambda role: naming.group_name(spec.name, role))


def setting_values(spec: Spec) -> dict[str, str]:
    """Spec field -> value, for the settings in SETTING_TAGS."""
    return {
        "kubernetes.version": spec.kubernetes_version.removeprefix("v"),
        "os": spec.os,
        "network.pod_cidr": spec.pod_cidr,
        "network.service_cidr": spec.service_cidr,
        "network.flannel_backend": spec.flannel_backend,
        "etcd.heartbeat_ms": str(spec.etcd_timing.heartbeat_ms),
        "etcd.election_timeout_ms": str(spec.etcd_timing.election_timeout_ms),
    }


def setting_tags(spec: Spec) -> dict[str, str]:
    return {
        SETTING_TAGS[k]: v
        for k, v in setting_values(spec).items()
        if SETTING_UNRECORDED.get(k) != v
    }


def local_ca_tags(cluster: str) -> dict[str, str]:
    """The CA fingerprint tags `up` records (statestore.guard_up): those of the local PKI,
    "" for a CA this run will make."""
    from stackfleet.statestore import CA_TAGS, ca_fingerprints, local_files

    have = ca_fingerprints(local_files(cluster))
    return {tag: have.get(tag, "") for tag in CA_TAGS.values()}


def refusals(spec: Spec, resolved: Resolved, live: LiveState) -> list[str]:
    """Spec changes the running cluster cannot take: the cluster-wide settings recorded as
    tags (a cluster without them is accepted, and tagged), then offering and template (on
    the VMs)."""
    out = pki_refusals(spec.name, spec.state, live)  # one PKI per cluster (statestore)
    running = [m for m in live.machines if not m.state.broken]
    if running:
        for field_name, value in setting_values(spec).items():
            recorded = live.tags.get(SETTING_TAGS[field_name]) or SETTING_UNRECORDED.get(field_name)
            if recorded and recorded != value:
                out.append(
                    f"{field_name}: {recorded} -> {value}: {_SETTING_HOW[field_name]}; keep "
                    f"{recorded} (or make a new cluster with `down` and `up`)"
                )
    wanted = dict(spec.machine_names())
    kept = [m for m in live.machines if m.name in wanted and not m.state.broken]
    for r in spec.roles:
        key = ROLES[r.role].spec_key
        mine = [m for m in kept if wanted[m.name] == r.role]
        noun = ROLES[r.role].noun
        for what, want, have_id, have_name in (
            ("offering", resolved.sizes[r.role], "offering_id", "offering"),
            ("template", resolved.images[r.role], "template_id", "template"),
        ):
            differ = [m for m in mine if getattr(m, have_id) and getattr(m, have_id) != want.id]
            if not differ:
                continue
            was = sorted({getattr(m, have_name) or getattr(m, have_id) for m in differ})
            out.append(
                f"roles.{key}.{what}: {', '.join(was)} -> {want.name} on {len(differ)} "
                f"{noun}(s) ({', '.join(sorted(m.name for m in differ))}): changing a "
                f"machine's {what} is not supported yet; scale roles.{key}.count to 0 and "
                f"back, or keep {', '.join(was)}"
            )
    return out


def make_plan(
    spec: Spec,
    prov: Provisioner,
    public_key: str | None = None,
    ca_tags: dict[str, str] | None = None,
) -> Plan:
    """`public_key`: the operator key `up` registers (None: this machine holds none, so
    `up` makes a new one). `ca_tags`: the CA fingerprint tags `up` records."""
    resolved = resolve(spec, prov)
    live = prov.live_state(spec.name)
    fingerprint = prov.key_fingerprint(public_key) if public_key else None
    return diff(spec, resolved, live, fingerprint, ca_tags, ask_etcd(spec, live), prov.group_tags)


def etcd_names(spec: Spec) -> list[str]:
    return [name for name, role in spec.machine_names() if role == ETCD]


def ask_etcd(spec: Spec, live: LiveState) -> EtcdView | None:
    """What etcd says about its members, when they are to change (reads only: etcdctl
    member list and endpoint health on a member, over SSH); else None."""
    from stackfleet.provisioners import etcd_admin
    from stackfleet.provisioners.etcd_membership import needs_etcd

    if not needs_etcd(etcd_names(spec), live.machines):
        return None
    why = etcd_admin.why_unreachable(spec, live.machines)
    if why:
        return EtcdView(unreachable=why)
    with etcd_admin.EtcdAdmin(etcd_admin.ssh_connect(spec)) as admin:
        return etcd_admin.observe(live.machines, admin)[0]


def diff(
    spec: Spec,
    resolved: Resolved,
    live: LiveState,
    key_fingerprint: str | None = None,
    ca_tags: dict[str, str] | None = None,
    etcd_view: EtcdView | None = None,
    group_tags: bool = True,
) -> Plan:
    """`key_fingerprint`: that of the key `up` registers, None for a key not made yet.
    `etcd_view`: what etcd said about its members (see ask_etcd). `group_tags`: whether
    the provider's security groups carry tags (Provisioner.group_tags)."""
    desired = wanted_rules(spec)
    existing_groups = {g.name for g in live.groups}
    current_rules = {g.name: list(g.rules) for g in live.groups}
    rules = diff_rules(desired, current_rules)
    live_by_name = {m.name: m for m in live.machines}
    wanted = dict(spec.machine_names())
    missing, extra, unfinished, stopped = [], [], [], []
    for name, role in wanted.items():
        m = live_by_name.get(name)
        if m is None:
            missing.append((name, role))
        elif m.state.broken:
            extra.append(m)
            missing.append((name, role))
        elif m.tags.get(BOOTSTRAP_TAG) != "done":
            unfinished.append(m)
        elif m.state == MachineState.STOPPED:
            stopped.append(m)
    extra += [m for m in live.machines if m.name not in wanted]
    etcd = spec.role(ETCD)
    key_replace = bool(live.keys) and not any(
        k.fingerprint == "" or (key_fingerprint and k.fingerprint == key_fingerprint)
        for k in live.keys
    )
    wanted_tags = {**setting_tags(spec), **(ca_tags or {})}
    if spec.ttl_seconds and (not live.tags.get(EXPIRES_TAG) or missing):
        wanted_tags[EXPIRES_TAG] = ""  # set (or renewed) by this run
    tags_missing = {k: v for k, v in wanted_tags.items() if not v or live.tags.get(k) != v}
    membership = plan_membership(etcd_names(spec), live.machines, etcd_view)
    return Plan(
        spec=spec,
        resolved=resolved,
        live=live,
        key_missing=not live.keys,
        groups_missing=[g for g in desired if g not in existing_groups],
        groups_retag=_groups_retag(spec, live) if group_tags else {},
        rules=rules,
        spread_missing=bool(etcd and etcd.count > 1 and not live.spread_groups),
        machines_missing=missing,
        machines_extra=extra,
        machines_unfinished=unfinished,
        machines_stopped=stopped,
        machines_retag=machine_tag_changes(spec, live.machines, live.tags.get(EXPIRES_TAG)),
        desired_rules=desired,
        key_replace=key_replace,
        cluster_tags_missing=tags_missing,
        refused=refusals(spec, resolved, live) + membership.refused,
        etcd=membership,
        etcd_view=etcd_view,
    )
