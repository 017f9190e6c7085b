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

import functools
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from stackfleet.errors import CloudError, WaitTimeout
from stackfleet.provisioners.base import Machine
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
    interval_s: float = 1.0,
) -> list[Machine]:
    """Perform `steps` in order; `etcd` are the etcd VMs before. Returns the members' VMs
    after. Stops at the first failure, leaving a cluster the next plan starts from."""
    vms = {m.name: m for m in etcd}
    members = {m.name: m for m in etcd if m.state not in BROKEN_STATES}
    for i, step in enumerate(steps, 1):
        events.phase(f"etcd step {i}/{len(steps)}: {step.verb} {step.name} ({step.why})")
        via, listed = _ask_someone(admin, members, exclude=step.name)
        if step.verb == "member-remove":
            member = _find(listed, step.name, vms.get(step.name))
            if member is not None:
                remove = functools.partial(admin.member_remove, via, member)
                _until_ready(remove, deadline_s, interval_s)
            members.pop(step.name, None)
            gone = vms.pop(step.name, None)
            if gone is not None:
                machines.destroy(gone)
        else:
            vm = vms.get(step.name)
            if vm is None or vm.state in BROKEN_STATES or not vm.private_ip:
                vm = machines.create(step.name)
            if _find(listed, step.name, vm) is None:
                url = peer_url(vm.private_ip or "")
                add = functools.partial(admin.member_add, via, step.name, url)
                _until_ready(add, deadline_s, interval_s)
            vm = machines.boot(vm, [*members.values(), vm])
            vms[step.name] = members[step.name] = vm
            wait_healthy(admin, via, vm, deadline_s, interval_s)
        machines.update_clients(list(members.values()))
    return list(members.values())


# etcd refuses a reconfiguration while a member has been connected to the leader for less
# than its health interval (5 s): just after the cluster formed, or a member joined.
NOT_READY = ("unhealthy cluster", "not enough started members")


def _until_ready(change: Callable[[], object], deadline_s: float, interval_s: float) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            change()
            return
        except CloudError as exc:
            if not any(s in str(exc) for s in NOT_READY) or time.monotonic() + interval_s > end:
                raise
        time.sleep(interval_s)


def _ask_someone(
    admin: EtcdAdmin, members: dict[str, Machine], exclude: str
) -> tuple[Machine, list[Member]]:
    """A running member other than `exclude` that answers, and the member list it gave."""
    said = []
    for name, m in sorted(members.items()):
        if name == exclude or m.state != "Running":
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
    """Until `member` reports healthy (asked through `via`), or WaitTimeout naming it."""
    end = time.monotonic() + deadline_s
    url = client_url(member)
    said = "not asked yet"
    while True:
        healthy, said = admin.health(via, [url]).get(url, (False, "no answer"))
        if healthy:
            return
        if time.monotonic() + interval_s > end:
            raise WaitTimeout(
                f"gave up after {deadline_s:.0f} s waiting for etcd member {member.name} to "
                f"report healthy ({said or 'unhealthy'})"
            )
        time.sleep(interval_s)
