"""Perform etcd membership steps (etcd_membership.plan_membership), one member at a time.

- member-remove: `member remove` asked of another, healthy member; then the VM is
  destroyed; then every client gets the shorter endpoint list.
- member-add: the VM is created (its IP is needed for the peer URL) but etcd not started;
  `member add`; the VM boots rendered `existing` with the current members plus itself;
  the next step waits until it reports healthy; then every client gets the longer list.

What "create", "boot", "destroy" and "update the clients" mean on a cloud is `Machines`
(up.py gives the cloud's; the tests give network namespaces running real etcd).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from stackfleet.errors import CloudError, WaitTimeout
from stackfleet.provisioners.base import BOOTSTRAP_TAG, Machine, MachineState
from stackfleet.provisioners.etcd_admin import EtcdAdmin, client_url
from stackfleet.provisioners.etcd_membership import BROKEN_STATES, Member, Step, peer_url
from stackfleet.provisioners.events import Events


class Machines(Protocol):
    def create(self, name: str) -> Machine:
        """A new etcd VM with its IP known, etcd not started."""

    def boot(self, machine: Machine, members: Sequence[Machine]) -> Machine:
        """Boot it rendered `existing`, with `members` (the current members and it)."""

    def destroy(self, machine: Machine) -> None: ...

    def update_clients(self, members: Sequence[Machine]) -> None:
        """Give every etcd client these members' endpoints."""


def run_steps(
    steps: Sequence[Step],
    etcd: Sequence[Machine],
    admin: EtcdAdmin,
    machines: Machines,
    events: Events,
    deadline_s: float,
    interval_s: float = 5.0,
) -> list[Machine]:
    """Perform `steps` in order; `etcd` are the etcd VMs before. Returns the members' VMs
    after. Stops at the first failure, leaving a cluster the next plan starts from.
    `interval_s`: between polls of a joiner's health (each runs etcdctl on a node: on a
    slow node, polling faster only starves it) and between retries of a change."""
    vms = {m.name: m for m in etcd}
    # Members are the VMs that booted as one: a joiner a failed run created but never
    # booted is only a VM (else it is listed twice, and given to clients unstarted).
    members = {
        m.name: m
        for m in etcd
        if m.state not in BROKEN_STATES and m.tags.get(BOOTSTRAP_TAG) == "done"
    }
    for i, step in enumerate(steps, 1):
        events.phase(f"etcd step {i}/{len(steps)}: {step.verb} {step.name} ({step.why})")
        _, listed = _ask_someone(admin, members, exclude=step.name)
        if step.verb == "member-remove":
            member = _find(listed, step.name, vms.get(step.name))
            if member is not None:
                _remove(admin, members, step.name, member, deadline_s, interval_s)
            members.pop(step.name, None)
            gone = vms.pop(step.name, None)
            if gone is not None:
                machines.destroy(gone)
        else:
            vm = vms.get(step.name)
            if vm is None or vm.state in BROKEN_STATES or not vm.private_ip:
                vm = machines.create(step.name)
            added: Member | None = None
            if _find(listed, step.name, vm) is None:  # else added by a run killed after
                added = _add(admin, members, step.name, vm, deadline_s, interval_s)
            try:
                vm = machines.boot(vm, [*members.values(), vm])
                vms[step.name] = members[step.name] = vm
                events.phase(f"waiting for etcd member {step.name} to report healthy")
                # Asked on the joiner itself: the members serving the cluster stay unloaded.
                wait_healthy(admin, vm, vm, deadline_s, interval_s)
            except Exception as exc:
                if added is None:
                    raise
                _take_back(admin, members, added, step.name, exc, events)
                raise
        machines.update_clients(list(members.values()))
    return list(members.values())


# etcd refuses a reconfiguration while a member has been connected to the leader for less
# than its health interval (5 s): just after the cluster formed, or a member joined.
NOT_READY = ("unhealthy cluster", "not enough started members")
# No answer: the change may or may not have been made (a slow node, a dropped connection).
NO_ANSWER = ("gave no answer", "over SSH failed", "SSH failed", "cannot connect",
             "deadline exceeded", "no etcd member answered")  # fmt: skip
T = TypeVar("T")
TAKE_BACK_S = 120.0


def _until_ready(change: Callable[[], T], deadline_s: float, interval_s: float) -> T:
    end = time.monotonic() + deadline_s
    while True:
        try:
            return change()
        except CloudError as exc:
            if not any(s in str(exc) for s in NOT_READY) or time.monotonic() + interval_s > end:
                raise
        time.sleep(interval_s)


