"""The guests' network: one namespace per simulated cloud, a bridge per zone, DHCP and DNS.

Inside namespace `sfsim-<key>` each zone's guest network is a bridge holding the zone's
gateway address, as the virtual router holds it in CloudStack. dnsmasq (the virtual
router's own DHCP and DNS server) hands each guest the IP the API allocated, by MAC, and
answers `data-server` with the gateway of the asking guest's subnet, which is the first
place cloud-init's CloudStack datasource looks for the metadata server. Nothing in here
is routed to the host: the namespace has no link out, so guests reach only their router.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stackfleet.simulator import catalog as cat

PREFIX = "sfsim-"


def namespace_name(runtime: Path) -> str:
    return PREFIX + hashlib.sha256(str(runtime.resolve()).encode()).hexdigest()[:10]


def bridge_name(zone: cat.Zone) -> str:
    return f"brz{cat.ZONES.index(zone)}"


def tap_name(vm_number: int) -> str:
    return f"vm{vm_number}"  # interface names are at most 15 characters


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def namespaces() -> list[str]:
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def pids_in(name: str) -> list[int]:
    out = ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def kill_all_in(name: str) -> int:
    """SIGKILL every process in the namespace (guests, dnsmasq, router): what a crash left."""
    pids = pids_in(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


@dataclass(frozen=True)
class Network:
    namespace: str
    runtime: Path

    @property
    def hosts_file(self) -> Path:
        return self.runtime / "dhcp-hosts"

    @property
    def dnsmasq_pid(self) -> Path:
        return self.runtime / "dnsmasq.pid"

    def exists(self) -> bool:
        return self.namespace in namespaces()

    def ensure(self) -> None:
        """Create the namespace, the zone bridges and dnsmasq; a no-op once they exist."""
        if not self.exists():
            ip("netns", "add", self.namespace)
            ip("-n", self.namespace, "link", "set", "lo", "up")
            for zone in cat.ZONES:
                net = zone.network.net
                bridge = bridge_name(zone)
                ip("-n", self.namespace, "link", "add", bridge, "type", "bridge")
                ip(
                    "-n",
                    self.namespace,
                    "addr",
                    "add",
                    f"{zone.network.gateway}/{net.prefixlen}",
                    "dev",
                    bridge,
                )
                ip("-n", self.namespace, "link", "set", bridge, "up")
        if not alive(self.dnsmasq_pid):
            self._start_dnsmasq()

    def _start_dnsmasq(self) -> None:
        self.hosts_file.touch(exist_ok=True)
        names = self.runtime / "router-hosts"
        # One `data-server` line per zone; --localise-queries answers with the asker's own.
        names.write_text("".join(f"{z.network.gateway} data-server\n" for z in cat.ZONES))
        args = [
            "dnsmasq",
            "--conf-file=/dev/null",
            f"--pid-file={self.dnsmasq_pid}",
            f"--dhcp-hostsfile={self.hosts_file}",
            f"--dhcp-leasefile={self.runtime / 'dhcp-leases'}",
            f"--log-facility={self.runtime / 'dnsmasq.log'}",
            "--log-dhcp",
            "--user=root",
            "--group=root",
            "--bind-dynamic",
            "--except-interface=lo",
            "--no-resolv",
            "--no-hosts",
            f"--addn-hosts={names}",
            "--localise-queries",
            "--domain=cs-sim.internal",
        ]
        for zone in cat.ZONES:
            net = zone.network.net
            args += [
                f"--interface={bridge_name(zone)}",
                f"--dhcp-range={net.network_address},static,{net.netmask},infinite",
            ]
        run_in(self.namespace, args)

    def plug(self, vm_number: int, zone: cat.Zone, mac: str, address: str, hostname: str) -> str:
        """A tap on the zone's bridge, and a DHCP reservation MAC -> IP; returns the tap."""
        tap = tap_name(vm_number)
        if ip("-n", self.namespace, "link", "show", tap, check=False).returncode != 0:
            ip("-n", self.namespace, "tuntap", "add", "dev", tap, "mode", "tap")
            ip("-n", self.namespace, "link", "set", tap, "master", bridge_name(zone))
            ip("-n", self.namespace, "link", "set", tap, "up")
        ipaddress.IPv4Address(address)  # never write anything else into dnsmasq's file
        self._reserve(mac, f"{mac},{address},{hostname},infinite")
        return tap

    def unplug(self, vm_number: int, mac: str) -> None:
        ip("-n", self.namespace, "link", "del", tap_name(vm_number), check=False)
        self._reserve(mac, None)

    def _reserve(self, mac: str, line: str | None) -> None:
        lines = [
            x
            for x in (self.hosts_file.read_text().splitlines() if self.hosts_file.exists() else [])
            if not x.startswith(mac + ",")
        ]
        if line:
            lines.append(line)
        tmp = self.hosts_file.with_suffix(".tmp")
        tmp.write_text("".join(x + "\n" for x in lines))
        tmp.replace(self.hosts_file)
        pid = read_pid(self.dnsmasq_pid)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)  # dnsmasq re-reads --dhcp-hostsfile

    def remove(self) -> int:
        """Kill what runs inside, then delete the namespace (its bridges and taps go too).
        Returns how many processes were killed."""
        if not self.exists():
            return 0
        killed = kill_all_in(self.namespace)
        ip("netns", "del", self.namespace, check=False)
        return killed


def run_in(namespace: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command inside the namespace and wait for it (daemons fork and return)."""
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pidfile: Path) -> bool:
    pid = read_pid(pidfile)
    return pid is not None and pid_alive(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
