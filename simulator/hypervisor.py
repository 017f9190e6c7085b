"""Who runs the simulator's VMs: nobody (the default), or real QEMU guests.

The API decides everything a cloud decides (states, IPs, hosts); a hypervisor only carries
out the finished jobs on real machines. The default runs nothing and says so: its VMs report
the hypervisor `Simulator`, as CloudStack's own simulator does, and a client must never
open a connection to their addresses. The QEMU hypervisor (simulator/qemu/) reports `KVM`.

Hooks run inside the transaction that applies a job, so they must be quick and idempotent:
they start or signal processes, and never wait for a guest to boot or shut down.
"""

from __future__ import annotations

from typing import Any, Protocol

SIMULATED = "Simulator"
# The VM detail naming the network namespace a QEMU guest's address lives in.
NETNS_DETAIL = "stackfleet:netns"
# What `--hypervisor` and the spec accept. "external" is for tests that stand up a host
# of their own at a VM's address (sshd in a namespace): nothing runs, but the VMs report
# KVM so that the client does connect to them.
NAMES = ("simulator", "qemu", "external")


class Hypervisor(Protocol):
    # What listVirtualMachines reports as `hypervisor` for the VMs it runs.
    reported_name: str

    def start(self, vm: dict[str, Any]) -> None:
        """Power the VM on with its current IP and userdata (no-op if it runs)."""

    def stop(self, vm: dict[str, Any]) -> None:
        """Ask the guest to shut down; its disk is kept."""

    def reboot(self, vm: dict[str, Any]) -> None: ...

    def destroy(self, vm: dict[str, Any]) -> None:
        """Power off and delete the guest's disk."""

    def close(self, *, remove_all: bool) -> None:
        """This process is done with it; `remove_all` also removes every guest."""


class RunsNothing:
    """The default: VMs are rows in the state file and nothing more."""

    reported_name = SIMULATED

    def start(self, vm: dict[str, Any]) -> None:
        pass

    def stop(self, vm: dict[str, Any]) -> None:
        pass

    def reboot(self, vm: dict[str, Any]) -> None:
        pass

    def destroy(self, vm: dict[str, Any]) -> None:
        pass

    def close(self, *, remove_all: bool) -> None:
        pass


class ExternalHosts(RunsNothing):
    """Nothing runs here; whoever chose it provides a host at each VM's address."""

    reported_name = "KVM"