def _change(
    admin: EtcdAdmin,
    members: dict[str, Machine],
    exclude: str,
    change: Callable[[Machine], object],
    made: Callable[[Sequence[Member]], bool],
    deadline_s: float,
    interval_s: float,
) -> list[Member]:
    """Make a membership change through a member that answers, until it is made; returns
    the member list after. Before each try the list is read: a change whose answer was
    lost may have been made, and asking again would fail ("already exists", "not
    found"). Retried while etcd is not ready or no answer comes, until the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            via, listed = _ask_someone(admin, members, exclude)
            if made(listed):
                return listed
            change(via)
        except CloudError as exc:
            said = str(exc)
            retry = any(s in said for s in (*NOT_READY, *NO_ANSWER))
            if not retry or time.monotonic() + interval_s > end:
                raise
        time.sleep(interval_s)


def _add(
    admin: EtcdAdmin,
    members: dict[str, Machine],
    name: str,
    vm: Machine,
    deadline_s: float,
    interval_s: float,
) -> Member:
    url = peer_url(vm.private_ip or "")
    listed = _change(
        admin,
        members,
        name,
        lambda via: admin.member_add(via, name, url),
        lambda now: any(url in m.peer_urls for m in now),
        deadline_s,
        interval_s,
    )
    found = next(m for m in listed if url in m.peer_urls)
    return Member(found.id, name, found.peer_urls, found.client_urls)


def _remove(
    admin: EtcdAdmin,
    members: dict[str, Machine],
    name: str,
    member: Member,
    deadline_s: float,
    interval_s: float,
) -> None:
    _change(
        admin,
        members,
        name,
        lambda via: admin.member_remove(via, member),
        lambda now: all(m.id != member.id for m in now),
        deadline_s,
        interval_s,
    )


def _take_back(
    admin: EtcdAdmin,
    members: dict[str, Machine],
    added: Member,
    name: str,
    why: Exception,
    events: Events,
) -> None:
    """A member added whose VM never became healthy (it could not be placed or booted)
    counts against quorum until removed: 3 -> 4 with one dead tolerates no failure, and a
    second dead joiner would stop the cluster. Take the add back; the next `up` adds it
    again. Raises when etcd refuses, naming both failures."""
    try:
        _remove(admin, members, name, added, TAKE_BACK_S, 2.0)
    except CloudError as exc:
        raise CloudError(
            f"{why}; and taking back the member add of {name} failed too ({exc}): remove "
            f"member {added.hex_id} with etcdctl on a healthy member before the next `up`"
        ) from None
    events.phase(f"{name} did not become a healthy member: its member add was taken back")


def _ask_someone(
    admin: EtcdAdmin, members: dict[str, Machine], exclude: str
) -> tuple[Machine, list[Member]]:
    """A running member other than `exclude` that answers, and the member list it gave."""
    said = []
    for name, m in sorted(members.items()):
        if name == exclude or m.state != MachineState.RUNNING:
            continue
        try:
            return m, admin.member_list(m)
        except CloudError as exc:
            said.append(str(exc))
    raise CloudError(f"no etcd member answered to change the membership ({'; '.join(said)})")


def _find(listed: Sequence[Member], name: str, vm: Machine | None) -> Member | None:
    for member in listed:
        if member.name == name:
            return member
    if vm is not None and vm.private_ip:
        return next((m for m in listed if peer_url(vm.private_ip) in m.peer_urls), None)
    return None


def wait_healthy(
    admin: EtcdAdmin, via: Machine, member: Machine, deadline_s: float, interval_s: float = 1.0
) -> None:
    """Until `member` reports healthy (asked through `via`), or WaitTimeout naming it.
    An answer that does not come (a member busy with the joiner's snapshot, an SSH
    connection dropped) is asked again, as an unhealthy one is, until the deadline.
    The pause between asks is never shorter than the last ask took: a node slow to answer
    (an emulated guest spends seconds of CPU on one `etcdctl`) is asked at most half the
    time, and not starved by the question while it joins."""
    end = time.monotonic() + deadline_s
    url = client_url(member)
    said = "not asked yet"
    while True:
        asked = time.monotonic()
        try:
            healthy, said = admin.health(via, [url]).get(url, (False, "no answer"))
        except CloudError as exc:
            healthy, said = False, str(exc)
        if healthy:
            return
        pause = max(interval_s, time.monotonic() - asked)
        if time.monotonic() + pause > end:
            raise WaitTimeout(
                f"gave up after {deadline_s:.0f} s waiting for etcd member {member.name} to "
                f"report healthy ({said or 'unhealthy'})"
            )
        time.sleep(pause)
