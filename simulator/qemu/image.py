"""The base guest image for the simulator's QEMU hypervisor: build it once, cache it, find it.

The image is a Debian bookworm guest built by `build-image.sh` (debootstrap minbase plus
cloud-init, openssh-server, containerd, ifupdown + dhclient, linux-image-cloud-amd64). It
stands in for stackfleet's `ubuntu` OS flavor: its default user is `ubuntu` with
passwordless sudo, and cloud-init tries the CloudStack datasource first (metadata at the
DHCP server / default gateway) before falling back to None. No Flatcar image can be had
here, so the `flatcar` flavor stays checked by the validators only.

Guests boot with QEMU's direct kernel boot (`vmlinuz` + `initrd.img` next to `disk.qcow2`,
root on the whole of /dev/vda); VMs run on copy-on-write overlays of `disk.qcow2`.

Measured on the build host (2 vCPUs, local Debian mirror): a build takes 102-105 s alone
(190 s while a TCG guest shared the CPUs); disk.qcow2 (compressed) is 172 MiB, the ext4 file
system has 585 MiB in use of its 3 GiB, vmlinuz + initrd.img 29 MiB. /dev/kvm there is
kvm-pvm, which cannot run a stock kernel, so guests run under TCG: 64 s to the login prompt,
cloud-init done at 79 s (no NIC, None datasource).

Prebuild it (as root) with `python -m stackfleet.simulator.qemu.image build`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stackfleet.errors import BadInput, StackfleetError

SCRIPT = Path(__file__).with_name("build-image.sh")
# Inputs the script does not spell out itself; change it to force a rebuild everywhere.
IMAGE_INPUTS = "suite=bookworm variant=minbase arch=amd64 flavor=ubuntu rev=1"
CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1"
FILES = ("disk.qcow2", "vmlinuz", "initrd.img", "manifest.json")
BUILD_TOOLS = ("debootstrap", "mkfs.ext4", "dumpe2fs", "qemu-img", "chroot")
KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12

Log = Callable[[str], None]


class HostNotReady(BadInput):
    """The host lacks something the image build needs (root, debootstrap, mkfs...)."""


class ImageBuildFailed(StackfleetError):
    """build-image.sh ran and failed; the message carries its last line."""


@dataclass(frozen=True)
class BaseImage:
    directory: Path
    disk: Path
    kernel: Path
    initrd: Path
    cmdline: str

    @property
    def manifest(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.directory / "manifest.json").read_text())
        return data


def image_key() -> str:
    """The cache key: the build script's bytes plus the inputs it does not spell out."""
    digest = hashlib.sha256(SCRIPT.read_bytes() + IMAGE_INPUTS.encode())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    if explicit := os.environ.get("STACKFLEET_IMAGE_CACHE"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "stackfleet" / "images"


def _image_at(directory: Path) -> BaseImage | None:
    if not all((directory / name).is_file() for name in FILES):
        return None
    return BaseImage(
        directory=directory,
        disk=directory / "disk.qcow2",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        cmdline=CMDLINE,
    )


def find_base_image() -> BaseImage | None:
    """The image for the current build script, if it has been built."""
    return _image_at(cache_root() / image_key())


def _check_host() -> None:
    if os.geteuid() != 0:
        raise HostNotReady("building the base image needs root (debootstrap, chroot)")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool, path=path) is None]
    if missing:
        raise HostNotReady(
            f"building the base image needs {', '.join(missing)} "
            "(apt-get install debootstrap e2fsprogs qemu-utils)"
        )


def ensure_base_image(log: Log | None = None) -> BaseImage:
    """Return the base image, building it first if needed; one builder at a time per host."""
    if found := find_base_image():
        return found
    _check_host()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = image_key()
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if found := find_base_image():  # someone else built it while we waited
            return found
        target = root / key
        if target.exists():  # incomplete leftovers (a file deleted by hand)
            shutil.rmtree(target)
        _run_build(target, log)
    built = find_base_image()
    if built is None:
        raise ImageBuildFailed(f"build-image.sh finished but {root / key} is incomplete")
    return built


def _run_build(target: Path, log: Log | None) -> None:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin", "/sbin"])
    last = ""
    with subprocess.Popen(
        ["bash", str(SCRIPT), str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            last = line.rstrip() or last
            if log:
                log(line.rstrip())
    if proc.returncode != 0:
        raise ImageBuildFailed(f"base image build failed (exit {proc.returncode}): {last}")


def qemu_accel() -> tuple[str, str]:
    """("kvm", why) when KVM can really run a stock guest kernel here, else ("tcg", why)."""
    forced = os.environ.get("STACKFLEET_QEMU_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, "forced by STACKFLEET_QEMU_ACCEL"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return "tcg", f"/dev/kvm cannot be opened: {err.strerror}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as err:
        return "tcg", f"KVM_GET_API_VERSION failed: {err.strerror}"
    finally:
        os.close(fd)
    if version != KVM_API_VERSION:
        return "tcg", f"KVM API version {version}, want {KVM_API_VERSION}"
    if Path("/sys/module/kvm_pvm").exists():
        # Pagetable-based KVM (no hardware virtualization): only PVM-enabled guest kernels run.
        return "tcg", "/dev/kvm is kvm-pvm, which cannot run a stock Debian kernel"
    flags = _cpu_flags()
    if flags and not flags & {"vmx", "svm"}:
        return "tcg", "/dev/kvm works but the CPU has neither vmx nor svm"
    return "kvm", f"/dev/kvm answers KVM API {version}"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackfleet.simulator.qemu.image")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the base image if it is not cached yet")
    sub.add_parser("show", help="print the cached image (if any) and the accelerator")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        if args.command == "build":
            started = time.monotonic()
            image = ensure_base_image(log)
            print(image.directory)
            manifest = image.manifest
            print(
                f"ready in {time.monotonic() - started:.1f}s "
                f"(build took {manifest.get('build_seconds')}s; "
                f"qcow2 {manifest.get('qcow2_bytes')} bytes, "
                f"ext4 used {manifest.get('ext4_used_bytes')} bytes)"
            )
        else:
            found = find_base_image()
            print(found.directory if found else f"not built (key {image_key()})")
            accel, why = qemu_accel()
            print(f"accel: {accel} ({why})")
    except StackfleetError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(err.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
