"""etcd membership changes as steps, one member at a time, and what is refused: pure.

A formed etcd cluster never grows or shrinks by creating or deleting VMs alone: a member
joins through `member add` (then boots with initial-cluster-state `existing` and the
current member list), and leaves through `member remove` before its VM is destroyed. One
member per step, each healthy before the next, so quorum holds at every step.

This module only decides: from the etcd machines the cloud has, what etcd itself says
(`EtcdView`, asked over SSH by etcd_admin) and the spec's count, the steps or the one-line
refusals. `etcd_steps` performs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stackfleet.provisioners.base import BOOTSTRAP_TAG, Machine, MachineState
from stackfleet.roles import ETCD

BROKEN_STATES = frozenset(s for s in MachineState if s.broken)
# Set on an etcd VM created to join a formed cluster (rendered `existing`): a run killed
# before it booted must not mistake it for a member of the first, `new`, cluster.
JOIN_TAG = "stackfleet:etcd-join"
PEER_PORT = 2380
FIELD = "roles.etcd.count"


@dataclass(frozen=True)
class Member:
    """One member as etcd lists it."""

    id: int
    name: str  # "" for a member added but not started yet
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...] = ()
    healthy: bool = False

    @property
    def hex_id(self) -> str:
        return f"{self.id:x}"


@dataclass(frozen=True)
class EtcdView:
    """What etcd said about itself; `unreachable` says why it could not be asked."""

    members: tuple[Member, ...] = ()
    unreachable: str = ""


@dataclass(frozen=True)
class Step:
    verb: str  # member-add | member-remove
    name: str  # the machine's (and the member's) name
    why: str  # e.g. "3 -> 4", "replace: VM Error"


@dataclass
class Membership:
    steps: list[Step] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # Names of etcd machines the steps create or destroy: `up` leaves them to the steps.
    handled: set[str] = field(default_factory=set)


def peer_url(ip: str) -> str:
    return f"https://{ip}:{PEER_PORT}"


def quorum(members: int) -> int:
    return members // 2 + 1


def _is_member_vm(m: Machine) -> bool:
    """An etcd VM by its name (<cluster>-etcd-<n>), which never changes, not by its role
    tag, which a run killed mid-way or an operator's slip can leave wrong (up repairs it)."""
    parts = m.name.rsplit("-", 2)
    return len(parts) == 3 and parts[1] == ETCD and parts[2].isdigit()


def _broken(m: Machine) -> bool:
    return m.state in BROKEN_STATES


def is_formed(machines: Sequence[Machine]) -> bool:
    """A cluster etcd has already formed: some member booted with its final userdata,
    and no etcd VM is still on its way to the first (`new`) cluster. Until then every
    member is rendered `new` with the full list, as on the first `up`."""
    etcd = [m for m in machines if _is_member_vm(m) and not _broken(m)]
    booted = [m for m in etcd if m.tags.get(BOOTSTRAP_TAG) == "done"]
    first_cluster_pending = [
        m for m in etcd if m.tags.get(BOOTSTRAP_TAG) != "done" and not m.tags.get(JOIN_TAG)
    ]
    return bool(booted) and not first_cluster_pending


def changes(wanted: Sequence[str], machines: Sequence[Machine]) -> tuple[list[str], list[str]]:
    """(names to add, names to remove) judged from the VMs alone: a missing, broken or
    not-yet-joined wanted member is added (a broken one removed first), an unwanted one
    removed."""
    live = {m.name: m for m in machines if _is_member_vm(m)}
    add, remove = [], []
    for name in wanted:
        m = live.get(name)
        if m is None or _broken(m) or m.tags.get(BOOTSTRAP_TAG) != "done":
            add.append(name)
        if m is not None and _broken(m):
            remove.append(name)
    remove += [n for n in live if n not in wanted]
    return add, remove


def needs_etcd(wanted: Sequence[str], machines: Sequence[Machine]) -> bool:
    """Whether etcd must be asked: its membership changes in a formed cluster."""
    if not is_formed(machines):
        return False
    add, remove = changes(wanted, machines)
    return bool(add or remove)


