"""One QEMU guest: its copy-on-write disk, its process, its QMP socket and serial log.

Files live in the simulator's runtime directory under the VM's instance name:
`<name>.qcow2` (an overlay over the base image: a stop keeps it, destroy deletes it),
`<name>.pid`, `<name>.qmp` and `<name>.console` (the serial console, for debugging boots).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from stackfleet.simulator.qemu.image import BaseImage
from stackfleet.simulator.qemu.network import alive, read_pid, run_in

TCG_CACHE_MIB = 128


@dataclass(frozen=True)
class Guest:
    runtime: Path
    name: str  # the VM's instance name, e.g. i-2-7-VM

    @property
    def disk(self) -> Path:
        return self.runtime / f"{self.name}.qcow2"

    @property
    def pidfile(self) -> Path:
        return self.runtime / f"{self.name}.pid"

    @property
    def qmp(self) -> Path:
        return self.runtime / f"{self.name}.qmp"

    @property
    def console(self) -> Path:
        return self.runtime / f"{self.name}.console"

    def running(self) -> bool:
        return alive(self.pidfile)

    def launch(
        self,
        namespace: str,
        image: BaseImage,
        accel: str,
        tap: str,
        mac: str,
        memory_mb: int,
        cpus: int,
    ) -> None:
        if not self.disk.exists():
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                 str(image.disk), str(self.disk)],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        cpu = "host" if accel == "kvm" else "max"
        # TCG's translation cache defaults to 1 GiB a guest; 128 MiB costs no visible speed
        # on these guests and keeps three of them within a small machine's memory.
        accelerator = "kvm" if accel == "kvm" else f"tcg,tb-size={TCG_CACHE_MIB}"
        run_in(
            namespace,
            [
                "qemu-system-x86_64",
                "-name", self.name,
                "-machine", "q35",
                "-accel", accelerator,
                "-cpu", cpu,
                "-smp", str(cpus),
                "-m", str(memory_mb),
                "-nodefaults", "-no-user-config",
                "-display", "none",
                "-kernel", str(image.kernel),
                "-initrd", str(image.initrd),
                "-append", image.cmdline,
                "-drive", f"file={self.disk},if=virtio,format=qcow2,cache=unsafe",
                "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net0,mac={mac}",
                "-device", "virtio-rng-pci",
                "-serial", f"file:{self.console}",
                "-qmp", f"unix:{self.qmp},server=on,wait=off",
                "-pidfile", str(self.pidfile),
                "-daemonize",
            ],
        )  # fmt: skip

    def powerdown(self) -> None:
        """ACPI power button, as CloudStack's stop does; the guest shuts itself down."""
        self._qmp("system_powerdown")

    def reset(self) -> None:
        self._qmp("system_reset")

    def wait_gone(self, deadline_s: float) -> None:
        """Wait for the process to exit (a stop in progress), then kill it if it has not."""
        end = time.monotonic() + deadline_s
        while self.running() and time.monotonic() < end:
            time.sleep(0.2)
        self.kill()

    def kill(self) -> None:
        pid = read_pid(self.pidfile)
        if pid is not None and alive(self.pidfile):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            for _ in range(50):
                if not alive(self.pidfile):
                    break
                time.sleep(0.05)
        for path in (self.pidfile, self.qmp):
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        self.kill()
        for path in (self.disk, self.console):
            path.unlink(missing_ok=True)

    def _qmp(self, command: str) -> None:
        if not self.running():
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(self.qmp))
                reader = sock.makefile("rb")
                reader.readline()  # greeting
                for cmd in ("qmp_capabilities", command):
                    sock.sendall(json.dumps({"execute": cmd}).encode() + b"\n")
                    reader.readline()
        except OSError:
            pass  # the guest is going away anyway; a later start or destroy kills it
