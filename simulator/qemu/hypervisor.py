"""The QEMU hypervisor: the simulator's VMs as real guests in a namespace of their own.

A start boots a guest from a copy-on-write overlay of the base image, on its zone's bridge,
with the IP the API allocated (handed out by DHCP); the guest's cloud-init then reads its
userdata from the virtual router at its gateway, exactly as on CloudStack. A stop presses
the power button and keeps the disk; a start waits for a stop still in progress; destroy
deletes the overlay. When the last guest is gone, the namespace, router and DHCP go too.

Guests, dnsmasq and the router outlive the CLI process that started them (the embedded
simulator runs once per invocation), so every one of them runs inside the namespace:
`stackfleet simulator clean` kills whatever runs there and removes it after a crash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stackfleet.simulator import catalog as cat
from stackfleet.simulator.qemu.guest import Guest
from stackfleet.simulator.qemu.image import BaseImage, ensure_base_image, qemu_accel
from stackfleet.simulator.qemu.network import Network, alive, namespace_name, pid_alive

REPORTED_NAME = "KVM"
# Where each live mini-cloud notes its runtime directory, so `simulator clean` finds the
# overlays a crashed process left as well as its namespace.
REGISTRY = Path(os.environ.get("STACKFLEET_QEMU_REGISTRY", "/run/stackfleet-simulator"))
# A stopped guest gets this long to shut itself down (a guest still booting ignores the
# power button). A start that comes sooner waits out what is left of it, then kills: the
# deadline is counted from the stop, so VMs stopped together cost one grace, not one each.
STOP_GRACE_S = 30.0
DEFAULT_MEMORY_MB = 768  # a cap on the offering's memory: the mini-cloud runs on one machine


class QemuHypervisor:
    reported_name = REPORTED_NAME

    def __init__(
        self,
        state_path: Path,
        runtime: Path,
        mirror: Path | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB,
        owner_pid: int | None = None,
    ) -> None:
        if os.geteuid() != 0:
            from stackfleet.errors import BadInput

            raise BadInput("--hypervisor qemu needs root (network namespaces, tap devices)")
        self.state_path = state_path
        self.runtime = runtime
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.mirror = mirror
        self.memory_mb = memory_mb
        # `serve` owns its mini-cloud (and removes it on exit); the embedded simulator's
        # has no owner process, since it lives from one CLI invocation to the next.
        self.owner_pid = owner_pid
        self.network = Network(namespace_name(runtime), runtime)
        self.accel, _ = qemu_accel()
        self._image: BaseImage | None = None

    @property
    def namespace(self) -> str:
        return self.network.namespace

    @property
    def router_log(self) -> Path:
        return self.runtime / "router.log"

    @property
    def router_pid(self) -> Path:
        return self.runtime / "router.pid"

    def image(self) -> BaseImage:
        if self._image is None:
            self._image = ensure_base_image()
        return self._image

    # ---- the hooks the API's job effects call -------------------------------------------

    def start(self, vm: dict[str, Any]) -> None:
        zone = cat.zone_by_id(vm["zoneid"])
        offering = cat.offering_by_id(vm["serviceofferingid"])
        assert zone is not None and offering is not None and vm.get("ipaddress")
        guest = Guest(self.runtime, vm["instancename"])
        stopping = self._stopping_marker(guest)
        if stopping.exists():
            try:
                deadline = float(stopping.read_text())
            except ValueError:
                deadline = 0.0
            guest.wait_gone(max(0.0, deadline - time.time()))
            stopping.unlink(missing_ok=True)
        if guest.running():
            return
        self._ensure_router()
        tap = self.network.plug(vm["number"], zone, vm["macaddress"], vm["ipaddress"], vm["name"])
        guest.launch(
            self.namespace,
            self.image(),
            self.accel,
            tap,
            vm["macaddress"],
            min(offering.memory, self.memory_mb),
            1,
        )

    def stop(self, vm: dict[str, Any]) -> None:
        guest = Guest(self.runtime, vm["instancename"])
        if guest.running():
            self._stopping_marker(guest).write_text(str(time.time() + STOP_GRACE_S))
            guest.powerdown()

    def reboot(self, vm: dict[str, Any]) -> None:
        Guest(self.runtime, vm["instancename"]).reset()

    def destroy(self, vm: dict[str, Any]) -> None:
        guest = Guest(self.runtime, vm["instancename"])
        guest.remove()
        self._stopping_marker(guest).unlink(missing_ok=True)
        if self.network.exists():
            self.network.unplug(vm["number"], vm["macaddress"])
        if not self.guests():
            self.remove_all()

    def close(self, *, remove_all: bool) -> None:
        if remove_all:
            self.remove_all()

    # ---- the mini-cloud as a whole ---------------------------------------------------------

    def guests(self) -> list[Guest]:
        return guests_in(self.runtime)

    def remove_all(self) -> None:
        for guest in self.guests():
            guest.remove()
        self.network.remove()  # kills the router and dnsmasq with it
        for leftover in ("dhcp-hosts", "dhcp-leases", "router-hosts", "dnsmasq.pid",
                         "router.pid"):  # fmt: skip
            (self.runtime / leftover).unlink(missing_ok=True)
        (REGISTRY / self.namespace).unlink(missing_ok=True)

    def _ensure_router(self) -> None:
        REGISTRY.mkdir(parents=True, exist_ok=True, mode=0o700)
        (REGISTRY / self.namespace).write_text(
            json.dumps(
                {
                    "runtime": str(self.runtime),
                    "state": str(self.state_path),
                    "owner": self.owner_pid,
                }
            )
        )
        self.network.ensure()
        if alive(self.router_pid):
            return
        args = [sys.executable, "-m", "stackfleet.simulator.qemu.router",
                "--state", str(self.state_path), "--log", str(self.router_log)]  # fmt: skip
        if self.mirror is not None:
            args += ["--mirror", str(self.mirror)]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.runtime / "router.err").open("ab"),
            start_new_session=True,  # outlives this CLI process, as the guests do
        )
        self.router_pid.write_text(str(proc.pid))

    @staticmethod
    def _stopping_marker(guest: Guest) -> Path:
        return guest.runtime / f"{guest.name}.stopping"


def clean(log: Any = print, everything: bool = False) -> int:
    """Remove what crashed or killed simulators left: namespaces, processes, overlays.

    A mini-cloud whose `serve` process is still alive is kept unless `everything`; the
    embedded simulator's (no owner process) is removed, and its VMs, still listed in its
    state file, then run nothing. Returns how many were removed."""
    from stackfleet.simulator.qemu.network import namespaces

    found = set(namespaces())
    if REGISTRY.is_dir():
        found |= {p.name for p in REGISTRY.iterdir()}
    removed = 0
    for name in sorted(found):
        entry = REGISTRY / name
        runtime = None
        owner = None
        if entry.exists():
            try:
                data = json.loads(entry.read_text())
                runtime, owner = Path(data["runtime"]), data.get("owner")
            except (ValueError, KeyError, OSError):
                runtime = None
        if owner and not everything and pid_alive(int(owner)):
            log(f"kept {name}: its simulator (pid {owner}) is running (--all removes it too)")
            continue
        removed += 1
        killed = Network(name, runtime or REGISTRY).remove()
        disks = guests_in(runtime) if runtime is not None else []
        for guest in disks:
            guest.remove()
        entry.unlink(missing_ok=True)
        log(f"removed {name}: {killed} process(es), {len(disks)} guest disk(s)")
    return removed


def guests_in(runtime: Path) -> list[Guest]:
    """The guests whose disks are in a runtime directory (running or stopped)."""
    return [Guest(runtime, p.stem) for p in sorted(runtime.glob("*.qcow2"))]