def _number(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def plan_membership(
    wanted: Sequence[str], machines: Sequence[Machine], view: EtcdView | None
) -> Membership:
    """Steps from the members that exist to `wanted` (the spec's etcd names), or refusals.

    Order: replace broken members first (remove + add, same name), then shrink (highest
    numbers first) or grow (lowest first), one member per step. Each step is checked
    against quorum with the members' health as etcd reported it."""
    out = Membership()
    target = len(wanted)
    if not is_formed(machines):
        return out
    etcd = [m for m in machines if _is_member_vm(m)]
    have = len([m for m in etcd if not _broken(m)])
    if target == 0:
        out.refused.append(
            f"{FIELD}: {have} -> 0 would delete the last etcd member and every key with it; "
            "to delete the cluster use `stackfleet down`"
        )
        return out
    if target % 2 == 0:
        out.refused.append(
            f"{FIELD}: {target} is even: an even member count tolerates no more failures than "
            f"one fewer; use {target - 1} or {target + 1}"
        )
        return out
    if not needs_etcd(wanted, machines):
        return out
    add, remove = changes(wanted, machines)
    if view is None or view.unreachable or not view.members:
        why = view.unreachable if view and view.unreachable else "it was not asked"
        out.refused.append(
            f"{FIELD}: changing etcd's members ({have} -> {target}) needs etcd's member API, "
            f"and etcd cannot be reached: {why}; nothing was changed"
        )
        return out
    _steps_from_view(wanted, etcd, view, add, remove, out)
    return out


def _member_of(m: Machine | None, name: str, members: Sequence[Member]) -> Member | None:
    """The member for machine `name`: by name, or (not started yet) by its peer URL."""
    for member in members:
        if member.name == name:
            return member
    if m is not None and m.private_ip:
        url = peer_url(m.private_ip)
        return next((x for x in members if url in x.peer_urls), None)
    return None


def _steps_from_view(
    wanted: Sequence[str],
    etcd: Sequence[Machine],
    view: EtcdView,
    add: list[str],
    remove: list[str],
    out: Membership,
) -> None:
    live = {m.name: m for m in etcd}
    members = list(view.members)
    # Members whose VM is gone although the spec still wants them (destroyed by hand, or
    # lost): remove and add again, with a fresh data dir (else "already bootstrapped").
    for name in wanted:
        member = _member_of(live.get(name), name, members)
        if member is not None and name not in live and name not in remove:
            remove.insert(0, name)
    replace = [n for n in wanted if n in remove]
    shrink = sorted((n for n in remove if n not in wanted), key=_number, reverse=True)
    grow = sorted((n for n in add if n not in replace), key=_number)
    healthy = {m.name for m in members if m.healthy and m.name}
    size = len(members)
    plan: list[Step] = []
    for name in replace:
        plan.append(Step("member-remove", name, f"replace: {_why_replaced(live.get(name))}"))
        plan.append(Step("member-add", name, "replace: rejoins with an empty data dir"))
    for name in shrink:
        plan.append(Step("member-remove", name, "shrink"))
    for name in grow:
        plan.append(Step("member-add", name, "grow"))
    for step in plan:
        member = _member_of(live.get(step.name), step.name, members)
        if step.verb == "member-remove":
            if member is None:  # not a member (removed by an earlier run): only the VM goes
                continue
            after = size - 1
            alive = len(healthy - {step.name})
            if alive < quorum(after):
                out.refused.append(_quorum_refusal(step, size, after, alive))
                return
            members = [x for x in members if x.id != member.id]
            healthy.discard(step.name)
            size = after
        else:
            if member is not None:
                # Added by a run that was killed before the VM booted: boot it only.
                out.steps.append(Step("member-add", step.name, "resume: already added"))
                out.handled.add(step.name)
                continue
            after = size + 1
            # 1 -> 2 has no quorum until the joiner starts: etcd allows it, as the only way up.
            if len(healthy) < quorum(after) and not (size == 1 and len(healthy) == 1):
                out.refused.append(_quorum_refusal(step, size, after, len(healthy)))
                return
            size = after
            healthy.add(step.name)  # each step waits for the new member to be healthy
        out.steps.append(Step(step.verb, step.name, f"{step.why}, {_arrow(step, size)}"))
        out.handled.add(step.name)


def _arrow(step: Step, size_after: int) -> str:
    before = size_after + 1 if step.verb == "member-remove" else size_after - 1
    return f"{before} -> {size_after} members"


def _why_replaced(m: Machine | None) -> str:
    return f"VM {m.state}" if m is not None else "VM gone"


def _quorum_refusal(step: Step, size: int, after: int, alive: int) -> str:
    verb = "removing" if step.verb == "member-remove" else "adding"
    return (
        f"{FIELD}: {verb} {step.name} ({size} -> {after} members) would lose quorum: only "
        f"{alive} member(s) healthy and {quorum(after)} needed; bring the unhealthy members "
        "back first; nothing was changed"
    )
